import CSystemShims

/// How a process ended.
public enum ExitStatus: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)
    /// It ended, but how was never learnt: its supervisor died before it and nothing could
    /// wait for it (README "Restarts"). Not a success, and no code or signal made up for it.
    case unknown

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

    /// "SIGKILL" for 9: how people name the signals a job may end by ("SIG41" for others).
    public static func signalName(_ number: Int32) -> String {
        let names: [Int32: String] = [
            1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
            9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
            24: "SIGXCPU", 25: "SIGXFSZ",
        ]
        return names[number] ?? "SIG\(number)"
    }
}
