#if canImport(Glibc)
import Glibc
#endif
import CSystemShims
import EventLoop

/// Agents under a supervisor of their own (`agentgate shim`, issue 14): the supervisor is the
/// agent's parent, the agent writes its output into spool files in the job's directory, and
/// the exit status is written to a file. Nothing the agent needs goes through this server, so
/// the server can stop while the agent works (re-adoption at start is the next step).
///
/// ```
///  server ──spawns──▶ agentgate shim <job>/agent -- /path/claude …   (its own group, subreaper)
///                         └─▶ claude …  stdout ─▶ <job>/agent/stdout   (O_APPEND files,
///                                       stderr ─▶ <job>/agent/stderr    never a pipe)
///  server ◀─inotify── the spools, read from offsets of its own (SpoolTail)
///  server ◀─pidfd──── the supervisor's exit, then <job>/agent/exit.json
/// ```
public final class SupervisorRunner: JobRunner {
    public let loop: EventLoop
    /// The `agentgate` executable that runs `shim`.
    public let supervisorExecutable: String
    public let jobsDirectory: String
    public let graceMilliseconds: Int
    public let containment: JobContainment
    /// A file the server touches while it runs, and how long a supervisor lets its agent work
    /// once it is not touched any more (nil: for ever).
    public let orphanTimeout: (heartbeat: String, milliseconds: Int)?
    /// How often woken jobs read their spools, from how many write (shared by all).
    let readPacer = SpoolReadPacer()

    public init(loop: EventLoop, supervisorExecutable: String, jobsDirectory: String, graceMilliseconds: Int, containment: JobContainment,
                orphanTimeout: (heartbeat: String, milliseconds: Int)? = nil) {
        self.loop = loop
        self.supervisorExecutable = supervisorExecutable
        self.jobsDirectory = jobsDirectory
        self.graceMilliseconds = graceMilliseconds
        self.containment = containment
        self.orphanTimeout = orphanTimeout
    }

    public var containmentDescription: String { "supervisor per job (" + (containment.mode == .cgroup ? "cgroup" : "subreaper") + ")" }

    public func process(forJob id: String, spec: SupervisedProcess.Spec) throws(SystemError) -> any AgentProcess {
        try SupervisedAgent(
            loop: loop, directory: jobsDirectory + "/" + id + "/agent", supervisor: supervisorExecutable, spec: spec,
            graceMilliseconds: graceMilliseconds, orphanTimeout: orphanTimeout, container: containment.container(forJob: id), pacer: readPacer)
    }

