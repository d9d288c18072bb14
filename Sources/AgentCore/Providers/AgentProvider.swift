/// Everything agentgate knows about one agent CLI, in one value: its id and name, the launch
/// fields it accepts (with their allowed values), how its command line is built, its output
/// format and how it is probed. Adding an agent means adding one of these to `all`; the
/// command builder, the capabilities route, the dashboard's form and the CLI read it from here.
/// ACP agents, remote runners and profiles will add entries of their own.
public struct AgentProvider: Sendable {
    /// What a command line is built from: a request already validated against `fields`.
    public struct Context: Sendable {
        public var request: LaunchRequest
        public var executable: String
        public var policy: LaunchPolicy
        /// Where a provider that can write its final answer to a file (codex `-o`) puts it.
        public var outputFile: String?
        /// The resolved working directory.
        public var workingDirectory: String?
    }

    /// argv (with argv[0]), the bytes for stdin, and the output file the argv names.
    public struct CommandLine: Sendable, Equatable {
        public var arguments: [String]
        public var stdin: String
        public var outputFile: String?
    }

    public let id: String
    public let name: String
    /// The program looked for on PATH (nil: not detected, e.g. `custom`).
    public let executableName: String?
    public let outputFormat: OutputFormat
    /// Whether `<cli> acp --help` is probed (opencode and goose ship an ACP mode).
    public let hasACPMode: Bool
    /// The request fields this agent honours beyond provider, prompt, cwd, label and env. Any
    /// other field in a request for it is refused with `unsupported_field`.
    public let fields: [LaunchField]
    let commandLine: @Sendable (Context) -> CommandLine

    public func field(_ name: String) -> LaunchField? { fields.first { $0.name == name } }

    /// Every provider, in the order they are listed.
    public static let all: [AgentProvider] = [.claude, .codex, .opencode, .goose, .custom]
    /// The CLIs looked for on PATH.
    public static var detectable: [AgentProvider] { all.filter { $0.executableName != nil } }

    public static func named(_ id: String) -> AgentProvider? { all.first { $0.id == id } }

    public static let customID = "custom"

    /// The fields every provider takes, whatever it is.
    public static let commonFields: Set<String> = ["provider", "prompt", "cwd", "label", "env"]

    // MARK: the agents (flags and where each was seen: ../shared/fixtures/agents/FORMATS.md)

    static let model = LaunchField("model", .identifier, "model name or alias")
    static let resumeSession = LaunchField("resumeSession", .sessionID, "session id to resume")
    static let maxTurns = LaunchField("maxTurns", .integer(1...10_000), "stop after this many turns")
    /// Stopped by agentgate from the turns the agent reports as it streams (codex's
    /// `turn.completed`, opencode's steps): it has no flag of its own.
    static let maxTurnsEnforced = LaunchField("maxTurns", .integer(1...10_000), "stop after this many turns (agentgate counts the turns the agent reports)")
    /// Only for agents that report their cost as they run (Claude Code's results, opencode's
    /// steps): for the others it could not be honoured, so it is refused, never dropped.
    static let maxBudget = LaunchField("maxBudgetUsd", .number(0.01...100_000), "stop once the run's reported cost reaches this many US dollars")

