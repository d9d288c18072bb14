#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// The fallback where cgroups are not usable: the server is a child subreaper, so a job's
/// orphaned descendants (a `setsid` grandchild whose parent died) are re-parented to the
/// server instead of init, where a sweep can find them by the `AGENTGATE_JOB_ID` every job
/// carries in its environment.
///
/// Weaker than a cgroup: a process that clears its environment, or one whose parent is
/// still alive somewhere outside the job's process group, is not found.
enum Subreaper {
    /// Makes this process a child subreaper (idempotent); false where the kernel refuses.
    @discardableResult
    static func enable() -> Bool {
        ag_is_child_subreaper() != 0 || ag_set_child_subreaper() == 0
    }

    static var isEnabled: Bool { ag_is_child_subreaper() != 0 }

    /// SIGKILL to every process re-parented to us whose environment says it belongs to
    /// `jobID`, and to everything below it; then reaps adopted zombies. Never touches a
    /// child some `SupervisedProcess` is responsible for. Returns how many were killed.
    @discardableResult
    static func sweep(jobID: String) -> Int {
        sweep(jobIDs: [jobID])
    }

    /// `sweep(jobID:)` for several jobs with one read of the process table.
    @discardableResult
    static func sweep(jobIDs: Set<String>) -> Int {
        guard !jobIDs.isEmpty else { return 0 }
        let me = getpid()
        let markers = Set(jobIDs.map { Array(("AGENTGATE_JOB_ID=" + $0).utf8) })
        let table = ProcessTable.read()
        let adopted = table.entries.filter {
            $0.parent == me && !$0.isZombie && !TrackedChildren.contains($0.pid)
                && ProcessTable.environment(of: $0.pid, containsAnyOf: markers)
        }
        let victims = table.descendants(of: adopted.map(\.pid))
        for pid in victims { kill(pid, SIGKILL) }
        // The table read before the kills still shows every zombie when none was killed.
        reapAdopted(victims.isEmpty ? table : ProcessTable.read())
        return victims.count
    }

    /// waitpid on each zombie child of ours that no `SupervisedProcess` owns. Only outside
    /// our own session: whatever a job started lives in the job's session (or one of its
    /// own), while a child some other code of this process started without a session of
    /// its own (a test helper, a library) is not ours to reap.
    static func reapAdopted(_ table: ProcessTable = .read()) {
        let me = getpid()
        let ourSession = getsid(0)
        TrackedChildren.reapUntracked(
            table.entries.filter { $0.parent == me && $0.isZombie && $0.session != ourSession }.map(\.pid))
    }
}
