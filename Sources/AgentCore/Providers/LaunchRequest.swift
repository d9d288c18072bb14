/// What a client asks for: `{provider, prompt, cwd?, model?, effort?, reasoningEffort?, label?,
/// env?, resumeSession?, maxTurns?, command?}`. Permission and sandbox modes are deliberately
/// absent: they come from the operator's `LaunchPolicy`, never from a client.
public struct LaunchRequest: Sendable, Equatable {
    public var provider: String
    public var prompt: String
    public var cwd: String?
    public var model: String?
    public var effort: String?
    public var reasoningEffort: String?
    public var label: String?
    public var env: [String: String]
    public var resumeSession: String?
    public var maxTurns: Int?
    /// argv for the `custom` provider.
    public var command: [String]?

    /// 1 MiB: far beyond a human prompt, small enough to hold per job.
    public static let maxPromptBytes = 1 << 20
    public static let maxEnvironmentEntries = 100
    public static let maxEnvironmentValueBytes = 32 * 1024
    public static let maxShortFieldBytes = 4096

    public init(
        provider: String, prompt: String, cwd: String? = nil, model: String? = nil, effort: String? = nil,
        reasoningEffort: String? = nil, label: String? = nil, env: [String: String] = [:], resumeSession: String? = nil,
        maxTurns: Int? = nil, command: [String]? = nil
    ) {
        self.provider = provider
        self.prompt = prompt
        self.cwd = cwd
        self.model = model
        self.effort = effort
        self.reasoningEffort = reasoningEffort
        self.label = label
        self.env = env
        self.resumeSession = resumeSession
        self.maxTurns = maxTurns
        self.command = command
    }

    /// Decodes a JSON body, naming the first field of the wrong type. Unknown fields are
    /// ignored so older servers accept newer clients.
    public init(json: JSONValue) throws(LaunchError) {
        guard case .object = json else { throw LaunchError(.invalidField, field: nil, "the body must be a JSON object") }
        func string(_ key: String, required: Bool = false) throws(LaunchError) -> String? {
            switch json[key] {
            case nil, .null?:
                if required { throw LaunchError(.missingField, field: key, "\(key) is required") }
                return nil
            case .string(let value)?: return value
            default: throw LaunchError(.invalidField, field: key, "\(key) must be a string")
            }
        }
        provider = try string("provider", required: true)!
        prompt = try string("prompt") ?? ""
        cwd = try string("cwd")
        model = try string("model")
        effort = try string("effort")
        reasoningEffort = try string("reasoningEffort")
        label = try string("label")
        resumeSession = try string("resumeSession")
        switch json["maxTurns"] {
        case nil, .null?: maxTurns = nil
        case .int(let value)? where value > 0 && value <= 10_000: maxTurns = value
        default: throw LaunchError(.invalidField, field: "maxTurns", "maxTurns must be an integer from 1 to 10000")
        }
        env = [:]
        switch json["env"] {
        case nil, .null?: break
        case .object(let members)?:
            for member in members {
                guard let value = member.value.stringValue else {
                    throw LaunchError(.invalidEnvironment, field: "env.\(member.key)", "env values must be strings")
                }
                env[member.key] = value
            }
        default: throw LaunchError(.invalidField, field: "env", "env must be an object of strings")
        }
        switch json["command"] {
        case nil, .null?: command = nil
        case .array(let items)?:
            let strings = items.compactMap(\.stringValue)
            guard strings.count == items.count, !strings.isEmpty else {
                throw LaunchError(.invalidField, field: "command", "command must be a non-empty array of strings")
            }
            command = strings
        default: throw LaunchError(.invalidField, field: "command", "command must be a non-empty array of strings")
        }
    }

    /// Checks limits and shapes that need no knowledge of the machine.
    public func validate() throws(LaunchError) {
        if prompt.utf8.count > Self.maxPromptBytes {
            throw LaunchError(.promptTooLarge, field: "prompt", "prompt is \(prompt.utf8.count) bytes; the limit is \(Self.maxPromptBytes)")
        }
        if prompt.isEmpty && provider != ProviderKind.custom.rawValue {
            throw LaunchError(.missingField, field: "prompt", "prompt is required")
        }
        for (key, value) in [("model", model), ("effort", effort), ("reasoningEffort", reasoningEffort), ("label", label), ("resumeSession", resumeSession), ("cwd", cwd)] {
            if let value, value.utf8.count > Self.maxShortFieldBytes {
                throw LaunchError(.invalidField, field: key, "\(key) is longer than \(Self.maxShortFieldBytes) bytes")
            }
            if let value, value.contains("\0") {
                throw LaunchError(.invalidField, field: key, "\(key) contains a NUL byte")
            }
        }
        if let model, model.hasPrefix("-") {
            throw LaunchError(.invalidField, field: "model", "model must not start with '-'")
        }
        if let resumeSession, resumeSession.hasPrefix("-") {
            throw LaunchError(.invalidField, field: "resumeSession", "resumeSession must not start with '-'")
        }
        if env.count > Self.maxEnvironmentEntries {
            throw LaunchError(.invalidEnvironment, field: "env", "at most \(Self.maxEnvironmentEntries) env entries")
        }
        for (key, value) in env {
            guard Self.isValidEnvironmentKey(key) else {
                throw LaunchError(.invalidEnvironment, field: "env.\(key)", "env key '\(key)' must match ^[A-Za-z_][A-Za-z0-9_]*$")
            }
            if value.utf8.count > Self.maxEnvironmentValueBytes || value.contains("\0") {
                throw LaunchError(.invalidEnvironment, field: "env.\(key)", "env value for \(key) is too long or contains NUL")
            }
        }
        if let command, command.contains(where: { $0.contains("\0") }) {
            throw LaunchError(.invalidField, field: "command", "command contains a NUL byte")
        }
    }

    /// `^[A-Za-z_][A-Za-z0-9_]*$`
    public static func isValidEnvironmentKey(_ key: String) -> Bool {
        guard let first = key.utf8.first else { return false }
        func isLetter(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
        return isLetter(first) && key.utf8.allSatisfy { isLetter($0) || ($0 >= 48 && $0 <= 57) }
    }
}
