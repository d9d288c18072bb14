/// Why a launch request was refused. Each case names the field it concerns, so an API can
/// answer 400 pointing at it and a form can show the message beside the right input.
public struct LaunchError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidField = "invalid_field"
        case missingField = "missing_field"
        case unknownProvider = "unknown_provider"
        case providerUnavailable = "provider_unavailable"
        case customCommandsDisabled = "custom_commands_disabled"
        case promptTooLarge = "prompt_too_large"
        case invalidWorkingDirectory = "invalid_cwd"
        case invalidEnvironment = "invalid_env"
        /// A field the request's provider cannot honour.
        case unsupportedField = "unsupported_field"
        /// A field no provider has.
        case unknownField = "unknown_field"
        /// An env key the operator did not allow with `--pass-env`.
        case environmentNotAllowed = "env_not_allowed"
        /// An env key that can change what runs or where credentials go: never passed.
        case environmentForbidden = "env_forbidden"
        case cwdOutsideWorkspace = "cwd_outside_workspace"
        /// Inside a workspace, but the data dir or a hidden directory at its top (`~/.ssh`).
        case cwdForbidden = "cwd_forbidden"
        /// The data dir is (nearly) full: the job could not be recorded.
        case insufficientStorage = "insufficient_storage"
        /// `isolation: "worktree"` for a cwd in no git checkout.
        case notARepository = "not_a_repository"
        /// `worktreeOf` names a job without a worktree (404-like: `unknown_job` when no job).
        case noWorktree = "no_worktree"
        /// `worktreeOf` names a worktree a job works in now, or one being applied or discarded.
        case worktreeBusy = "worktree_busy"
        case unknownJob = "unknown_job"
        /// Another unfinished job holds the launch's key and it asked `onConflict: "reject"`.
        case keyConflict = "key_conflict"
        /// As many jobs wait as the operator lets queue (`--max-queued`).
        case queueFull = "queue_full"
        /// `profile` names none of the server's profiles.
        case unknownProfile = "unknown_profile"
        /// The request sets a field its profile fixes, differently.
        case profileField = "profile_field"
    }

    /// The HTTP status the API answers with: 507 when the server, not the request, is at
    /// fault (a full disk), 503 for a full queue, 409 for a worktree in use or a key held,
    /// 404 for a job that does not exist, 400 otherwise.
    public var httpStatus: Int {
        switch code {
        case .insufficientStorage: 507
        case .queueFull: 503
        case .worktreeBusy, .noWorktree, .keyConflict: 409
        case .unknownJob: 404
        default: 400
        }
    }

    public let code: Code
    /// The request field at fault (`provider`, `cwd`, `env.FOO`…).
    public let field: String?
    public let message: String

    public init(_ code: Code, field: String?, _ message: String) {
        self.code = code
        self.field = field
        self.message = message
    }

    public var description: String { message }
}
