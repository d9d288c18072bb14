#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Makes sure nothing a job started outlives it, even a process that left the job's process
/// group (`setsid`, a daemon): `kill(-pgid)` alone does not reach those.
///
/// Each job gets a cgroup v2 group where the machine allows it (see `CgroupTree`); its
/// leader is born inside it and `cgroup.kill` ends every member when the job ends.
/// Otherwise the server becomes a child subreaper and sweeps for the job's re-parented
/// descendants (see `Subreaper`).
public final class JobContainment {
    public enum Mode: String, Sendable {
        case cgroup
        case subreaper
    }

    /// How jobs are contained (a job whose group could not be created is swept instead).
    public let mode: Mode
    private let tree: CgroupTree?
    /// The sweeps after jobs ended, batched over jobs (subreaper path).
    private let sweeps = SubreaperSweeps()

    /// - Parameter useCgroups: false forces the subreaper fallback.
    public init(useCgroups: Bool) {
        tree = useCgroups ? CgroupTree.shared : nil
        mode = tree == nil ? .subreaper : .cgroup
        if tree == nil { Subreaper.enable() }
    }

    /// The container for a job about to be spawned.
    public func container(forJob id: String) -> JobContainer {
        if let group = tree?.makeGroup(forJob: id) { return JobContainer(jobID: id, cgroup: group, sweeps: sweeps) }
        // Before the spawn, so even the job's first orphan is re-parented to us.
        Subreaper.enable()
        return JobContainer(jobID: id, cgroup: nil, sweeps: sweeps)
    }
}

/// One job's processes: its cgroup, or (without one) the subreaper's sweep for its id.
public final class JobContainer {
    public let jobID: String
    private var cgroup: JobCgroup?
    private let sweeps: SubreaperSweeps
    private var released = false

    /// Polls of cgroup.events after cgroup.kill, and sweeps after the leader's exit: the
    /// kernel kills and re-parents asynchronously, so one look is not enough.
    static let cgroupPollMilliseconds = 20
    static let cgroupGiveUpMilliseconds = 30_000
    static let sweepDelaysMilliseconds = [0, 50, 150, 400, 1_000, 2_000]

    init(jobID: String, cgroup: JobCgroup?, sweeps: SubreaperSweeps) {
        self.jobID = jobID
        self.cgroup = cgroup
        self.sweeps = sweeps
    }

    /// The cgroup directory fd to spawn into, or -1.
    var cgroupDirectoryFD: Int32 { cgroup?.directoryFD ?? -1 }

    /// The cgroup's path, nil on the subreaper path.
    public var cgroupPath: String? { cgroup?.path }

    /// The spawn is done (or failed): the directory fd is no longer needed.
    func spawned() {
        cgroup?.closeDirectory()
    }

    /// `signal` to members that left the job's process group (cgroup path only; before the
    /// leader exits they are not ours to find otherwise).
    func signalEscaped(_ signal: Int32) {
        cgroup?.signalAll(signal)
    }

    /// SIGKILL to everything of the job we can find, now.
    func killAll() {
        if let cgroup {
            cgroup.killAll()
        } else {
            Subreaper.sweep(jobID: jobID)
        }
    }

    /// The leader exited and was reaped: kill the rest and, off the loop's critical path,
    /// make sure it is gone (and remove the cgroup once empty). Idempotent.
    func release(on loop: EventLoop) {
        guard !released else { return }
        released = true
        if let cgroup {
            cgroup.killAll()
            awaitEmpty(cgroup, loop: loop, waitedMilliseconds: 0)
        } else {
            sweeps.add(jobID, after: Self.sweepDelaysMilliseconds, on: loop)
        }
    }

    private func awaitEmpty(_ cgroup: JobCgroup, loop: EventLoop, waitedMilliseconds: Int) {
        if cgroup.isPopulated != true, cgroup.remove() {
            if Subreaper.isEnabled { Subreaper.reapAdopted() }
            return
        }
        guard waitedMilliseconds < Self.cgroupGiveUpMilliseconds else { return }
        // Slower after the first second; kill again in case something raced the first kill.
        let delay = waitedMilliseconds < 1_000 ? Self.cgroupPollMilliseconds : 500
        if waitedMilliseconds >= 1_000 { cgroup.killAll() }
        loop.schedule(afterMilliseconds: delay) { [self] in
            self.awaitEmpty(cgroup, loop: loop, waitedMilliseconds: waitedMilliseconds + delay)
        }
    }
}
