/// A job's lifecycle: (queued, while admission control holds it →) (preparing, while its
/// worktree is made →) starting → running → (stopping, while a kill's grace period runs) →
/// done | failed | killed, or interrupted when the server stopped while it ran.
public enum JobStatus: String, Sendable, CaseIterable {
    case queued, preparing, starting, running, stopping, done, failed, killed, interrupted

    public var isFinished: Bool {
        switch self {
        case .queued, .preparing, .starting, .running, .stopping: false
        case .done, .failed, .killed, .interrupted: true
        }
    }
}