    /// `claude -p --output-format stream-json --verbose --include-partial-messages`, prompt on
    /// stdin. Partial messages let viewers see text while it streams (`job:partial`). Values go
    /// as `--flag=value`, so none can be taken for a flag of its own.
    public static let claude = AgentProvider(
        id: "claude", name: "Claude Code", executableName: "claude", outputFormat: .claudeStreamJSON, hasACPMode: false,
        fields: [model, LaunchField("effort", .choice(["low", "medium", "high"]), "claude --effort"), resumeSession, maxTurns, maxBudget]
    ) { context in
        let request = context.request
        var arguments = [context.executable, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
        if let model = request.model { arguments.append("--model=\(model)") }
        if let effort = request.effort { arguments.append("--effort=\(effort)") }
        if let session = request.resumeSession { arguments.append("--resume=\(session)") }
        if let turns = request.maxTurns { arguments.append("--max-turns=\(turns)") }
        if let budget = request.maxBudgetUsd { arguments.append("--max-budget-usd=\(LaunchRequest.dollars(budget))") }
        if let mode = context.policy.claudePermissionMode { arguments.append("--permission-mode=\(mode)") }
        return CommandLine(arguments: arguments, stdin: request.prompt, outputFile: nil)
    }

    /// `codex exec --json … -` (prompt on stdin). `resume` takes neither `-C` nor `--sandbox`,
    /// so then the cwd is the process's and the sandbox goes through `-c sandbox_mode=…`.
    public static let codex = AgentProvider(
        id: "codex", name: "Codex CLI", executableName: "codex", outputFormat: .codexJSON, hasACPMode: false,
        fields: [
            model, LaunchField("effort", .choice(["none", "minimal", "low", "medium", "high", "xhigh"]), "codex model_reasoning_effort"),
            resumeSession, maxTurnsEnforced,
        ]
    ) { context in
        let request = context.request
        var arguments = [context.executable, "exec", "--json", "--skip-git-repo-check"]
        if let model = request.model { arguments.append("--model=\(model)") }
        if let effort = request.effort { arguments += ["-c", "model_reasoning_effort=\"\(effort)\""] }
        // The output file is the server's own path in the job's directory.
        if let outputFile = context.outputFile { arguments += ["-o", outputFile] }
        if let session = request.resumeSession {
            if let sandbox = context.policy.codexSandbox { arguments += ["-c", "sandbox_mode=\"\(sandbox)\""] }
            arguments += ["resume", session, "-"]
        } else {
            if let cwd = context.workingDirectory { arguments.append("--cd=\(cwd)") }
            if let sandbox = context.policy.codexSandbox { arguments.append("--sandbox=\(sandbox)") }
            arguments.append("-")
        }
        return CommandLine(arguments: arguments, stdin: request.prompt, outputFile: context.outputFile)
    }

    /// `opencode run --format json … -- PROMPT` (opencode takes the message as arguments).
    public static let opencode = AgentProvider(
        id: "opencode", name: "opencode", executableName: "opencode", outputFormat: .opencodeJSON, hasACPMode: true,
        fields: [
            model, LaunchField("effort", .choice(["minimal", "low", "medium", "high", "max"]), "opencode --variant"), resumeSession,
            maxTurnsEnforced, maxBudget,
        ]
    ) { context in
        let request = context.request
        var arguments = [context.executable, "run", "--format", "json"]
        if let model = request.model { arguments.append("--model=\(model)") }
        if let effort = request.effort { arguments.append("--variant=\(effort)") }
        if let session = request.resumeSession { arguments.append("--session=\(session)") }
        arguments += ["--", request.prompt]
        return CommandLine(arguments: arguments, stdin: "", outputFile: nil)
    }

    /// `goose run --output-format stream-json -i -` (instructions on stdin).
    public static let goose = AgentProvider(
        id: "goose", name: "goose", executableName: "goose", outputFormat: .gooseStreamJSON, hasACPMode: true,
        fields: [model, maxTurns, resumeSession]
    ) { context in
        let request = context.request
        var arguments = [context.executable, "run", "--output-format", "stream-json"]
        if let model = request.model { arguments.append("--model=\(model)") }
        if let turns = request.maxTurns { arguments.append("--max-turns=\(turns)") }
        if let session = request.resumeSession { arguments += ["--resume", "--session-id=\(session)"] }
        arguments += ["-i", "-"]
        return CommandLine(arguments: arguments, stdin: request.prompt, outputFile: nil)
    }

    /// The request's own argv, only with the operator's `--allow-custom-commands`.
    public static let custom = AgentProvider(
        id: customID, name: "Custom command", executableName: nil, outputFormat: .auto, hasACPMode: false,
        fields: [LaunchField("command", .argv, "argv to run (the operator allowed custom commands)")]
    ) { context in
        CommandLine(arguments: context.request.command ?? [], stdin: context.request.prompt, outputFile: nil)
    }

    /// What `/api/agents/capabilities` says of a provider's fields.
    public var fieldsJSON: JSONValue { .array(fields.map(\.json)) }
}
