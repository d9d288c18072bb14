/// Builds a provider's command line from a request, after checking every field against what
/// that provider accepts (`AgentProvider.fields`). Pure apart from resolving paths: the
/// machine is consulted only through `capabilities`, the workspace policy and `searchPath`,
/// so every rule is testable without processes.
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
    /// - Parameter runningIn: where the agent runs instead of the requested cwd (which is
    ///   still checked): the job's worktree.
    public func build(_ request: LaunchRequest, outputFile: String?, runningIn: String? = nil) throws(LaunchError) -> LaunchSpec {
        try request.validate()
        guard let provider = AgentProvider.named(request.provider) else {
            throw LaunchError(.unknownProvider, field: "provider", "unknown provider '\(request.provider)'; available: \(availableList)")
        }
        if provider.id == AgentProvider.customID, !policy.allowCustomCommands {
            throw LaunchError(
                .customCommandsDisabled, field: "provider",
                "custom commands are disabled; the operator must start the server with --allow-custom-commands")
        }
        try Self.checkFields(request, for: provider)
        try policy.environment.check(request.env)
        var workingDirectory: String?
        if let workspaces = policy.workspaces {
            workingDirectory = try workspaces.resolve(request.cwd)
        } else {
            if let cwd = request.cwd, !ExecutableSearch.isDirectory(cwd) {
                throw LaunchError(.invalidWorkingDirectory, field: "cwd", "cwd '\(cwd)' does not exist or is not a directory")
            }
            workingDirectory = request.cwd
        }
        if let runningIn { workingDirectory = runningIn }
        let executable: String
        if provider.id == AgentProvider.customID {
            executable = try customExecutable(request)
        } else {
            guard let info = capabilities.providers.first(where: { $0.id == provider.id }), info.available, let path = info.path else {
                throw LaunchError(
                    .providerUnavailable, field: "provider",
                    "provider '\(provider.id)' is not available on this machine; available: \(availableList)")
            }
            executable = path
        }
        if provider.acpModeOf != nil, policy.acpClientExecutable == nil {
            throw LaunchError(.providerUnavailable, field: "provider", "provider '\(provider.id)' needs agentgate's ACP client, which this server cannot run")
        }
        let context = AgentProvider.Context(
            request: request, executable: executable, policy: policy, outputFile: outputFile, workingDirectory: workingDirectory)
        let line = provider.commandLine(context)
        return LaunchSpec(
            // An ACP provider runs agentgate's ACP client, which runs the CLI.
            provider: provider.id, executable: provider.acpModeOf != nil ? line.arguments[0] : executable, arguments: line.arguments,
            environment: request.env,
            workingDirectory: workingDirectory, stdin: line.stdin, outputFormat: provider.outputFormat, outputFile: line.outputFile,
            takesMessages: provider.encodeMessage != nil)
    }

    /// Every optional field must be one the provider has, with a value it allows.
    static func checkFields(_ request: LaunchRequest, for provider: AgentProvider) throws(LaunchError) {
        for (name, value) in request.providerFields {
            guard let field = provider.field(name) else {
                let takers = AgentProvider.all.filter { $0.field(name) != nil }.map(\.id)
                throw LaunchError(
                    .unsupportedField, field: name,
                    "provider '\(provider.id)' does not take \(name)"
                        + (takers.isEmpty ? "" : " (\(takers.joined(separator: ", ")) do)"))
            }
            switch (field.kind, value) {
            case (.choice(let values), .text(let text)) where values.contains(text):
                break
            case (.argv, .argv):
                break
            case (.choice(let values), _):
                throw LaunchError(
                    .invalidField, field: name, "\(name) for \(provider.id) must be one of \(values.joined(separator: ", "))")
            case (.identifier, .text(let text)) where LaunchField.isIdentifier(text):
                break
            case (.identifier, _):
                throw LaunchError(
                    .invalidField, field: name,
                    "\(name) must be letters, digits and ._:/@+[]- starting with a letter or digit (at most 200)")
            case (.sessionID, .text(let text)) where LaunchField.isSessionID(text):
                break
            case (.sessionID, _):
                throw LaunchError(
                    .invalidField, field: name, "\(name) must be letters, digits and ._:@+- starting with a letter or digit (at most 200)")
            case (.integer(let range), .integer(let number)) where range.contains(number):
                break
            case (.integer(let range), _):
                throw LaunchError(.invalidField, field: name, "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
            case (.number(let range), .number(let number)) where range.contains(number):
                break
            case (.number(let range), _):
                throw LaunchError(
                    .invalidField, field: name, "\(name) must be a number from \(LaunchRequest.dollars(range.lowerBound)) to \(LaunchRequest.dollars(range.upperBound))")
            case (.argv, _):
                throw LaunchError(.invalidField, field: name, "\(name) must be a non-empty array of strings")
            }
        }
        if provider.id == AgentProvider.customID, request.command == nil {
            throw LaunchError(.missingField, field: "command", "provider 'custom' needs command: [argv…]")
        }
    }

    private var availableList: String {
        capabilities.available.isEmpty ? "(none)" : capabilities.available.joined(separator: ", ")
    }

    private func customExecutable(_ request: LaunchRequest) throws(LaunchError) -> String {
        guard let program = request.command?.first else {
            throw LaunchError(.missingField, field: "command", "provider 'custom' needs command: [argv…]")
        }
        guard let path = ExecutableSearch.find(program, path: searchPath) else {
            throw LaunchError(.invalidField, field: "command", "'\(program)' was not found or is not executable")
        }
        return path
    }
}
