import Testing

@testable import AgentCore

/// Profiles with no process: the file's checks, and what a launch with one becomes.
@Suite struct LaunchProfileTests {
    static let file = """
        {"profiles": {
          "review": {"description": "Read-only review", "provider": "claude", "model": "opus", "effort": "high",
                     "permissionMode": "plan", "maxTurns": 40, "timeoutSeconds": 600, "env": {"MYAPP_MODE": "review"},
                     "allowEnv": ["MYAPP_TICKET"], "prompt": "Review this change. Focus: {{prompt}}"},
          "quick": {"provider": "codex", "effort": "low"}
        }}
        """

    @Test func aProfileFixesItsFieldsAndTheRequestKeepsTheOpenOnes() throws {
        let profiles = try LaunchProfile.parse(Array(Self.file.utf8))
        let review = try #require(profiles["review"])
        let request = try review.apply(to: LaunchRequest(json: [
            "profile": "review", "prompt": "the auth module", "label": "pr 7", "project": "web", "env": ["MYAPP_TICKET": "T-1"],
        ]))
        #expect(request.provider == "claude" && request.model == "opus" && request.effort == "high" && request.maxTurns == 40)
        #expect(request.timeoutSeconds == 600 && request.label == "pr 7" && request.project == "web" && request.profile == "review")
        #expect(request.prompt == "Review this change. Focus: the auth module")
        #expect(request.env == ["MYAPP_MODE": "review", "MYAPP_TICKET": "T-1"])
        // The same value again is fine; another is the operator's to choose.
        _ = try review.apply(to: LaunchRequest(provider: "claude", prompt: "x", model: "opus", profile: "review"))
        #expect(throws: LaunchError(.profileField, field: "model", "profile review sets model; leave it out of the request")) {
            try review.apply(to: LaunchRequest(provider: "claude", prompt: "x", model: "haiku", profile: "review"))
        }
        #expect(throws: LaunchError(.profileField, field: "provider", "profile review runs claude; leave provider out or give claude")) {
            try review.apply(to: LaunchRequest(provider: "codex", prompt: "x", profile: "review"))
        }
        // Its env is the operator's too; a budget of 5 is the same as 5.0.
        #expect(throws: LaunchError(.profileField, field: "env.MYAPP_MODE", "profile review sets env MYAPP_MODE; leave it out of the request")) {
            try review.apply(to: LaunchRequest(json: ["profile": "review", "prompt": "x", "env": ["MYAPP_MODE": "write"]]))
        }
        _ = try review.apply(to: LaunchRequest(json: ["profile": "review", "prompt": "x", "timeoutSeconds": 600, "maxTurns": 40]))
        // Without a template the request's text is the prompt.
        #expect(try profiles["quick"]!.apply(to: LaunchRequest(json: ["profile": "quick", "prompt": "go"])).prompt == "go")
        #expect(review.json["permissionMode"] == "plan" && review.json["env"] == ["MYAPP_MODE"])
    }

    /// A template without {{prompt}} is the whole prompt: a request with text of its own is
    /// refused rather than its text silently dropped.
    @Test func aFixedPromptRefusesARequestsText() throws {
        let profiles = try LaunchProfile.parse(Array(#"{"profiles": {"lint": {"provider": "claude", "prompt": "Run the linter and fix what it finds."}}}"#.utf8))
        let lint = try #require(profiles["lint"])
        let made = try lint.apply(to: LaunchRequest(provider: LaunchProfile.anyProvider, prompt: "", profile: "lint"))
        #expect(made.prompt == "Run the linter and fix what it finds.")
        #expect(throws: LaunchError.self) { try lint.apply(to: LaunchRequest(provider: LaunchProfile.anyProvider, prompt: "also rm -rf", profile: "lint")) }
    }

    @Test func aFileThatWouldMakeABadLaunchIsRefusedNamingTheProfile() {
        let bad: [(String, String)] = [
            (#"{"profiles": {"x": {"provider": "nobody"}}}"#, "profile x: provider must be one of"),
            (#"{"profiles": {"x": {"provider": "claude", "sandbox": "y"}}}"#, "profile x: unknown field 'sandbox'"),
            (#"{"profiles": {"x": {"provider": "claude", "effort": "extreme"}}}"#, "profile x: effort for claude must be one of"),
            (#"{"profiles": {"x": {"provider": "codex", "maxBudgetUsd": 2}}}"#, "profile x: provider 'codex' does not take maxBudgetUsd"),
            (#"{"profiles": {"x": {"provider": "claude", "env": {"LD_PRELOAD": "/x.so"}}}}"#, "profile x: env LD_PRELOAD can change what runs"),
            (#"{"profiles": {"x": {"provider": "claude", "allowEnv": ["PATH"]}}}"#, "profile x: allowEnv lists env keys"),
            (#"{"profiles": {"x": {"provider": "claude", "prompt": "{{prompt}} and {{prompt}}"}}}"#, "profile x: prompt holds {{prompt}} more than once"),
            (#"{"profiles": {"x": {"provider": "claude", "permissionMode": "--dangerously-skip-permissions"}}}"#, "profile x: permissionMode must be a mode name"),
            (#"{"profiles": {"../x": {"provider": "claude"}}}"#, "profile name '../x' must match"),
            (#"{"profiles": [], "more": 1}"#, "expected {\"profiles\""),
            ("not json", "not JSON"),
        ]
        for (text, message) in bad {
            do {
                _ = try LaunchProfile.parse(Array(text.utf8))
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.message.hasPrefix(message), "\(text): \(error.message)")
            }
        }
    }
}