    /// A job that was running when the last server stopped is taken up again when its
    /// supervisor still runs (same pid, start time and boot) or it ended meanwhile and wrote
    /// `exit.json`; its spools are read on from `cursor`. Otherwise what is left of its
    /// agent's group gets SIGKILL (checked against `agent.json`: a pid that fails the check is
    /// never signalled); records of another boot signal nothing at all.
    public func adopt(job: Job, cursor: SpoolCursor?) -> Adoption {
        let directory = jobsDirectory + "/" + job.id + "/agent"
        var info = stat()
        guard lstat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return .orphaned }
        let start = cursor ?? SpoolCursor(stdout: 0, stderr: 0)
        let agent = AgentRecord.read(directory + "/agent.json")
        let sameBoot = agent.map { $0.bootId == ProcessIdentity.bootId() } ?? true
        let stopRequested = StopWithoutServer.wasRequested(in: directory)
        var recorded = job.pid.flatMap { pid in job.processStartTime.map { ProcessIdentity(pid: pid, startTime: $0) } }
        // The last server stopped between spawning the supervisor and recording it: the
        // agent's record names its supervisor, checked as the agent's parent with this job's
        // marker.
        if recorded == nil, sameBoot, let agent, agent.identityHolds, let supervisor = agent.supervisorIfParent() {
            recorded = ProcessIdentity.of(pid: supervisor)
        }
        // Or before the supervisor wrote that record (the server died within moments of the
        // launch, attacker trial: the job ran to its end recorded as never started).
        if recorded == nil, agent == nil {
            recorded = Self.unrecordedSupervisor(of: job.id)
        }
        if let supervisor = recorded, sameBoot {
            // (A zombie nobody reaped yet has ended: its record says how.)
            if supervisor.isAlive, !ProcessTable.hasEnded(supervisor.pid) {
                return .adopted(SupervisedAgent(adopting: directory, loop: loop, supervisor: supervisor, from: start, pacer: readPacer), stopRequested: stopRequested)
            }
        }
        // Ended and recorded, or its supervisor died and the agent works on (followed by itself),
        // or both died while no server ran (attacker trial): its spools still hold its output,
        // which is read to the end, its exit status unknown.
        // (A pid that lives on as another process fails the check: the job is `interrupted`.)
        let agentGone = agent.map { sameBoot && ProcessTable.hasEnded($0.pid) } ?? false
        if ExitRecord.read(directory + "/exit.json") != nil || agent?.identityHolds == true || agentGone {
            return .adopted(SupervisedAgent(adopting: directory, loop: loop, supervisor: nil, from: start, pacer: readPacer), stopRequested: stopRequested)
        }
        guard sameBoot else { return .otherBoot }
        AgentRecord.killGroup(in: directory)
        return .orphaned
    }

    /// A live `agentgate shim …/<id>/agent` carrying job `id`'s marker in its environment:
    /// the supervisor of a job whose record does not name it yet.
    static func unrecordedSupervisor(of id: String) -> ProcessIdentity? {
        let directorySuffix = Array(("/" + id + "/agent").utf8)
        let marker = "AGENTGATE_JOB_ID=" + id
        for entry in ProcessTable.read().entries where !entry.isZombie {
            guard let commandLine = ProcessTable.readProcFile("/proc/\(entry.pid)/cmdline", limit: 64 << 10) else { continue }
            let arguments = commandLine.split(separator: 0, omittingEmptySubsequences: false)
            guard arguments.count > 2, arguments[1].elementsEqual("shim".utf8), arguments[2].reversed().starts(with: directorySuffix.reversed()),
                let environment = ProcessTable.readProcFile("/proc/\(entry.pid)/environ", limit: 4 << 20),
                ProcessTable.environment(environment, contains: marker)
            else { continue }
            let identity = ProcessIdentity.of(pid: entry.pid)
            return identity.startTime == nil ? nil : identity
        }
        return nil
    }
}

/// One agent under its supervisor, as the engine sees it: output from the spools, the exit
/// from `exit.json` once the supervisor is gone.
public final class SupervisedAgent: AgentProcess {
    /// The supervisor's pid and start time.
    public let identity: ProcessIdentity
    /// Where its spools are read from: the engine's cursor is this plus the bytes it took.
    /// Moved back when a spool is read again from its start (`spoolTruncated`).
    public private(set) var spoolStart: SpoolCursor?
    public var onStdout: ((UnsafeRawBufferPointer) -> Void)?
    public var onStderr: ((UnsafeRawBufferPointer) -> Void)?
    public var onExit: ((ExitStatus) -> Void)?
    public var onNotice: ((String) -> Void)?
    public private(set) var endedAt: Int?
    public private(set) var endedByOrphanTimeout = false
    public let endedBeforeAdoption: Bool

    public let directory: String
    private let loop: EventLoop
    /// The supervisor when this server spawned it; nil when adopted (watched by pidfd).
    private let child: SupervisedProcess?
    /// An adopted supervisor that still ran when adopted.
    private let adopted: ProcessIdentity?
    private var adoptedFD: Int32 = -1
    private var adoptedRegistration: EventLoop.Registration?
    private let stdout: SpoolTail
    private let stderr: SpoolTail
    /// Wakes this job when its spools are written to.
    private let watcher: SpoolWatcher
    /// stderr was written to since it was last read to its end (it starts unread).
    private var stderrWritten = true
    private var stderrWatched = true
    private var pollTimer: EventLoop.TimerID?
    private var killTimer: EventLoop.TimerID?
    private var readScheduled = false
    /// When a wake last read the spools, and the read a wake within the batch window waits for.
    private var wakeReadAt = 0
    private var batchTimer: EventLoop.TimerID?
    /// The batch window, shared with the runner's other jobs, and this job's mark in it.
    private let pacer: SpoolReadPacer
    private var readMark = SpoolReadPacing.Mark()
    private var supervisorExit: ExitStatus?
    private var finished = false
    /// What finds the job's strays once it ended (nil when adopted: they are not our children).
    private var container: JobContainer?
    /// The agent, followed by itself once its supervisor died without a record.
    private var lostAgent: LostAgentWatch?
    private var followedLostAgent = false
    /// A conversation whose stdin is still open (`input` without `input.closed`).
    private var inputOpen: Bool

