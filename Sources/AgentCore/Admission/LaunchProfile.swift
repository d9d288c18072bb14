import Foundation

/// A named launch the operator defines (`serve --profiles FILE`): provider, model, effort,
/// permission mode, isolation, budgets, env and a prompt template. A client launches with
/// `{"profile":"review","prompt":"the auth module"}` and gets the profile's choices; the fields
/// a profile sets are the operator's, so a request that sets one of them differently is
/// refused (`profile_field`), while fields it leaves open (cwd, label, project, key…) stay the
/// request's. Permission and sandbox modes still come only from the operator: a profile is
/// operator configuration.
///
/// The file is JSON:
///
///     {"profiles": {"review": {"description": "Read-only review", "provider": "claude",
///       "model": "opus", "effort": "high", "permissionMode": "plan", "isolation": "worktree",
///       "timeoutSeconds": 1800, "maxTurns": 40, "maxBudgetUsd": 5, "env": {"MYAPP_MODE": "review"},
///       "allowEnv": ["MYAPP_TICKET"], "prompt": "Review this change. Focus: {{prompt}}"}}}
public struct LaunchProfile: Sendable, Equatable {
    public var name: String
    public var description: String?
    public var provider: String
    /// Launch fields the profile fixes (model, effort, isolation, baseRef, project, priority,
    /// timeoutSeconds, maxTurns, maxBudgetUsd, command), as a request would give them.
    public var fields: [JSONValue.Member]
    /// claude `--permission-mode` / codex `--sandbox` for this profile's jobs, instead of the
    /// server's.
    public var permissionMode: String?
    public var codexSandbox: String?
    /// Env the profile sets, and env keys a request using it may set besides `--pass-env`'s.
    public var env: [String: String]
    public var allowEnv: [String]
    /// The prompt sent, with the request's text in place of `{{prompt}}` (nil: the request's
    /// text as it is).
    public var promptTemplate: String?

    public static let placeholder = "{{prompt}}"
    /// Fields of a profile that become launch fields as they are.
    static let launchFields: Set<String> = [
        "model", "effort", "isolation", "baseRef", "project", "priority", "timeoutSeconds", "maxTurns", "maxBudgetUsd", "command",
    ]
    static let ownFields: Set<String> = ["description", "provider", "permissionMode", "codexSandbox", "env", "allowEnv", "prompt"]

    /// Profiles a file may name, at most.
    public static let maxProfiles = 256

    /// Profile names: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
    public static func isValidName(_ name: String) -> Bool {
        LaunchRequest.isProjectName(name) && name.utf8.count <= 64
    }

    public struct FileError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Reads a profiles file; every profile is checked as a launch would check it (its fields
    /// through `LaunchRequest`, its env keys through the env rules), so a mistake is found at
    /// start or reload, not at the first launch.
    public static func parse(_ bytes: [UInt8]) throws(FileError) -> [String: LaunchProfile] {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            throw FileError(message: "not JSON: \(error)")
        }
        guard case .object(let top) = value, top.allSatisfy({ $0.key == "profiles" }), case .object(let entries)? = value["profiles"] else {
            throw FileError(message: "expected {\"profiles\": {\"NAME\": {…}, …}}")
        }
        // Parsed on the loop at each SIGHUP and listed in every capabilities answer.
        guard entries.count <= maxProfiles else { throw FileError(message: "\(entries.count) profiles; a file may name at most \(maxProfiles)") }
        var profiles: [String: LaunchProfile] = [:]
        for entry in entries {
            guard isValidName(entry.key) else { throw FileError(message: "profile name '\(entry.key)' must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$") }
            guard profiles[entry.key] == nil else { throw FileError(message: "profile \(entry.key) appears twice") }
            profiles[entry.key] = try profile(entry.key, entry.value)
        }
        return profiles
    }

