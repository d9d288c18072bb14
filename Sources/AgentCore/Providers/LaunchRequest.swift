/// What a client asks for: `{provider, prompt, cwd?, model?, effort?, label?, env?,
/// resumeSession?, maxTurns?, command?, isolation?, baseRef?, worktreeOf?, project?, key?,
/// onConflict?, priority?, timeoutSeconds?, maxBudgetUsd?, profile?}` (`reasoningEffort` is read
/// as `effort`; with a `profile`, `provider` may be left out). Permission and sandbox modes are deliberately
/// absent: they come from the operator's `LaunchPolicy`, never from a client.
public struct LaunchRequest: Sendable, Equatable {
    public var provider: String
    public var prompt: String
    public var cwd: String?
    public var model: String?
    public var effort: String?
    public var label: String?
    public var env: [String: String]
    public var resumeSession: String?
    public var maxTurns: Int?
    /// argv for the `custom` provider.
    public var command: [String]?
    /// Where the job runs: its own git worktree, or the cwd itself; nil: the operator's
    /// default for the cwd's workspace (`--isolate-in`).
    public var isolation: Isolation?
    /// The commit-ish a worktree starts from (the checkout's HEAD when nil).
    public var baseRef: String?
    /// Run in the worktree of this earlier job (a follow-up to its change).
    public var worktreeOf: String?
    /// The project the job belongs to: a filter for lists and streams, and a cap of its own.
    public var project: String?
    /// At most one unfinished job per key runs (a story, a branch); `onConflict` says what a
    /// launch does while another holds it.
    public var key: String?
    public var onConflict: AdmissionQueue.ConflictPolicy?
    /// Higher starts first from the queue; bounded by the operator (`--max-priority`).
    public var priority: Int?
    /// Budgets (with `maxTurns`): the job is stopped past its wall-clock time from its start,
    /// or once the cost the agent reports reaches this many dollars.
    public var timeoutSeconds: Int?
    public var maxBudgetUsd: Double?
    /// An operator-defined launch profile (`LaunchProfile`) this request uses.
    public var profile: String?

    public enum Isolation: String, Sendable, CaseIterable {
        case none, worktree
    }

    /// 1 MiB: far beyond a human prompt, small enough to hold per job.
    public static let maxPromptBytes = 1 << 20
    public static let maxEnvironmentEntries = 100
    public static let maxEnvironmentValueBytes = 32 * 1024
    public static let maxShortFieldBytes = 4096
    /// The widest priority any server takes; the operator's `--max-priority` narrows it.
    public static let maxPriority = 1_000
    /// A week: longer than any agent run, short enough that a typo is not "for ever".
    public static let maxTimeoutSeconds = 7 * 86_400

    /// Keys: a story id, a branch name.
    public static let maxKeyBytes = 200
    /// Projects: a short name (`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`), safe in a URL and a metric label.
    public static let projectPattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

    public init(
        provider: String, prompt: String, cwd: String? = nil, model: String? = nil, effort: String? = nil,
        label: String? = nil, env: [String: String] = [:], resumeSession: String? = nil,
        maxTurns: Int? = nil, command: [String]? = nil, isolation: Isolation? = nil, baseRef: String? = nil,
        worktreeOf: String? = nil, project: String? = nil, key: String? = nil, onConflict: AdmissionQueue.ConflictPolicy? = nil,
        priority: Int? = nil, timeoutSeconds: Int? = nil, maxBudgetUsd: Double? = nil, profile: String? = nil
    ) {
        self.profile = profile
        self.provider = provider
        self.prompt = prompt
        self.cwd = cwd
        self.model = model
        self.effort = effort
        self.label = label
        self.env = env
        self.resumeSession = resumeSession
        self.maxTurns = maxTurns
        self.command = command
        self.isolation = isolation
        self.baseRef = baseRef
        self.worktreeOf = worktreeOf
        self.project = project
        self.key = key
        self.onConflict = onConflict
        self.priority = priority
        self.timeoutSeconds = timeoutSeconds
        self.maxBudgetUsd = maxBudgetUsd
    }

