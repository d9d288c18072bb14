/// The operator's choices about what jobs may do, set on the command line of the server,
/// never by a client.
public struct LaunchPolicy: Sendable {
    /// Passed to claude as `--permission-mode` when set (acceptEdits, bypassPermissions, …).
    public var claudePermissionMode: String?
    /// Passed to codex as `--sandbox` when set (read-only, workspace-write, danger-full-access).
    public var codexSandbox: String?
    /// Lets clients run an explicit argv (`provider: "custom"`). Off by default: a server
    /// that runs any argv from any caller is a remote-code-execution hole.
    public var allowCustomCommands = false

    public init(claudePermissionMode: String? = nil, codexSandbox: String? = nil, allowCustomCommands: Bool = false) {
        self.claudePermissionMode = claudePermissionMode
        self.codexSandbox = codexSandbox
        self.allowCustomCommands = allowCustomCommands
    }
}
