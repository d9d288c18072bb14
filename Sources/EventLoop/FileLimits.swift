#if canImport(Glibc)
import Glibc
#endif

/// The process's descriptor limit (`RLIMIT_NOFILE`). Every connection and every job takes
/// descriptors from it, so the server raises it once at start and sizes its connection
/// limit from it, keeping a share back for the jobs it spawns.
public enum FileLimits {
    /// RLIM_INFINITY (all ones; the C macro does not import).
    private static let unlimited = rlim_t.max

    /// The soft and hard limits now.
    public static func current() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1024, 1024) }
        return (clamp(limit.rlim_cur), clamp(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one (the soft default, often 1024, is a relic of
    /// select(2); epoll has no such ceiling). Returns the soft limit in force afterwards:
    /// unchanged when raising is refused.
    @discardableResult
    public static func raiseSoftLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return current().soft }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            // An unlimited hard limit cannot be the soft one: the kernel caps at fs.nr_open.
            raised.rlim_cur = limit.rlim_max == Self.unlimited ? rlim_t(1 << 20) : limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) != 0 {
                raised.rlim_cur = min(limit.rlim_max, rlim_t(1 << 20))
                _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
            }
        }
        return current().soft
    }

    /// Descriptors kept back from connections, out of `limit`: a quarter, at least 64 (the
    /// store, the listener, the loop, logs), at most half. A job holds about 6 while it runs
    /// (stdin, stdout and stderr pipes, a pidfd, its event and log files), so under the
    /// common `ulimit -n 1024` the reserve of 256 leaves room for 40 jobs and 768
    /// connections; at 1024 × 1024 the reserve is far beyond any job count.
    public static func reserveForJobs(limit: Int) -> Int {
        min(max(64, limit / 4), limit / 2)
    }

    /// The connections a server may hold under `limit` descriptors (at least 1).
    public static func connectionBudget(limit: Int) -> Int {
        max(1, limit - reserveForJobs(limit: limit))
    }

    /// Grows the process's descriptor table once, at start, to hold `count` descriptors.
    /// The kernel grows it on demand by doubling, and in a process with threads each growth
    /// waits for an RCU grace period: measured 10–25 ms inside `accept`, a loop turn that
    /// every client waits for, at 512, 1,024 and 2,048 connections. The table never shrinks,
    /// so one growth now (8 bytes a slot: 256 KiB for 32,768) takes those waits out of the
    /// serving path. Best effort: capped by the soft limit.
    public static func growDescriptorTable(toHold count: Int) {
        let highest = min(count, current().soft) - 1
        guard highest > 3 else { return }
        let probe = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard probe >= 0 else { return }
        let high = fcntl(probe, F_DUPFD_CLOEXEC, Int32(clamping: highest))
        if high >= 0 { close(high) }
        close(probe)
    }

    private static func clamp(_ value: rlim_t) -> Int {
        value == Self.unlimited || value > rlim_t(Int.max) ? Int.max : Int(value)
    }
}
