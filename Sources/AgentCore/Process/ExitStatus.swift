import CSystemShims

/// How a process ended.
public enum ExitStatus: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus: Int32) {
        if ag_wifsignaled(waitStatus) != 0 {
            self = .signaled(ag_wtermsig(waitStatus))
        } else {
            self = .exited(ag_wexitstatus(waitStatus))
        }
    }

    public var exitCode: Int32? {
        if case .exited(let code) = self { return code }
        return nil
    }

    public var signal: Int32? {
        if case .signaled(let signal) = self { return signal }
        return nil
    }
}
