import Testing

@testable import AgentCore

struct CommandBuilderTests {
    static let capabilities = AgentCapabilities(
        mode: "local",
        providers: [
            ProviderInfo(id: "claude", name: "Claude Code", available: true, path: "/bin/claude", version: "2.1"),
            ProviderInfo(id: "codex", name: "Codex CLI", available: true, path: "/bin/codex", version: "0.154"),
            ProviderInfo(id: "opencode", name: "opencode", available: true, path: "/bin/opencode", version: "1", acp: true),
            ProviderInfo(id: "goose", name: "goose", available: true, path: "/bin/goose", version: "1.43", acp: false),
        ],
        available: ["claude", "codex", "opencode", "goose"], probedAt: 0)

    func build(_ request: LaunchRequest, policy: LaunchPolicy = LaunchPolicy()) throws(LaunchError) -> LaunchSpec {
        try CommandBuilder(policy: policy, capabilities: Self.capabilities, searchPath: "/usr/bin:/bin").build(request, outputFile: "/tmp/out.txt")
    }

    @Test func claudeRunsStreamJSONWithThePromptOnStdin() throws {
        let spec = try build(LaunchRequest(provider: "claude", prompt: "fix it", model: "opus", resumeSession: "abc", maxTurns: 3))
        #expect(spec.arguments == [
            "/bin/claude", "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
            "--replay-user-messages", "--model=opus", "--resume=abc", "--max-turns=3",
        ])
        // A user message, one line: stdin stays open for follow-ups (a conversation).
        #expect(spec.stdin == #"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"fix it"}]}}"# + "\n")
        #expect(spec.takesMessages)
        #expect(spec.outputFormat == .claudeStreamJSON)
    }

    @Test func permissionModeComesFromTheOperatorOnly() throws {
        let spec = try build(LaunchRequest(provider: "claude", prompt: "x"), policy: LaunchPolicy(claudePermissionMode: "acceptEdits"))
        #expect(spec.arguments.last == "--permission-mode=acceptEdits")
        // A client cannot smuggle a flag in through the model name.
        #expect(throws: LaunchError.self) {
            try build(LaunchRequest(provider: "claude", prompt: "x", model: "--dangerously-skip-permissions"))
        }
    }

    @Test func codexExecJSONWithEffortCwdSandboxAndOutputFile() throws {
        let spec = try build(
            LaunchRequest(provider: "codex", prompt: "p", cwd: "/tmp", model: "gpt-5", effort: "high"),
            policy: LaunchPolicy(codexSandbox: "workspace-write"))
        #expect(spec.arguments == [
            "/bin/codex", "exec", "--json", "--skip-git-repo-check", "--model=gpt-5", "-c", "model_reasoning_effort=\"high\"",
            "-o", "/tmp/out.txt", "--cd=/tmp", "--sandbox=workspace-write", "-",
        ])
        #expect(spec.outputFile == "/tmp/out.txt")
        #expect(spec.stdin == "p")
    }

    @Test func codexResumeRestatesTheSandboxThroughConfig() throws {
        let spec = try build(LaunchRequest(provider: "codex", prompt: "p", resumeSession: "0199"), policy: LaunchPolicy(codexSandbox: "read-only"))
        #expect(spec.arguments.suffix(5) == ["-c", "sandbox_mode=\"read-only\"", "resume", "0199", "-"])
        #expect(!spec.arguments.contains("--sandbox"))
    }

    @Test func opencodeAndGooseUseTheirJSONRunModes() throws {
        let opencode = try build(LaunchRequest(provider: "opencode", prompt: "hello", model: "anthropic/claude"))
        #expect(opencode.arguments == ["/bin/opencode", "run", "--format", "json", "--model=anthropic/claude", "--", "hello"])
        #expect(opencode.stdin == "")
        let goose = try build(LaunchRequest(provider: "goose", prompt: "hello", maxTurns: 5))
        #expect(goose.arguments == ["/bin/goose", "run", "--output-format", "stream-json", "--max-turns=5", "-i", "-"])
        #expect(goose.stdin == "hello")
    }

    @Test func unknownAndUnavailableProvidersNameTheAvailableOnes() {
        #expect(throws: LaunchError(.unknownProvider, field: "provider", "unknown provider 'gpt'; available: claude, codex, opencode, goose")) {
            try build(LaunchRequest(provider: "gpt", prompt: "x"))
        }
        var capabilities = Self.capabilities
        capabilities.providers[0].available = false
        capabilities.available = ["codex"]
        #expect(throws: LaunchError(.providerUnavailable, field: "provider", "provider 'claude' is not available on this machine; available: codex")) {
            try CommandBuilder(policy: LaunchPolicy(), capabilities: capabilities, searchPath: nil).build(LaunchRequest(provider: "claude", prompt: "x"), outputFile: nil)
        }
    }

    @Test func customCommandsNeedTheOperatorsOptIn() throws {
        let request = LaunchRequest(provider: "custom", prompt: "", command: ["echo", "hi"])
        #expect(throws: LaunchError.self) { try build(request) }
        let spec = try build(request, policy: LaunchPolicy(allowCustomCommands: true))
        #expect(spec.arguments == ["echo", "hi"])
        #expect(spec.executable.hasSuffix("/echo"))
        #expect(spec.outputFormat == .auto)
        #expect(throws: LaunchError.self) {
            try build(LaunchRequest(provider: "claude", prompt: "x", command: ["rm", "-rf", "/"]))
        }
    }

    @Test(arguments: ["1BAD", "has-dash", "", "A=B", "ÄÖ"])
    func invalidEnvironmentKeysAreRejected(_ key: String) {
        #expect(throws: LaunchError.self) { try build(LaunchRequest(provider: "claude", prompt: "x", env: [key: "v"])) }
    }

    @Test func validEnvironmentKeysPassWhenTheOperatorAllowedThem() throws {
        let policy = LaunchPolicy(environment: EnvironmentPolicy(allowed: ["_A1", "lower_*"]))
        let spec = try build(LaunchRequest(provider: "claude", prompt: "x", env: ["_A1": "1", "lower_case": "2"]), policy: policy)
        #expect(spec.environment == ["_A1": "1", "lower_case": "2"])
    }

    @Test func cwdMustBeAnExistingDirectory() {
        #expect(throws: LaunchError(.invalidWorkingDirectory, field: "cwd", "cwd '/nonexistent' does not exist or is not a directory")) {
            try build(LaunchRequest(provider: "claude", prompt: "x", cwd: "/nonexistent"))
        }
        #expect(throws: LaunchError.self) { try build(LaunchRequest(provider: "claude", prompt: "x", cwd: "/etc/passwd")) }
    }

    @Test func promptsAreCappedAtOneMiB() throws {
        let limit = String(repeating: "a", count: LaunchRequest.maxPromptBytes)
        #expect(throws: Never.self) { try build(LaunchRequest(provider: "claude", prompt: limit)) }
        #expect(throws: LaunchError.self) { try build(LaunchRequest(provider: "claude", prompt: limit + "a")) }
        #expect(throws: LaunchError(.missingField, field: "prompt", "prompt is required")) {
            try build(LaunchRequest(provider: "claude", prompt: ""))
        }
    }

    @Test func requestJSONNamesTheBadField() throws {
        #expect(throws: LaunchError(.missingField, field: "provider", "provider is required")) {
            try LaunchRequest(json: ["prompt": "x"])
        }
        #expect(throws: LaunchError(.invalidField, field: "maxTurns", "maxTurns must be an integer from 1 to 10000")) {
            try LaunchRequest(json: ["provider": "claude", "prompt": "x", "maxTurns": "3"])
        }
        #expect(throws: LaunchError(.invalidEnvironment, field: "env.A", "env values must be strings")) {
            try LaunchRequest(json: ["provider": "claude", "prompt": "x", "env": ["A": 1]])
        }
        let request = try LaunchRequest(json: ["provider": "codex", "prompt": "x", "label": "L", "reasoningEffort": "high", "env": ["K": "v"]])
        #expect(request == LaunchRequest(provider: "codex", prompt: "x", effort: "high", label: "L", env: ["K": "v"]))
        #expect(throws: LaunchError(.unknownField, field: "unknown", "unknown field 'unknown'; known fields: baseRef, command, cwd, effort, env, isolation, key, label, maxBudgetUsd, maxTurns, model, onConflict, priority, profile, project, prompt, provider, reasoningEffort, resumeSession, timeoutSeconds, worktreeOf")) {
            try LaunchRequest(json: ["provider": "codex", "prompt": "x", "unknown": true])
        }
        #expect(throws: LaunchError.self) { try LaunchRequest(json: ["provider": "codex", "prompt": "x", "effort": "low", "reasoningEffort": "high"]) }
    }
}
