#if canImport(Glibc)
import Glibc
#endif

/// Crash points for the restart tests: with `AGENTGATE_FAIL_POINT=<name>` in its environment,
/// the server SIGKILLs itself the first time it reaches that point, as a crash there would end
/// it. Read once; unset (always, outside those tests) nothing happens.
public enum FailPoint: String, Sendable {
    /// Events (and their spool cursor) are in the log; the job's record is not saved yet.
    case eventsAppended = "events-appended"
    /// Half of a batch of events is written (a torn last line), the rest is not.
    case eventsTorn = "events-torn"
    /// The agent's exit is known (exit.json read); nothing of its end is recorded yet.
    case agentExited = "agent-exited"
    /// A worktree job's change is committed and recorded with the job; its results and hook
    /// are not.
    case changeRecorded = "change-recorded"
    /// The completion hook ran and its outcome is recorded; `job:completed` is not written.
    case hookRecorded = "hook-recorded"

    private static let armed: String? = getenv("AGENTGATE_FAIL_POINT").map { String(cString: $0) }

    static func isArmed(_ point: FailPoint) -> Bool { armed == point.rawValue }

    /// Writes the first half of `bytes` to the end of `log` (cutting a line), then crashes.
    static func tear(_ log: String, _ bytes: [UInt8]) {
        let fd = open(log, O_WRONLY | O_APPEND | O_CLOEXEC)
        if fd >= 0 { _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, max(1, $0.count / 2)) } }
        kill(getpid(), SIGKILL)
    }

    /// Crashes here when armed for `point`.
    static func reach(_ point: FailPoint) {
        if isArmed(point) { kill(getpid(), SIGKILL) }
    }
}
