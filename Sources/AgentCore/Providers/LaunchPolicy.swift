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
    /// Which env keys a request may set (none by default).
    public var environment = EnvironmentPolicy()
    /// Where jobs may run (nil: anywhere, for `exec`, which runs as its caller's own command).
    public var workspaces: WorkspacePolicy?
    /// How ACP agents' permission requests are answered (deny unless the operator says allow
    /// or ask); with ask, how long a question waits for the job's controller and the answer
    /// after that.
    public var agentPermissions = ACPClientSession.PermissionPolicy.deny
    public var permissionTimeoutSeconds = 120
    public var permissionDefault = ACPClientSession.PermissionPolicy.deny
    /// The `agentgate` executable that runs ACP agents (`agentgate acp-client`); nil: ACP
    /// providers cannot run.
    public var acpClientExecutable: String?

    public init(
        claudePermissionMode: String? = nil, codexSandbox: String? = nil, allowCustomCommands: Bool = false,
        environment: EnvironmentPolicy = EnvironmentPolicy(), workspaces: WorkspacePolicy? = nil
    ) {
        self.claudePermissionMode = claudePermissionMode
        self.codexSandbox = codexSandbox
        self.allowCustomCommands = allowCustomCommands
        self.environment = environment
        self.workspaces = workspaces
    }
}
