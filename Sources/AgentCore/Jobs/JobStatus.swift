/// A job's lifecycle: starting → running → done | failed | killed, or interrupted when the
/// server stopped while it ran.
public enum JobStatus: String, Sendable, CaseIterable {
    case starting, running, done, failed, killed, interrupted

    public var isFinished: Bool {
        switch self {
        case .starting, .running: false
        case .done, .failed, .killed, .interrupted: true
        }
    }
}
