import EventLoop

/// A running agent as the job engine sees it: output, exit, and stop. Nothing about how it was
/// started or where it runs.
public protocol AgentProcess: AnyObject {
    /// Pid (its group's id too) and start time, recorded with the job.
    var identity: ProcessIdentity { get }
    var onStdout: ((UnsafeRawBufferPointer) -> Void)? { get set }
    var onStderr: ((UnsafeRawBufferPointer) -> Void)? { get set }
    /// Called once, on the loop, when the agent and its output are done.
    var onExit: ((ExitStatus) -> Void)? { get set }
    /// What the runner itself has to say about the job ("its supervisor ended unexpectedly"),
    /// kept apart from the agent's stderr: it is not in the agent's output (or its spools).
    var onNotice: ((String) -> Void)? { get set }
    /// Lets it run (output and exit are watched from here on).
    func start() throws(SystemError)
    /// SIGTERM to its group, SIGKILL to what is left after the grace period.
    func terminate(graceMilliseconds: Int)
    /// Keeps, where a later server finds it, that a stop was asked for (the job ends `killed`
    /// even if this server stops before the agent does).
    func recordStopRequest()
    func killNow()
    /// Where in its spool files its output starts being read (nil: its output is not in
    /// files, as with pipes): the engine keeps a `SpoolCursor` in the event log from it.
    var spoolStart: SpoolCursor? { get }
    /// `cursor` (positions in its spools) with the bytes right before each position that it
    /// read, for the next reader to check the spools against.
    func checked(_ cursor: SpoolCursor) -> SpoolCursor
    /// When the agent ended, as its runner recorded it (wall clock, ms), once `onExit` ran:
    /// an agent that ended while no server was attached ended then, not when it was seen.
    var endedAt: Int? { get }
    /// Its supervisor stopped it because no server was attached for longer than the orphan
    /// timeout (known once `onExit` ran).
    var endedByOrphanTimeout: Bool { get }
    /// Taken up after a restart with its agent ended already (its record says how).
    var endedBeforeAdoption: Bool { get }
    /// Its stdin is open for messages (a conversation that was not closed).
    var acceptsInput: Bool { get }
    /// Adds a message to a conversation's stdin (`Spec.keepsStdinOpen`); false when it cannot
    /// reach the agent (stdin closed, or not a conversation).
    func sendInput(_ bytes: [UInt8]) -> Bool
    /// Ends a conversation's stdin once what was sent reached it: the agent reads EOF.
    func closeInput()
}

extension AgentProcess {
    public var spoolStart: SpoolCursor? { nil }
    public func checked(_ cursor: SpoolCursor) -> SpoolCursor { cursor }
    public var endedAt: Int? { nil }
    public var endedByOrphanTimeout: Bool { false }
    public func recordStopRequest() {}
    public var endedBeforeAdoption: Bool { false }
    public var acceptsInput: Bool { false }
    public func sendInput(_ bytes: [UInt8]) -> Bool { false }
    public func closeInput() {}
}

/// Where and how jobs' agents run. The engine asks a runner for a process and sees only
/// `AgentProcess` from then on: the seam for the per-job supervisor of restart survival,
/// and later for ssh and container runners.
public protocol JobRunner: AnyObject {
    /// How jobs are contained, for the start-up banner and log.
    var containmentDescription: String { get }
    /// A process for job `id`, created but not started.
    func process(forJob id: String, spec: SupervisedProcess.Spec) throws(SystemError) -> any AgentProcess
    /// Whether a job that was running when the last server stopped can be taken up again.
    /// `cursor`: how far its output is in events.
    func adopt(job: Job, cursor: SpoolCursor?) -> Adoption
}

/// What becomes of a job that was running when the last server stopped.
public enum Adoption {
    /// Taken up again: its process, created but not started; `stopRequested`: someone asked
    /// for it to stop while no server ran (`agentgate kill`), so it ends `killed`.
    case adopted(any AgentProcess, stopRequested: Bool = false)
    /// Not taken up: it is `interrupted`, and its recorded group is stopped if its leader
    /// passes the identity check (pid and start time).
    case orphaned
    /// Not taken up, and its records name processes of another boot (the host restarted):
    /// it is `interrupted` and nothing is signalled, whatever runs under those pids now.
    case otherBoot
}

extension JobRunner {
    /// Children of a server that stopped cannot be taken up: their pipes died with it.
    public func adopt(job: Job, cursor: SpoolCursor?) -> Adoption { .orphaned }
}

extension SupervisedProcess: AgentProcess {}

/// Agents as children of this server: each in its own process group, watched through a pidfd,
/// in a cgroup of its own when the host allows (`JobContainment`).
public final class LocalRunner: JobRunner {
    public let loop: EventLoop
    public let containment: JobContainment

    public init(loop: EventLoop, containment: JobContainment) {
        self.loop = loop
        self.containment = containment
    }

    public var containmentDescription: String { containment.mode == .cgroup ? "cgroup" : "subreaper" }

    public func process(forJob id: String, spec: SupervisedProcess.Spec) throws(SystemError) -> any AgentProcess {
        try SupervisedProcess(loop: loop, spec: spec, container: containment.container(forJob: id))
    }
}