    /// Bytes of each spool handed on per loop turn: a chatty agent cannot hold a turn.
    static let maxBytesPerTurn = 64 * 1024
    /// The spools are read at least this often, whatever inotify says (a safety net).
    static let pollMilliseconds = 1_000

    /// Writes the job's agent directory (its stdin and empty spools) before anything runs, so
    /// a crash at any later point leaves something to adopt, then spawns the supervisor.
    init(loop: EventLoop, directory: String, supervisor executable: String, spec: SupervisedProcess.Spec, graceMilliseconds: Int,
         orphanTimeout: (heartbeat: String, milliseconds: Int)? = nil, container: JobContainer?, pacer: SpoolReadPacer) throws(SystemError) {
        self.loop = loop
        self.pacer = pacer
        watcher = SpoolWatcher(loop: loop)
        self.directory = directory
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw SystemError.last("mkdir \(directory)") }
        try Self.create(directory + "/stdout", bytes: [])
        try Self.create(directory + "/stderr", bytes: [])
        // A conversation's stdin is `input`, which grows with each message (`sendInput`).
        if spec.keepsStdinOpen {
            try Self.create(directory + "/input", bytes: spec.stdin)
        } else if !spec.stdin.isEmpty {
            try Self.create(directory + "/stdin", bytes: spec.stdin)
        }
        inputOpen = spec.keepsStdinOpen
        stdout = SpoolTail(path: directory + "/stdout")
        stderr = SpoolTail(path: directory + "/stderr")
        spoolStart = SpoolCursor(stdout: 0, stderr: 0)
        endedBeforeAdoption = false
        adopted = nil
        var arguments = [executable, "shim", directory, "--grace-ms", String(graceMilliseconds)]
        if let cwd = spec.workingDirectory { arguments += ["--cwd", cwd] }
        if let orphanTimeout {
            arguments += ["--heartbeat", orphanTimeout.heartbeat, "--orphan-timeout-ms", String(orphanTimeout.milliseconds)]
        }
        if let deadline = spec.deadlineMilliseconds { arguments += ["--deadline-ms", String(deadline)] }
        if spec.keepsStdinOpen { arguments.append("--input") }
        arguments += ["--", spec.executable] + spec.arguments.dropFirst()
        // The job's container (a subreaper sweep: supervisors do not use cgroups) is released
        // when the job ends, not when the supervisor does: an agent whose supervisor died works
        // on, re-parented to this server.
        let supervisor = try SupervisedProcess(
            loop: loop, spec: SupervisedProcess.Spec(executable: executable, arguments: arguments, environment: spec.environment),
            container: nil)
        self.container = container
        child = supervisor
        identity = supervisor.identity
    }

    /// A job a previous server started: its supervisor (nil: it already ended) and where the
    /// spools were read to.
    init(adopting directory: String, loop: EventLoop, supervisor: ProcessIdentity?, from cursor: SpoolCursor, pacer: SpoolReadPacer) {
        self.loop = loop
        self.pacer = pacer
        watcher = SpoolWatcher(loop: loop)
        self.directory = directory
        stdout = SpoolTail(path: directory + "/stdout", from: cursor.stdout, before: cursor.stdoutBefore)
        stderr = SpoolTail(path: directory + "/stderr", from: cursor.stderr, before: cursor.stderrBefore)
        spoolStart = cursor
        endedBeforeAdoption =
            supervisor == nil && (ExitRecord.read(directory + "/exit.json") != nil || AgentRecord.read(directory + "/agent.json")?.identityHolds != true)
        child = nil
        adopted = supervisor
        identity = supervisor ?? ProcessIdentity(pid: 0, startTime: nil)
        // Ended: the real status is in exit.json, or (no record: its supervisor died first) is
        // learnt by following the agent, or is not known at all (it ended too).
        if supervisor == nil { supervisorExit = .unknown }
        inputOpen = supervisor != nil && access(directory + "/input", F_OK) == 0 && access(directory + "/input.closed", F_OK) != 0
    }

    public var acceptsInput: Bool { inputOpen && supervisorExit == nil && !followedLostAgent }

    public func checked(_ cursor: SpoolCursor) -> SpoolCursor {
        var checked = cursor
        checked.stdoutBefore = stdout.bytes(before: cursor.stdout, count: SpoolCursor.checkBytes)
        checked.stderrBefore = stderr.bytes(before: cursor.stderr, count: SpoolCursor.checkBytes)
        return checked
    }

    /// Appends a message to `input` and wakes the supervisor (SIGURG), which copies it into
    /// the agent's stdin: the file outlives this server, so a message is never half-sent by a
    /// restart.
    public func sendInput(_ bytes: [UInt8]) -> Bool {
        guard acceptsInput else { return false }
        let fd = open(directory + "/input", O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { buffer -> Bool in
            do throws(SystemError) { try FileDescriptor.writeAll(fd, buffer) } catch { return false }
            return true
        }
        guard written else { return false }
        wakeSupervisor()
        return true
    }

    /// `input.closed`: the supervisor closes the agent's stdin once it copied all of `input`.
    public func closeInput() {
        guard inputOpen else { return }
        inputOpen = false
        let fd = open(directory + "/input.closed", O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd >= 0 { close(fd) }
        wakeSupervisor()
    }

    /// SIGURG to the supervisor (ignored by default, so never fatal to a process that has not
    /// started listening for it), only while it is the process recorded.
    private func wakeSupervisor() {
        guard supervisorExit == nil else { return }
        if child != nil || adopted?.isAlive == true { kill(identity.pid, SIGURG) }
    }

    deinit {
        if !finished { killNow() }
        closeWatch()
    }

    public func start() throws(SystemError) {
        if let child {
            // The supervisor's own words (it says why it could not start the agent) go with stderr.
            // (Not in the spools, so not counted in their cursor.)
            let relay: (UnsafeRawBufferPointer) -> Void = { [unowned self] bytes in
                for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") { self.say(String(line)) }
            }
            child.onStdout = relay
            child.onStderr = relay
            child.onExit = { [unowned self] status in
                self.supervisorExit = status
                self.readSpools()
            }
            try child.start()
        } else if let adopted {
            // Not our child: its end is seen through a pidfd (or the poll below), its status
            // read from exit.json.
            adoptedFD = ag_pidfd_open(adopted.pid)
            if adoptedFD >= 0 {
                adoptedRegistration = try loop.register(fd: adoptedFD, interest: .readable) { [unowned self] _ in self.adoptedEnded() }
            } else if !adopted.isAlive {
                adoptedEnded()
            }
        }
        // A wake reads stdout; stderr only when it was written to.
        stderrWatched = watcher.watch([directory + "/stdout", directory + "/stderr"]) { [unowned self] written in
            if written[1] { self.stderrWritten = true }
            self.wokenRead()
        }
        schedulePoll()
        readSpools()
    }

    /// A wake's read, at most one per batch window (`SpoolReadPacing`): a spool written
    /// again within the window of the last read waits for the rest of it, so a chatty agent's
    /// lines are taken in batches (one read, one append to the event log, one send to each
    /// viewer) rather than one wake per line. The first line after a quiet spell is read at once.
    private func wokenRead() {
        guard batchTimer == nil else { return }
        let now = MonotonicClock.milliseconds()
        let due = wakeReadAt + pacer.windowMilliseconds(now: now)
        guard now < due else { return readWoken(at: now) }
        batchTimer = loop.schedule(afterMilliseconds: due - now) { [weak self] in
            guard let self else { return }
            self.batchTimer = nil
            self.readWoken(at: MonotonicClock.milliseconds())
        }
    }

    private func readWoken(at now: Int) {
        wakeReadAt = now
        pacer.noteRead(&readMark, now: now)
        readSpools()
    }

    private func adoptedEnded() {
        guard supervisorExit == nil, !followedLostAgent else { return }
        if let adoptedRegistration { loop.deregister(adoptedRegistration) }
        adoptedRegistration = nil
        if adoptedFD >= 0 { close(adoptedFD) }
        adoptedFD = -1
        supervisorExit = .unknown  // used only if it left no exit.json
        readSpools()
    }

    private func schedulePoll() {
        pollTimer = loop.schedule(afterMilliseconds: Self.pollMilliseconds) { [weak self] in
            guard let self, !self.finished else { return }
            if let adopted = self.adopted, self.adoptedFD < 0, !adopted.isAlive { self.adoptedEnded() }
            self.stderrWritten = true
            self.readSpools()
            self.schedulePoll()
        }
    }

    /// Hands on what the agent appended, a turn's budget at a time; once the supervisor is
    /// gone and both spools are read to their end, the job's exit.
    private func readSpools() {
        guard !finished else { return }
        // Not before the loop runs: a server re-attaching many jobs listens first, then
        // catches up on what they wrote meanwhile.
        guard loop.isInLoopThread else { return readLater() }
        // Past the turn's budget the read waits for the next turn, behind the others: a hundred
        // busy jobs catching up would otherwise hold one turn for a second (each reads up to
        // `maxBytesPerTurn`), and with it every request, viewer and a SIGTERM.
        guard loop.turnElapsedNanoseconds < EventLoop.turnBudgetNanoseconds else { return readLater() }
        let moreOut = stdout.read(maxBytes: Self.maxBytesPerTurn, truncated: { spoolTruncated(.stdout, at: $0, endedLine: $1) }) { onStdout?($0) }
        // stderr is read when it was written to (or unwatched): most wakes are stdout's.
        var moreErr = false
        if stderrWritten || !stderrWatched || supervisorExit != nil {
            moreErr = stderr.read(maxBytes: Self.maxBytesPerTurn, truncated: { spoolTruncated(.stderr, at: $0, endedLine: $1) }) { onStderr?($0) }
            stderrWritten = moreErr
        }
        if moreOut || moreErr { return readLater() }
        if let supervisorExit { finish(supervisorExit) }
    }

    /// Reads on in a later turn, behind the other jobs that wait to read.
    private func readLater() {
        guard !readScheduled else { return }
        readScheduled = true
        let bound = LoopBound(self)
        loop.execute {
            bound.value.readScheduled = false
            bound.value.readSpools()
        }
    }

    private func finish(_ supervisorExit: ExitStatus) {
        let record = ExitRecord.read(directory + "/exit.json")
        // No record: the supervisor itself was killed. The agent works on, unsupervised: the
        // job follows it to its end.
        if record == nil, !followedLostAgent, let agent = AgentRecord.read(directory + "/agent.json"),
            let watch = LostAgentWatch(agent: agent, loop: loop, onEnd: { [unowned self] status in
                self.supervisorExit = status ?? .unknown
                if status == nil { self.say("the job's supervisor was lost; the agent's exit status is unknown") }
                self.readSpools()
            })
        {
            followedLostAgent = true
            lostAgent = watch
            self.supervisorExit = nil
            say("the job's supervisor ended unexpectedly; its agent works on and the job follows it")
            return
        }
        finished = true
        closeWatch()
        container?.release(on: loop)
        endedAt = SmallJSONFile.read(directory + "/exit.json")?["endedAt"]?.intValue
        let status: ExitStatus
        switch record {
        case .some(.exited(let code, let orphaned)):
            endedByOrphanTimeout = orphaned
            status = .exited(code)
        case .some(.signaled(let signal, let orphaned)):
            endedByOrphanTimeout = orphaned
            status = .signaled(signal)
        case .some(.spawnFailed(let error)):
            say("the agent could not be started: \(error)")
            status = .exited(127)
        case .none:
            // Followed to its end (its status from the kernel), or it could not be followed:
            // what is left of its group goes.
            if lostAgent == nil {
                AgentRecord.killGroup(in: directory)
                if !followedLostAgent {
                    say(child == nil && adopted == nil
                        ? "the job's supervisor and agent ended while no server ran; the agent's exit status is unknown"
                        : "the job's supervisor ended without recording how its agent ended; the agent's exit status is unknown")
                }
            }
            lostAgent = nil
            status = supervisorExit
        }
        let callback = onExit
        onExit = nil
        onStdout = nil
        onStderr = nil
        onNotice = nil
        callback?(status)
    }

    private enum Spool: String { case stdout, stderr }

    /// The job truncated a spool under the reader (`> /dev/stdout` reopens fd 1 with
    /// `O_TRUNC`): it is read again from its start. A line it was in the middle of ends here,
    /// and the engine's cursor moves back with the file so that it names the same bytes.
    private func spoolTruncated(_ spool: Spool, at offset: Int, endedLine: Bool) {
        let handler = spool == .stdout ? onStdout : onStderr
        let ending: [UInt8] = endedLine ? [] : [0x0A]
        ending.withUnsafeBytes { bytes in if !bytes.isEmpty { handler?(bytes) } }
        if var start = spoolStart {
            // Taken so far: `offset - start` bytes of the file, plus the ending handed on.
            switch spool {
            case .stdout: start.stdout -= offset + ending.count
            case .stderr: start.stderr -= offset + ending.count
            }
            spoolStart = start
        }
        say("the job truncated its \(spool.rawValue) (a `> /dev/\(spool.rawValue)` or a truncate of its fd \(spool == .stdout ? 1 : 2)?): it is read again from the start; what it held that was not yet read is lost")
    }

    /// A line of agentgate's own about the job (not in the spools, so not counted in them).
    private func say(_ text: String) {
        onNotice?(text)
    }

    private func closeWatch() {
        if let adoptedRegistration { loop.deregister(adoptedRegistration) }
        adoptedRegistration = nil
        if adoptedFD >= 0 { close(adoptedFD) }
        adoptedFD = -1
        watcher.stop()
        for timer in [pollTimer, killTimer, batchTimer].compactMap({ $0 }) { loop.cancel(timer) }
        pollTimer = nil
        killTimer = nil
        batchTimer = nil
    }

    public func recordStopRequest() {
        StopWithoutServer.noteRequest(in: directory)
    }

    /// SIGTERM to the supervisor, which passes it to the agent's group and sends SIGKILL after
    /// its grace period; if the supervisor does not end by then, SIGKILL to everything.
    public func terminate(graceMilliseconds: Int) {
        guard supervisorExit == nil, !finished else { return }
        if let lostAgent { return lostAgent.terminate(graceMilliseconds: graceMilliseconds) }
        if child != nil || adopted?.isAlive == true { kill(identity.pid, SIGTERM) }
        guard killTimer == nil else { return }
        killTimer = loop.schedule(afterMilliseconds: graceMilliseconds + 2_000) { [weak self] in
            guard let self, self.supervisorExit == nil else { return }
            self.killTimer = nil
            self.killNow()
        }
    }

    /// SIGKILL to the agent's group (checked against `agent.json`) and to the supervisor.
    public func killNow() {
        guard supervisorExit == nil else { return }
        container?.killAll()
        if let lostAgent { return lostAgent.killNow() }
        AgentRecord.killGroup(in: directory)
        if let child { child.killNow() } else if let adopted, adopted.isAlive { kill(adopted.pid, SIGKILL) }
    }

    private static func create(_ path: String, bytes: [UInt8]) throws(SystemError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.last("create \(path)") }
        defer { close(fd) }
        let failure = bytes.withUnsafeBytes { buffer -> SystemError? in
            do throws(SystemError) { try FileDescriptor.writeAll(fd, buffer) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }
}

/// `exit.json`, written by the supervisor when its agent ended (or could not start).
enum ExitRecord: Equatable {
    /// `orphaned`: stopped because no server was attached for longer than the orphan timeout.
    case exited(Int32, orphaned: Bool)
    case signaled(Int32, orphaned: Bool)
    case spawnFailed(String)

    static func read(_ path: String) -> ExitRecord? {
        guard let value = SmallJSONFile.read(path) else { return nil }
        let orphaned = value["orphanTimeout"] == .bool(true)
        switch value["kind"]?.stringValue {
        case "exited": return value["code"]?.intValue.map { .exited(Int32(clamping: $0), orphaned: orphaned) }
        case "signaled": return value["signal"]?.intValue.map { .signaled(Int32(clamping: $0), orphaned: orphaned) }
        case "spawn_failed": return .spawnFailed(value["error"]?.stringValue ?? "errno \(value["errno"]?.intValue ?? 0)")
        default: return nil
        }
    }
}

/// `agent.json`, written by the supervisor once its agent runs.
struct AgentRecord: Equatable {
    var pid: Int32
    var pgid: Int32
    var startTime: UInt64
    var bootId: String
    /// The supervisor's pid (checked as the agent's parent before it is signalled).
    var supervisor: Int32?
    /// The job the record's directory belongs to (`jobs/<id>/agent`): its processes carry
    /// `AGENTGATE_JOB_ID=<id>`.
    var jobID: String

    static func read(_ path: String) -> AgentRecord? {
        guard let value = SmallJSONFile.read(path), let pid = value["pid"]?.intValue, let pgid = value["pgid"]?.intValue,
            let startTime = value["startTime"]?.intValue, pid > 1, pgid > 1
        else { return nil }
        let components = path.split(separator: "/")
        return AgentRecord(pid: Int32(clamping: pid), pgid: Int32(clamping: pgid), startTime: UInt64(max(0, startTime)),
                           bootId: value["bootId"]?.stringValue ?? "",
                           supervisor: value["supervisor"]?.intValue.flatMap { $0 > 1 ? Int32(clamping: $0) : nil },
                           jobID: components.count >= 3 ? String(components[components.count - 3]) : "")
    }

    /// `pid` carries this job's marker in its environment. The record is a file an agent
    /// could rewrite: without this it could name any other process of the same user, with its
    /// true start time, for agentgate to signal. (A zombie's environment is empty; its pid is
    /// still its own, so the start time suffices.)
    func carriesJobMarker(_ pid: Int32) -> Bool {
        guard let environment = ProcessTable.readProcFile("/proc/\(pid)/environ", limit: 4 << 20) else { return false }
        return environment.isEmpty || ProcessTable.environment(environment, contains: "AGENTGATE_JOB_ID=" + jobID)
    }

    /// The supervisor the record names, when it is the agent's parent and carries this job's
    /// marker (the record is a file an agent could rewrite). Call once `identityHolds`.
    func supervisorIfParent(_ entry: ProcessTable.Entry? = nil) -> Int32? {
        guard let supervisor, (entry ?? ProcessTable.entry(of: pid))?.parent == supervisor, carriesJobMarker(supervisor) else { return nil }
        return supervisor
    }

    /// SIGKILL to the group recorded in `directory`'s agent.json, when its leader passes the
    /// identity check.
    static func killGroup(in directory: String) {
        if let agent = read(directory + "/agent.json"), agent.identityHolds { kill(-agent.pgid, SIGKILL) }
    }

    /// The process with this pid is still the one recorded (same boot, same start time, this
    /// job's marker): a pid that fails this is never signalled.
    var identityHolds: Bool {
        guard bootId == ProcessIdentity.bootId(), ProcessIdentity.of(pid: pid).startTime == startTime else { return false }
        return carriesJobMarker(pid)
    }
}