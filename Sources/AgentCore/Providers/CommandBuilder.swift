/// Builds each provider's command line from a validated request (FORMATS.md has the flags
/// and where each was seen). Pure: the machine is consulted only through `capabilities`
/// and `isDirectory`, so every rule is testable without processes.
public struct CommandBuilder: Sendable {
    public var policy: LaunchPolicy
    public var capabilities: AgentCapabilities
    /// PATH used to resolve a custom command's argv[0].
    public var searchPath: String?

    public init(policy: LaunchPolicy, capabilities: AgentCapabilities, searchPath: String?) {
        self.policy = policy
        self.capabilities = capabilities
        self.searchPath = searchPath
    }

    /// - Parameter outputFile: where a provider that can write its final answer to a file
    ///   (codex `-o`) should put it.
    public func build(_ request: LaunchRequest, outputFile: String?) throws(LaunchError) -> LaunchSpec {
        try request.validate()
        guard let kind = ProviderKind(rawValue: request.provider) else {
            throw LaunchError(.unknownProvider, field: "provider", "unknown provider '\(request.provider)'; available: \(availableList)")
        }
        if let cwd = request.cwd, !ExecutableSearch.isDirectory(cwd) {
            throw LaunchError(.invalidWorkingDirectory, field: "cwd", "cwd '\(cwd)' does not exist or is not a directory")
        }
        if kind == .custom {
            return try custom(request)
        }
        if request.command != nil {
            throw LaunchError(.invalidField, field: "command", "command is only accepted with provider 'custom'")
        }
        guard let info = capabilities.providers.first(where: { $0.id == kind.rawValue }), info.available, let path = info.path else {
            throw LaunchError(.providerUnavailable, field: "provider", "provider '\(kind.rawValue)' is not available on this machine; available: \(availableList)")
        }
        var spec = LaunchSpec(
            provider: kind, executable: path, arguments: [path], environment: request.env,
            workingDirectory: request.cwd, stdin: request.prompt, outputFormat: kind.outputFormat, outputFile: nil)
        switch kind {
        case .claude: claude(request, into: &spec)
        case .codex: codex(request, outputFile: outputFile, into: &spec)
        case .opencode: opencode(request, into: &spec)
        case .goose: goose(request, into: &spec)
        case .custom: break
        }
        return spec
    }

    private var availableList: String {
        capabilities.available.isEmpty ? "(none)" : capabilities.available.joined(separator: ", ")
    }

    /// `claude -p --output-format stream-json --verbose`, prompt on stdin.
    private func claude(_ request: LaunchRequest, into spec: inout LaunchSpec) {
        spec.arguments += ["-p", "--output-format", "stream-json", "--verbose"]
        if let model = request.model { spec.arguments += ["--model", model] }
        if let effort = request.effort ?? request.reasoningEffort { spec.arguments += ["--effort", effort] }
        if let session = request.resumeSession { spec.arguments += ["--resume", session] }
        if let turns = request.maxTurns { spec.arguments += ["--max-turns", String(turns)] }
        if let mode = policy.claudePermissionMode { spec.arguments += ["--permission-mode", mode] }
    }

    /// `codex exec --json … -` (prompt on stdin). `resume` takes neither `-C` nor `-s`, so
    /// then the cwd is the process's and the sandbox goes through `-c sandbox_mode=…`.
    private func codex(_ request: LaunchRequest, outputFile: String?, into spec: inout LaunchSpec) {
        spec.arguments += ["exec", "--json", "--skip-git-repo-check"]
        if let model = request.model { spec.arguments += ["-m", model] }
        if let effort = request.reasoningEffort ?? request.effort {
            spec.arguments += ["-c", "model_reasoning_effort=\"\(effort)\""]
        }
        if let outputFile {
            spec.arguments += ["-o", outputFile]
            spec.outputFile = outputFile
        }
        if let session = request.resumeSession {
            if let sandbox = policy.codexSandbox { spec.arguments += ["-c", "sandbox_mode=\"\(sandbox)\""] }
            spec.arguments += ["resume", session, "-"]
        } else {
            if let cwd = request.cwd { spec.arguments += ["-C", cwd] }
            if let sandbox = policy.codexSandbox { spec.arguments += ["--sandbox", sandbox] }
            spec.arguments += ["-"]
        }
    }

    /// `opencode run --format json … -- PROMPT` (opencode takes the message as arguments).
    private func opencode(_ request: LaunchRequest, into spec: inout LaunchSpec) {
        spec.arguments += ["run", "--format", "json"]
        if let model = request.model { spec.arguments += ["-m", model] }
        if let effort = request.effort ?? request.reasoningEffort { spec.arguments += ["--variant", effort] }
        if let session = request.resumeSession { spec.arguments += ["-s", session] }
        spec.arguments += ["--", request.prompt]
        spec.stdin = ""
    }

    /// `goose run --output-format stream-json -i -` (instructions on stdin).
    private func goose(_ request: LaunchRequest, into spec: inout LaunchSpec) {
        spec.arguments += ["run", "--output-format", "stream-json"]
        if let model = request.model { spec.arguments += ["--model", model] }
        if let turns = request.maxTurns { spec.arguments += ["--max-turns", String(turns)] }
        if let session = request.resumeSession { spec.arguments += ["--resume", "--session-id", session] }
        spec.arguments += ["-i", "-"]
    }

    private func custom(_ request: LaunchRequest) throws(LaunchError) -> LaunchSpec {
        guard policy.allowCustomCommands else {
            throw LaunchError(
                .customCommandsDisabled, field: "provider",
                "custom commands are disabled; the operator must start the server with --allow-custom-commands")
        }
        guard let command = request.command, let program = command.first else {
            throw LaunchError(.missingField, field: "command", "provider 'custom' needs command: [argv…]")
        }
        guard let path = ExecutableSearch.find(program, path: searchPath) else {
            throw LaunchError(.invalidField, field: "command", "'\(program)' was not found or is not executable")
        }
        return LaunchSpec(
            provider: .custom, executable: path, arguments: command, environment: request.env,
            workingDirectory: request.cwd, stdin: request.prompt, outputFormat: .auto, outputFile: nil)
    }
}
