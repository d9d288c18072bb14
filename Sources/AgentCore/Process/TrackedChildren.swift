#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The pids of our direct children whose exit status a `SupervisedProcess` will collect.
///
/// As a child subreaper the server also becomes the parent of processes it never started
/// (a job's orphaned grandchildren), and must reap those itself. It may only ever wait for
/// a specific pid that is not in this set: a blanket `waitpid(-1)` could steal the exit
/// status of a job, a hook or a probe. Spawning and reaping hold the same lock, so a child
/// that exits before its pid was recorded cannot be mistaken for an adopted one.
enum TrackedChildren {
    private static let pids = Mutex<Set<pid_t>>([])

    /// Runs `spawn` under the lock and records the pid it returns (if positive).
    static func spawn<Failure: Error>(_ spawn: () throws(Failure) -> pid_t) throws(Failure) -> pid_t {
        let result: Result<pid_t, Failure> = pids.withLock { set in
            do throws(Failure) {
                let pid = try spawn()
                if pid > 0 { set.insert(pid) }
                return .success(pid)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The child was reaped by its owner.
    static func forget(_ pid: pid_t) {
        _ = pids.withLock { $0.remove(pid) }
    }

    static func contains(_ pid: pid_t) -> Bool {
        pids.withLock { $0.contains(pid) }
    }

    /// Reaps each of `candidates` that is an untracked zombie child of ours; returns how many.
    @discardableResult
    static func reapUntracked(_ candidates: [pid_t]) -> Int {
        pids.withLock { set in
            var reaped = 0
            for pid in candidates where !set.contains(pid) {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid { reaped += 1 }
            }
            return reaped
        }
    }
}
