/// A launch request turned into a concrete command line.
public struct LaunchSpec: Sendable, Equatable {
    /// The `AgentProvider` id.
    public var provider: String
    /// Absolute path of the program.
    public var executable: String
    /// argv including argv[0].
    public var arguments: [String]
    /// The request's env entries (already checked against the operator's `--pass-env`).
    public var environment: [String: String]
    public var workingDirectory: String?
    public var stdin: String
    public var outputFormat: OutputFormat
    /// A file the agent writes its result to, ingested by the completion hook.
    public var outputFile: String?
    /// Stdin stays open for follow-up messages, each encoded by the provider's
    /// `encodeMessage` (a conversation); closed once the agent has answered all it was sent.
    public var takesMessages: Bool = false
}
