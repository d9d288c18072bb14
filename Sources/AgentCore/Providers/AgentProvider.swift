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
    /// How a user's message is written to the agent's stdin while it runs, for agents that
    /// take messages there (a conversation; nil: none). The prompt goes the same way.
    public let encodeMessage: (@Sendable (String) -> [UInt8])?
    /// For an ACP provider: the CLI whose `acp` mode it runs (available when the probe found
    /// that CLI and its `acp --help` succeeded; not probed on its own).
    public let acpModeOf: String?
    /// A stdin line that asks the running agent to stop its turn by itself (an ACP client
    /// sends `session/cancel`): a kill tries it before SIGTERM.
    public var interruptLine: [UInt8]? { acpModeOf != nil ? Array(#"{"type":"interrupt"}"#.utf8) + [0x0A] : nil }
    /// It can resume an earlier session (`resumeSession`): a finished job of it can be continued.
    public var resumesSessions: Bool { field(Self.resumeSession.name) != nil }

    init(
        id: String, name: String, executableName: String?, outputFormat: OutputFormat, hasACPMode: Bool, fields: [LaunchField],
        encodeMessage: (@Sendable (String) -> [UInt8])? = nil, acpModeOf: String? = nil,
        commandLine: @escaping @Sendable (Context) -> CommandLine
    ) {
        self.id = id
        self.name = name
        self.executableName = executableName
        self.outputFormat = outputFormat
        self.hasACPMode = hasACPMode
        self.fields = fields
        self.encodeMessage = encodeMessage
        self.acpModeOf = acpModeOf
        self.commandLine = commandLine
    }

    public func field(_ name: String) -> LaunchField? { fields.first { $0.name == name } }

    /// Every provider, in the order they are listed.
    public static let all: [AgentProvider] = [.claude, .codex, .opencode, .goose, .opencodeACP, .gooseACP, .custom]
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

    /// `claude -p --input-format stream-json --output-format stream-json --verbose
    /// --include-partial-messages --replay-user-messages`, the prompt on stdin as a user
    /// message. Stdin stays open: follow-up messages reach the running CLI the same way, and it
    /// ends once it answered them all (its stdin is closed then); the CLI echoes the messages
    /// it takes into each turn, which says when that is (it merges those sent mid-turn). Partial messages let viewers see text while it
    /// streams (`job:partial`). Values go as `--flag=value`, so none can be taken for a flag
    /// of its own.
    public static let claude = AgentProvider(
        id: "claude", name: "Claude Code", executableName: "claude", outputFormat: .claudeStreamJSON, hasACPMode: false,
        fields: [model, LaunchField("effort", .choice(["low", "medium", "high"]), "claude --effort"), resumeSession, maxTurns, maxBudget],
        encodeMessage: claudeUserMessage
    ) { context in
        let request = context.request
        var arguments = [
            context.executable, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
            "--include-partial-messages", "--replay-user-messages",
        ]
        if let model = request.model { arguments.append("--model=\(model)") }
        if let effort = request.effort { arguments.append("--effort=\(effort)") }
        if let session = request.resumeSession { arguments.append("--resume=\(session)") }
        if let turns = request.maxTurns { arguments.append("--max-turns=\(turns)") }
        if let budget = request.maxBudgetUsd { arguments.append("--max-budget-usd=\(LaunchRequest.dollars(budget))") }
        if let mode = context.policy.claudePermissionMode { arguments.append("--permission-mode=\(mode)") }
        // Where its mode would ask, the CLI asks agentgate (a control_request on stdout, answered
        // on stdin): by the operator's policy, or a person's answer. With deny, the CLI denies.
        if context.policy.agentPermissions != .deny { arguments.append("--permission-prompt-tool=stdio") }
        return CommandLine(arguments: arguments, stdin: String(decoding: claudeUserMessage(request.prompt), as: UTF8.self), outputFile: nil)
    }

    /// One `--input-format stream-json` line: `{"type":"user","message":{"role":"user","content":[{"type":"text","text":…}]}}`.
    @Sendable static func claudeUserMessage(_ text: String) -> [UInt8] {
        let message: JSONValue = .object([
            "type": .string("user"),
            "message": .object([
                "role": .string("user"), "content": .array([.object(["type": .string("text"), "text": .string(text)])]),
            ]),
        ])
        return JSONWriter.serialize(message) + [0x0A]
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

    /// `opencode acp` through agentgate's ACP client (`agentgate acp-client`).
    public static let opencodeACP = acp(of: "opencode", name: "opencode (ACP)")
    /// `goose acp` through agentgate's ACP client.
    public static let gooseACP = acp(of: "goose", name: "goose (ACP)")

    /// `agentgate acp-client [--resume=ID] --permissions=P -- <cli> acp`: the client speaks the
    /// Agent Client Protocol to the CLI's ACP mode and writes the exchange as the job's
    /// output. The prompt and each follow-up go to it as user messages on its stdin, like
    /// Claude's; the permission policy is the operator's (`--agent-permissions`).
    static func acp(of base: String, name: String) -> AgentProvider {
        AgentProvider(
            id: base + "-acp", name: name, executableName: nil, outputFormat: .acpJSONRPC, hasACPMode: false, fields: [resumeSession],
            encodeMessage: claudeUserMessage, acpModeOf: base
        ) { context in
            var arguments = [context.policy.acpClientExecutable ?? "agentgate", "acp-client"]
            if let session = context.request.resumeSession { arguments.append("--resume=\(session)") }
            arguments.append("--permissions=\(context.policy.agentPermissions.rawValue)")
            if context.policy.agentPermissions == .ask {
                arguments += ["--ask-timeout-ms=\(context.policy.permissionTimeoutSeconds * 1_000)", "--ask-default=\(context.policy.permissionDefault.rawValue)"]
            }
            arguments += ["--", context.executable, "acp"]
            return CommandLine(arguments: arguments, stdin: String(decoding: claudeUserMessage(context.request.prompt), as: UTF8.self), outputFile: nil)
        }
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