    /// Every field a request may carry. Anything else is refused (`unknown_field`): a typo
    /// or a field from a newer API must not be silently dropped.
    public static let knownFields: Set<String> = [
        "provider", "prompt", "cwd", "model", "effort", "reasoningEffort", "label", "env", "resumeSession", "maxTurns", "command",
        "isolation", "baseRef", "worktreeOf", "project", "key", "onConflict", "priority", "timeoutSeconds", "maxBudgetUsd", "profile",
    ]

    /// Decodes a JSON body, naming the first unknown field or field of the wrong type.
    /// `reasoningEffort` is the older name of `effort` and is read as it.
    public init(json: JSONValue) throws(LaunchError) {
        guard case .object(let members) = json else { throw LaunchError(.invalidField, field: nil, "the body must be a JSON object") }
        var seen: Set<String> = []
        for member in members {
            guard Self.knownFields.contains(member.key) else {
                let shown = member.key.utf8.count > 64 ? String(decoding: member.key.utf8.prefix(64), as: UTF8.self) + "…" : member.key
                throw LaunchError(.unknownField, field: shown, "unknown field '\(shown)'; known fields: \(Self.knownFields.sorted().joined(separator: ", "))")
            }
            guard seen.insert(member.key).inserted else {
                throw LaunchError(.invalidField, field: member.key, "\(member.key) appears twice")
            }
        }
        func string(_ key: String, required: Bool = false) throws(LaunchError) -> String? {
            switch json[key] {
            case nil, .null?:
                if required { throw LaunchError(.missingField, field: key, "\(key) is required") }
                return nil
            case .string(let value)?: return value
            default: throw LaunchError(.invalidField, field: key, "\(key) must be a string")
            }
        }
        profile = try string("profile")
        if let profile, !LaunchProfile.isValidName(profile) {
            throw LaunchError(.unknownProfile, field: "profile", "profile must be the name of one of the server's profiles")
        }
        provider = try string("provider", required: profile == nil) ?? LaunchProfile.anyProvider
        prompt = try string("prompt") ?? ""
        cwd = try string("cwd")
        model = try string("model")
        effort = try string("effort")
        let reasoningEffort = try string("reasoningEffort")
        if let reasoningEffort {
            if let effort, effort != reasoningEffort {
                throw LaunchError(.invalidField, field: "reasoningEffort", "reasoningEffort is another name for effort; give one of them")
            }
            effort = reasoningEffort
        }
        label = try string("label")
        resumeSession = try string("resumeSession")
        if let text = try string("isolation") {
            guard let value = Isolation(rawValue: text) else {
                throw LaunchError(.invalidField, field: "isolation", "isolation must be \"worktree\" or \"none\"")
            }
            isolation = value
        } else {
            isolation = nil
        }
        baseRef = try string("baseRef")
        worktreeOf = try string("worktreeOf")
        project = try string("project")
        key = try string("key")
        if let text = try string("onConflict") {
            guard let value = AdmissionQueue.ConflictPolicy(rawValue: text) else {
                throw LaunchError(.invalidField, field: "onConflict", "onConflict must be \"queue\" or \"reject\"")
            }
            onConflict = value
        } else {
            onConflict = nil
        }
        switch json["priority"] {
        case nil, .null?: priority = nil
        // Compared without abs: abs(Int.min) traps, and a client can send it.
        case .int(let value)? where value >= -Self.maxPriority && value <= Self.maxPriority: priority = value
        default: throw LaunchError(.invalidField, field: "priority", "priority must be an integer from -\(Self.maxPriority) to \(Self.maxPriority)")
        }
        switch json["timeoutSeconds"] {
        case nil, .null?: timeoutSeconds = nil
        case .int(let value)? where value > 0 && value <= Self.maxTimeoutSeconds: timeoutSeconds = value
        default: throw LaunchError(.invalidField, field: "timeoutSeconds", "timeoutSeconds must be an integer from 1 to \(Self.maxTimeoutSeconds)")
        }
        switch json["maxBudgetUsd"] {
        case nil, .null?: maxBudgetUsd = nil
        case .int(let value)?: maxBudgetUsd = Double(value)
        case .double(let value)? where value.isFinite: maxBudgetUsd = value
        default: throw LaunchError(.invalidField, field: "maxBudgetUsd", "maxBudgetUsd must be a number of US dollars")
        }
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
                guard env.updateValue(value, forKey: member.key) == nil else {
                    throw LaunchError(.invalidEnvironment, field: "env.\(member.key)", "env key \(member.key) appears twice")
                }
            }
        default: throw LaunchError(.invalidField, field: "env", "env must be an object of strings")
        }
        switch json["command"] {
        case nil, .null?: command = nil
        case .array(let items)?:
            let strings = items.compactMap(\.stringValue)
            guard strings.count == items.count, !strings.isEmpty, strings.count <= 1_000 else {
                throw LaunchError(.invalidField, field: "command", "command must be a non-empty array of at most 1000 strings")
            }
            command = strings
        default: throw LaunchError(.invalidField, field: "command", "command must be a non-empty array of strings")
        }
    }

    /// The request as `init(json:)` reads it back: what a queued job keeps in its directory
    /// (`request.json`) to be launched by the next server after a restart.
    public var json: JSONValue {
        var members: [JSONValue.Member] = [.init("prompt", .string(prompt))]
        if provider != LaunchProfile.anyProvider { members.insert(.init("provider", .string(provider)), at: 0) }
        if let profile { members.append(.init("profile", .string(profile))) }
        func add(_ key: String, _ value: String?) { if let value { members.append(.init(key, .string(value))) } }
        add("cwd", cwd)
        add("model", model)
        add("effort", effort)
        add("label", label)
        if !env.isEmpty { members.append(.init("env", .object(env.sorted { $0.key < $1.key }.map { .init($0.key, .string($0.value)) }))) }
        add("resumeSession", resumeSession)
        if let maxTurns { members.append(.init("maxTurns", .int(maxTurns))) }
        if let command { members.append(.init("command", .array(command.map(JSONValue.string)))) }
        add("isolation", isolation?.rawValue)
        add("baseRef", baseRef)
        add("worktreeOf", worktreeOf)
        add("project", project)
        add("key", key)
        add("onConflict", onConflict?.rawValue)
        if let priority { members.append(.init("priority", .int(priority))) }
        if let timeoutSeconds { members.append(.init("timeoutSeconds", .int(timeoutSeconds))) }
        if let maxBudgetUsd { members.append(.init("maxBudgetUsd", .double(maxBudgetUsd))) }
        return .object(members)
    }

    /// A provider field's value as the request gave it.
    public enum FieldValue: Sendable, Equatable {
        case text(String)
        case integer(Int)
        case number(Double)
        case argv([String])
    }

    /// The provider fields the request sets, by name, with their values: what is checked
    /// against the fields the provider accepts.
    public var providerFields: [(name: String, value: FieldValue)] {
        var fields: [(name: String, value: FieldValue)] = []
        if let model { fields.append(("model", .text(model))) }
        if let effort { fields.append(("effort", .text(effort))) }
        if let resumeSession { fields.append(("resumeSession", .text(resumeSession))) }
        if let maxTurns { fields.append(("maxTurns", .integer(maxTurns))) }
        if let maxBudgetUsd { fields.append(("maxBudgetUsd", .number(maxBudgetUsd))) }
        if let command { fields.append(("command", .argv(command))) }
        return fields
    }

    /// Checks limits and shapes that need no knowledge of the provider or the machine.
    public func validate() throws(LaunchError) {
        if prompt.utf8.count > Self.maxPromptBytes {
            throw LaunchError(.promptTooLarge, field: "prompt", "prompt is \(prompt.utf8.count) bytes; the limit is \(Self.maxPromptBytes)")
        }
        if prompt.isEmpty && provider != AgentProvider.customID {
            throw LaunchError(.missingField, field: "prompt", "prompt is required")
        }
        // The prompt is text for a model: newlines and tabs are its own, other control
        // characters (NUL, ESC…) only ever serve to fool a terminal or a parser.
        if let bad = Self.firstControlCharacter(prompt, allowing: [0x09, 0x0A, 0x0D]) {
            throw LaunchError(.invalidField, field: "prompt", "prompt contains control character \(bad)")
        }
        for (key, value) in [("provider", provider), ("model", model), ("effort", effort), ("label", label), ("resumeSession", resumeSession), ("cwd", cwd), ("baseRef", baseRef)] {
            guard let value else { continue }
            if value.utf8.count > Self.maxShortFieldBytes {
                throw LaunchError(.invalidField, field: key, "\(key) is longer than \(Self.maxShortFieldBytes) bytes")
            }
            if let bad = Self.firstControlCharacter(value, allowing: [], refusingLayout: true) {
                throw LaunchError(.invalidField, field: key, "\(key) contains control character \(bad)")
            }
        }
        if let baseRef {
            if baseRef.isEmpty || baseRef.utf8.count > 256 || baseRef.hasPrefix("-") || baseRef.contains(" ") {
                throw LaunchError(.invalidField, field: "baseRef", "baseRef must be a branch, tag or commit of at most 256 bytes, without spaces or a leading '-'")
            }
            if isolation == LaunchRequest.Isolation.none {
                throw LaunchError(.invalidField, field: "baseRef", "baseRef needs isolation \"worktree\"")
            }
        }
        if let worktreeOf {
            guard JobStore.isValidJobId(worktreeOf) else {
                throw LaunchError(.invalidField, field: "worktreeOf", "worktreeOf must be a job id")
            }
            if isolation == LaunchRequest.Isolation.none || baseRef != nil || cwd != nil {
                throw LaunchError(
                    .invalidField, field: "worktreeOf", "worktreeOf runs in that job's worktree: give it without cwd, baseRef or isolation \"none\"")
            }
        }
        if let project, !Self.isProjectName(project) {
            throw LaunchError(.invalidField, field: "project", "project must match \(Self.projectPattern)")
        }
        if let key {
            if key.isEmpty || key.utf8.count > Self.maxKeyBytes {
                throw LaunchError(.invalidField, field: "key", "key must be 1…\(Self.maxKeyBytes) bytes")
            }
            if let bad = Self.firstControlCharacter(key, allowing: [], refusingLayout: true) {
                throw LaunchError(.invalidField, field: "key", "key contains control character \(bad)")
            }
        }
        if onConflict != nil, key == nil {
            throw LaunchError(.invalidField, field: "onConflict", "onConflict says what happens when another job holds the launch's key: give key too")
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
        if let command, command.contains(where: { $0.contains("\0") || $0.utf8.count > Self.maxEnvironmentValueBytes }) {
            throw LaunchError(.invalidField, field: "command", "command contains a NUL byte or an argument over 32 KiB")
        }
    }

    /// The first C0 or C1 control character or DEL in `text` that is not in `allowing` (and,
    /// with `refusingLayout`, the first layout control: bidi, separators, BOM), as `U+001B`
    /// (nil when there is none).
    static func firstControlCharacter(_ text: String, allowing: Set<UInt32>, refusingLayout: Bool = false) -> String? {
        for scalar in text.unicodeScalars {
            if (scalar.isControlCharacter && !allowing.contains(scalar.value)) || (refusingLayout && scalar.isLayoutControl) {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            }
        }
        return nil
    }

    /// "2.5", "0.25", "10": dollars as a flag or a message shows them (no exponent, at most
    /// four decimals).
    public static func dollars(_ value: Double) -> String {
        // An agent's report may say anything (1e300, -3, inf): shown, never trapped on.
        guard value.isFinite, abs(value) < 1e12 else { return "\(value)" }
        if value < 0 { return "-" + dollars(-value) }
        let units = Int((value * 10_000).rounded())
        let fraction = String(units % 10_000)
        var text = String(units / 10_000) + "." + String(repeating: "0", count: 4 - fraction.count) + fraction
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    /// `projectPattern`.
    public static func isProjectName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        func isAlphanumeric(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
        guard let first = bytes.first, isAlphanumeric(first), bytes.count <= 100 else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    /// `^[A-Za-z_][A-Za-z0-9_]*$`
    public static func isValidEnvironmentKey(_ key: String) -> Bool {
        guard let first = key.utf8.first else { return false }
        func isLetter(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
        return isLetter(first) && key.utf8.allSatisfy { isLetter($0) || ($0 >= 48 && $0 <= 57) }
    }
}