    private static func profile(_ name: String, _ value: JSONValue) throws(FileError) -> LaunchProfile {
        func fail(_ message: String) -> FileError { FileError(message: "profile \(name): \(message)") }
        guard case .object(let members) = value else { throw fail("must be an object") }
        for member in members where !launchFields.contains(member.key) && !ownFields.contains(member.key) {
            throw fail("unknown field '\(member.key)'; known: \((launchFields.union(ownFields)).sorted().joined(separator: ", "))")
        }
        guard let provider = value["provider"]?.stringValue, AgentProvider.named(provider) != nil else {
            throw fail("provider must be one of \(AgentProvider.all.map(\.id).joined(separator: ", "))")
        }
        func text(_ key: String) throws(FileError) -> String? {
            guard let field = value[key], !field.isNull else { return nil }
            guard let string = field.stringValue, !string.isEmpty, string.utf8.count <= 200 else { throw fail("\(key) must be a string of 1…200 bytes") }
            return string
        }
        var profile = LaunchProfile(
            name: name, description: try text("description"), provider: provider,
            fields: members.filter { launchFields.contains($0.key) }, permissionMode: try text("permissionMode"),
            codexSandbox: try text("codexSandbox"), env: [:], allowEnv: [], promptTemplate: nil)
        for (key, mode) in [("permissionMode", profile.permissionMode), ("codexSandbox", profile.codexSandbox)] {
            if let mode, !LaunchField.isIdentifier(mode) { throw fail("\(key) must be a mode name such as plan or read-only") }
        }
        if case .object(let env)? = value["env"] {
            for entry in env {
                guard let string = entry.value.stringValue, LaunchRequest.isValidEnvironmentKey(entry.key), !string.contains("\0") else {
                    throw fail("env must map keys (^[A-Za-z_][A-Za-z0-9_]*$) to strings")
                }
                if EnvironmentPolicy.isForbidden(entry.key) { throw fail("env \(entry.key) can change what runs or where credentials go") }
                profile.env[entry.key] = string
            }
        } else if value["env"] != nil {
            throw fail("env must be an object of strings")
        }
        if case .array(let keys)? = value["allowEnv"] {
            for key in keys {
                guard let key = key.stringValue, LaunchRequest.isValidEnvironmentKey(key), !EnvironmentPolicy.isForbidden(key) else {
                    throw fail("allowEnv lists env keys a request may set (no forbidden keys, no patterns)")
                }
                profile.allowEnv.append(key)
            }
        } else if value["allowEnv"] != nil {
            throw fail("allowEnv must be an array of env keys")
        }
        if let template = value["prompt"] {
            guard let string = template.stringValue, string.utf8.count <= LaunchRequest.maxPromptBytes else {
                throw fail("prompt must be a string (a template where {{prompt}} is the request's text)")
            }
            guard string.components(separatedBy: placeholder).count <= 2 else { throw fail("prompt holds {{prompt}} more than once") }
            profile.promptTemplate = string
        }
        // The profile's fields must make a valid launch on their own: the request's own limits
        // and the provider's fields and values (what does not depend on this machine).
        do throws(LaunchError) {
            let made = try profile.apply(to: profile.sampleRequest)
            try made.validate()
            if let agent = AgentProvider.named(provider) { try CommandBuilder.checkFields(made, for: agent) }
        } catch {
            throw fail(error.message)
        }
        return profile
    }

    /// The request as the profile makes it: the profile's provider and fields, its env with
    /// the request's, and the prompt through the template. A request field the profile fixes
    /// must be absent or the same.
    public func apply(to request: LaunchRequest) throws(LaunchError) -> LaunchRequest {
        if let conflict = conflict(with: request) { throw conflict }
        guard case .object(let asked) = request.json else { return request }
        var members = asked.filter { $0.key != "profile" && $0.key != "provider" }
        let given = Set(members.map(\.key))
        members += fields.filter { !given.contains($0.key) }
        members.append(.init("provider", .string(provider)))
        var result = try LaunchRequest(json: .object(members))
        result.profile = name
        result.env.merge(env) { _, fixed in fixed }
        if let promptTemplate {
            result.prompt = promptTemplate.replacingOccurrences(of: Self.placeholder, with: request.prompt)
        }
        return result
    }

    /// The first field of `request` that the profile sets to something else (the provider, a
    /// launch field, an env key), as the refusal; nil when there is none.
    private func conflict(with request: LaunchRequest) -> LaunchError? {
        if request.provider != LaunchProfile.anyProvider && request.provider != provider {
            return LaunchError(.profileField, field: "provider", "profile \(name) runs \(provider); leave provider out or give \(provider)")
        }
        guard case .object(let asked) = request.json else { return nil }
        for field in fields {
            guard let value = asked.first(where: { $0.key == field.key })?.value else { continue }
            // 5 and 5.0 are the same budget.
            let numbersMatch = value.doubleValue != nil && value.doubleValue == field.value.doubleValue
            if value != field.value && !numbersMatch {
                return LaunchError(.profileField, field: field.key, "profile \(name) sets \(field.key); leave it out of the request")
            }
        }
        // A template without {{prompt}} is the whole prompt: a request's text would be lost.
        if let promptTemplate, !promptTemplate.contains(Self.placeholder), !request.prompt.isEmpty {
            return LaunchError(.profileField, field: "prompt", "profile \(name) sets the whole prompt; leave prompt out of the request")
        }
        // The profile's env is the operator's: a request may not change it.
        for key in env.keys.sorted() where request.env[key] != nil && request.env[key] != env[key] {
            return LaunchError(.profileField, field: "env.\(key)", "profile \(name) sets env \(key); leave it out of the request")
        }
        return nil
    }

    /// The least a client sends to launch it: what the file's checks launch.
    public var sampleRequest: LaunchRequest {
        let fixedPrompt = promptTemplate.map { !$0.contains(Self.placeholder) } ?? false
        return LaunchRequest(provider: provider, prompt: fixedPrompt ? "" : "x", profile: name)
    }

    /// A request's provider when it names a profile and no provider.
    public static let anyProvider = ""

    /// What `/api/agents/capabilities` says of it.
    public var json: JSONValue {
        .object([
            "name": .string(name), "description": description.map(JSONValue.string), "provider": .string(provider),
            "fields": .object(fields), "permissionMode": permissionMode.map(JSONValue.string),
            "codexSandbox": codexSandbox.map(JSONValue.string),
            "env": .array(env.keys.sorted().map(JSONValue.string)), "allowEnv": .array(allowEnv.map(JSONValue.string)),
            "promptTemplate": promptTemplate.map(JSONValue.string),
        ])
    }
}
