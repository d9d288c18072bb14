#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Runs jobs on one event loop and records everything they do.
///
/// ```
///  launch ─▶ CommandBuilder ─▶ JobRunner process ─┬─ stdout ─▶ LineSplitter ─▶ StdoutInterpreter ─┐
///                                                 ├─ stderr ─▶ StderrCollector (≤200 ms batches) ─┤
///                                                 └─ exit ──▶ hooks ─▶ job:completed ────────────┤
///                                                                                                ▼
///                             emit: seq+1, encode once ─▶ observers (same bytes)  +  EventLog (one write per turn)
/// ```
///
/// Loop-confined: every method must be called on the loop's thread.
public final class JobManager {
    public struct Configuration: Sendable {
        public var policy = LaunchPolicy()
        /// Time between SIGTERM and SIGKILL. 5 s lets an agent save its session.
        public var killGraceMilliseconds = 5_000
        public var onComplete: ExternalHook.Configuration?
        /// Given to every job as AGENTGATE_URL.
        public var serverURL = "http://127.0.0.1:7777"
        /// The environment jobs inherit ("KEY=value").
        public var baseEnvironment: [String] = []
        /// stderr lines are emitted at most this often (200 ms).
        public var stderrCoalesceMilliseconds = 200
        /// A job's in-progress line (`job:partial`) goes out at most this often (50 ms).
        public var partialIntervalMilliseconds = 50
        public var maxOutputFileBytes = OutputFileIngest.defaultMaxBytes
        /// A cgroup v2 group per job where the machine allows it; false forces the subreaper
        /// fallback (`serve --no-cgroup`, AGENTGATE_NO_CGROUP=1).
        public var useCgroups = true
        /// Bytes of events one job may produce (1 GiB, its stored log): past it the job is
        /// stopped and fails with `output_limit`, and what it writes after is not kept. A
        /// runaway agent cannot fill the disk.
        public var maxJobOutputBytes = 1 << 30
        /// Events of one job kept in memory while the disk refuses them (16 MiB), written as
        /// soon as it takes them again; past it the oldest are dropped (replay says `gap`).
        public var maxUnstoredBytes = 16 << 20
        /// Free space in the data dir below which launches are refused (507) (128 MiB), and
        /// below which the operator is warned (1 GiB).
        public var minFreeBytes: Int64 = 128 << 20
        public var warnFreeBytes: Int64 = 1 << 30
        /// Where jobs' worktrees are made (nil: `<data>/worktrees`).
        public var worktreesDirectory: String?
        /// Operator defaults and maxima for jobs' budgets (`serve --default-timeout` …).
        public var budgets = BudgetPolicy()
        /// The operator's launch profiles by name (`serve --profiles FILE`, reloaded on SIGHUP).
        public var profiles: [String: LaunchProfile] = [:]
        /// Resolved directories where a job whose cwd is in a git checkout runs in a worktree
        /// of its own unless it asks for `isolation: "none"` (`serve --isolate-in`).
        public var isolateIn: [String] = []
        /// Bytes of a job's unified diff that are kept (4 MiB); the per-file summary covers
        /// the whole change.
        public var maxDiffBytes = 4 << 20
        /// Caps on running jobs and the queue's length (`serve --max-running` …); none by default.
        public var admission = AdmissionQueue.Limits()
        /// The largest `priority` a launch may ask for, either way (`serve --max-priority`).
        public var maxPriority = 10

        public init() {}
    }

    /// Why a job is killed: said in its log and its result.
    public enum KillReason: Sendable, Equatable {
        /// A client asked (API, WebSocket, `agentgate kill`).
        case request
        /// The server is stopping (SIGINT/SIGTERM to `serve`).
        case serverStopping
        /// Ctrl-C at the `exec` that runs it.
        case interrupted
        /// Its events passed `maxJobOutputBytes`.
        case outputLimit(Int)
        /// Its events could not be stored (the disk is full, or refuses writes).
        case storage(String)
        /// Its budgets (`JobBudget`): seconds since it started, turns, dollars.
        case timeout(Int)
        case maxTurns(Int)
        case budget(Double)
        /// No server was attached for longer than `--orphan-timeout`: its supervisor stopped it.
        case orphanTimeout

        var text: String {
            switch self {
            case .request: "killed on request"
            case .serverStopping: "killed because the server stopped"
            case .interrupted: "killed by Ctrl-C"
            case .outputLimit(let bytes): "stopped: its output passed the limit of \(ByteCount.text(bytes))"
            case .storage(let message): "stopped: its events cannot be stored (\(message))"
            case .timeout(let seconds): "stopped: it ran past its timeout of \(seconds) s"
            case .maxTurns(let turns): "stopped: it went past its limit of \(turns) turn\(turns == 1 ? "" : "s")"
            case .budget(let dollars): "stopped: its reported cost reached its budget of $\(LaunchRequest.dollars(dollars))"
            case .orphanTimeout: "stopped: no server was attached for longer than --orphan-timeout"
            }
        }

        /// What the log says as the signal goes out.
        var why: String {
            switch self {
            case .request: "kill requested"
            case .serverStopping: "the server is stopping"
            case .interrupted: "interrupted"
            case .outputLimit(let bytes): "output limit of \(ByteCount.text(bytes)) reached"
            case .storage(let message): "events cannot be stored (\(message))"
            case .timeout(let seconds): "timeout of \(seconds) s reached"
            case .maxTurns(let turns): "limit of \(turns) turn\(turns == 1 ? "" : "s") passed"
            case .budget(let dollars): "budget of $\(LaunchRequest.dollars(dollars)) reached"
            case .orphanTimeout: "no server was attached for longer than --orphan-timeout"
            }
        }

        /// `result.endReason`; and a job stopped by a limit or a fault failed, it was not
        /// killed by anyone.
        var endReason: String {
            switch self {
            case .request, .serverStopping, .interrupted: "killed"
            case .outputLimit: "output_limit"
            case .storage: "storage"
            case .timeout: "timeout"
            case .maxTurns: "max_turns"
            case .budget: "budget"
            case .orphanTimeout: "orphan_timeout"
            }
        }

        var failsTheJob: Bool { endReason != "killed" }
    }

    public enum KillError: Error, Equatable, Sendable {
        case notFound(String)
        case alreadyFinished(String, JobStatus)
    }

    public enum DeleteError: Error, Equatable, Sendable {
        case notFound(String)
        /// Only a finished job can be deleted (kill it first).
        case stillRunning(String, JobStatus)
        /// The store refused (the message names the path).
        case storage(String)
        /// Its worktree holds a change nobody applied or discarded (its branch named).
        case unreviewedWork(String, String)
    }

    /// How long finished jobs are kept (`serve --retain-days`, `--retain-jobs`); nil: for ever.
    public struct Retention: Sendable, Equatable {
        public var maxAgeMilliseconds: Int?
        public var maxFinishedJobs: Int?

        public init(maxAgeMilliseconds: Int? = nil, maxFinishedJobs: Int? = nil) {
            self.maxAgeMilliseconds = maxAgeMilliseconds
            self.maxFinishedJobs = maxFinishedJobs
        }

        public var keepsEverything: Bool { maxAgeMilliseconds == nil && maxFinishedJobs == nil }
    }

    public typealias Observer = (JobEvent, [UInt8]) -> Void
    /// A job was deleted (its id): it has no more events, and viewers let it go.
    public typealias DeletionObserver = (String) -> Void
    /// A job's in-progress line changed: its id, the line (nil: none now) and the encoded
    /// `job:partial` message.
    public typealias PartialObserver = (String, LogLine?, [UInt8]) -> Void

    public let loop: EventLoop
    public let store: JobStore
    public let detector: AgentDetector
    public var configuration: Configuration

    var jobsByID: [String: Job] = [:]
    var order: [String] = []
    var running: [String: RunningJob] = [:]
    /// Jobs waiting for their worktree, with the command line they will run.
    var preparing: [String: PreparingJob] = [:]
    /// Jobs admission control holds back, with the command line they will run.
    var queued: [String: QueuedJob] = [:]
    /// Caps, keys and the queue's order (made from `configuration.admission` on first use).
    public internal(set) lazy var admission = AdmissionQueue(limits: configuration.admission)
    var admissionScheduled = false
    /// When the pass that announces owed queue places runs (monotonic ms).
    var queueAnnouncementDue: Int?
    /// How long admitted jobs waited, for `/metrics`.
    public internal(set) var queueWaits = QueueWaits()
    /// Worktree owners with an apply or discard under way.
    var reviewing: Set<String> = []
    /// Git work (worktrees, diffs, apply) runs here, off the loop.
    lazy var worktreeQueue = WorktreeQueue(loop: loop)
    /// Nil when git is not installed.
    lazy var worktreeOperations: WorktreeOperations? = {
        let paths = [detector.configuration.path, getenv("PATH").map { String(cString: $0) }, "/usr/local/bin:/usr/bin:/bin"]
        guard let git = paths.lazy.compactMap({ ExecutableSearch.find("git", path: $0) }).first else { return nil }
        return WorktreeOperations(git: GitCommand(executable: git, environment: configuration.baseEnvironment))
    }()
    private var observers: [Int: Observer] = [:]
    private var partialObservers: [Int: PartialObserver] = [:]
    private var deletionObservers: [Int: DeletionObserver] = [:]
    private var nextObserverID = 0
    private var dirtyLogs: Set<String> = []
    private var flushScheduled = false
    private var pendingLogBytes: [String: [UInt8]] = [:]
    /// Jobs whose pending bytes end with their spool cursor (`SpoolCursor`), until written.
    private var cursorAppended: Set<String> = []
    /// Supervised jobs with events since the last write, whose cursors that write takes.
    private var cursorsDue: [(id: String, runner: RunningJob)] = []
    /// Jobs whose record could not be saved, and the timer that tries the writes again.
    private var unsavedJobs: Set<String> = []
    private var storageRetry: EventLoop.TimerID?
    /// The data dir's free space and write failures, for `/metrics` and launch checks.
    public private(set) var storage = StorageStatus()
    /// Called with a warning about storage for the operator's log (low space, a failed write).
    public var onStorageWarning: ((String) -> Void)?
    /// The seq of each job's last event written to its event file by this process.
    private var storedSeqs: [String: Int] = [:]
    /// Chosen on first use, so `configuration.useCgroups` may be set after init.
    public private(set) lazy var containment = JobContainment(useCgroups: configuration.useCgroups)
    /// How agents are started and watched: children of this server today.
    public private(set) lazy var jobRunner: any JobRunner = LocalRunner(loop: loop, containment: containment)

    /// Takes up, at `recover`, the jobs `jobRunner` cannot (a server that runs its own jobs as
    /// its children still re-attaches those a server before it left under their supervisors).
    public var adoptionRunner: (any JobRunner)?

    /// - Parameter runner: how agents are started (default: `LocalRunner`, children of this server).
    public init(loop: EventLoop, store: JobStore, detector: AgentDetector, configuration: Configuration, runner: (any JobRunner)? = nil) {
        self.loop = loop
        self.store = store
        self.detector = detector
        self.configuration = configuration
        if let runner { jobRunner = runner }
    }

    // MARK: queries

    /// The job as kept in memory: whole while it runs, compacted once it finished (see
    /// `Job.compacted()`; `details(of:)` has all of it).
    public func job(_ id: String) -> Job? { jobsByID[id] }

    /// The whole job: from memory while it runs, from the store once it finished.
    public func details(of id: String) -> Job? {
        guard let job = jobsByID[id] else { return nil }
        guard job.isCompact, !unsavedJobs.contains(id), var stored = store.loadJob(id) else { return job }
        stored.lastSeq = job.lastSeq
        return stored
    }

    /// All jobs, oldest first.
    public var jobs: [Job] { order.compactMap { jobsByID[$0] } }

    /// Jobs not finished: running, stopping, or preparing their worktree.
    public var runningCount: Int { running.count + preparing.count }

    /// Jobs waiting in the queue.
    public var queuedCount: Int { queued.count }

    /// All jobs, newest first, without copying the list.
    public var jobsNewestFirst: some Sequence<Job> { order.reversed().lazy.compactMap { self.jobsByID[$0] } }

    /// What a `"*"` snapshot holds: every unfinished job and the newest `finished` finished
    /// ones, oldest first, and how many jobs there are in all. A dashboard gets the rest a
    /// page at a time, so a snapshot stays small however many jobs the store holds.
    /// `project`: that project's jobs only (`total` counts them).
    public func snapshotJobs(finished: Int = JobQuery.defaultLimit, project: String? = nil) -> (jobs: [Job], total: Int) {
        var kept: [Job] = []
        var finishedKept = 0
        var total = 0
        for job in jobsNewestFirst {
            if let project, job.project != project { continue }
            total += 1
            if !job.status.isFinished {
                kept.append(job)
            } else if finishedKept < finished {
                kept.append(job)
                finishedKept += 1
            }
        }
        return (kept.reversed(), project == nil ? order.count : total)
    }

    /// Grows by one with every event of any job: the sum of all jobs' last seqs. It changes
    /// whenever any job does (every change is an event), survives restarts with the store,
    /// and numbers the events of all jobs in one sequence (the all-jobs stream's cursor).
    public internal(set) var version = 0

    /// Like `events(for:since:limit:)`, with each event's stored bytes.
    public func encodedEvents(for id: String, since: Int = 0, limit: Int = .max) -> [(event: JobEvent, line: [UInt8])] {
        flushLogs()
        return store.encodedEvents(for: id, since: since, limit: limit)
    }

    /// The seq of a job's last event in its file: the last one this process wrote, or for a
    /// job it never wrote to (finished before a restart), the job's last. A file that ends
    /// below it lost events.
    public func storedLastSeq(of id: String) -> Int { storedSeqs[id] ?? jobsByID[id]?.lastSeq ?? 0 }

    /// Stored events of a job with seq > `since` (pending writes are flushed first).
    public func events(for id: String, since: Int = 0, limit: Int = .max) -> [JobEvent] {
        flushLogs()
        return store.events(for: id, since: since, limit: limit)
    }

    // MARK: observers

    @discardableResult
    public func addObserver(_ observer: @escaping Observer) -> Int {
        nextObserverID += 1
        observers[nextObserverID] = observer
        return nextObserverID
    }

    public func removeObserver(_ id: Int) {
        observers[id] = nil
        partialObservers[id] = nil
        deletionObservers[id] = nil
    }

    @discardableResult
    public func addDeletionObserver(_ observer: @escaping DeletionObserver) -> Int {
        nextObserverID += 1
        deletionObservers[nextObserverID] = observer
        return nextObserverID
    }

    /// Live-only updates of a job's in-progress line (see `JobEvent.encodedPartial`): not
    /// stored, not numbered; the next stored event of the job replaces the line.
    @discardableResult
    public func addPartialObserver(_ observer: @escaping PartialObserver) -> Int {
        nextObserverID += 1
        partialObservers[nextObserverID] = observer
        return nextObserverID
    }

    /// The `job:partial` message of a running job's in-progress line, for a viewer that
    /// becomes current while one is shown; nil when there is none.
    public func encodedPartial(of id: String) -> [UInt8]? {
        guard let runner = running[id], let line = runner.shownPartial, let job = jobsByID[id] else { return nil }
        return JobEvent.encodedPartial(jobId: id, seq: job.lastSeq, line: line)
    }

    // MARK: restart

    /// Loads stored jobs. Jobs that were running when the server stopped become
    /// `interrupted` (with a final `job:completed` event), and a still-live process group
    /// whose leader is provably the same process is terminated: no agent keeps running
    /// unobserved. Returns the jobs that were interrupted.
    @discardableResult
    public func recover() throws(JobStore.Error) -> [Job] {
        var interrupted: [Job] = []
        let stored = try store.loadJobs()
        // Jobs whose agent works on under its own supervisor are taken up again: their groups
        // are not orphans.
        var adoptions: [String: any AgentProcess] = [:]
        var stopRequested = Set<String>()
        var otherBoot = Set<String>()
        // Unfinished by their records, finished by their event files (the final record missed
        // the disk); read once.
        var ended: [String: Job] = [:]
        for job in stored where !job.status.isFinished {
            if let completed = store.completedEvent(for: job.id) {
                ended[job.id] = completed
                continue
            }
            // Never started: it waits again (`requeue`).
            if job.status == .queued { continue }
            let log = store.events.eventsFile(job: job.id)
            let found = log.flatMap { SpoolCursor.lastWithEnd(inLog: $0) }
            var adoption = jobRunner.adopt(job: job, cursor: found?.cursor)
            if case .orphaned = adoption, let adoptionRunner, adoptionRunner !== jobRunner {
                adoption = adoptionRunner.adopt(job: job, cursor: found?.cursor)
            }
            switch adoption {
            case .adopted(let process, let stop):
                // Events after the last cursor are a batch the server died while writing:
                // they are made again from the spools, so they go (no event twice).
                if let log, let found { Self.cut(log, after: found.end) }
                adoptions[job.id] = process
                if stop { stopRequested.insert(job.id) }
            case .otherBoot: otherBoot.insert(job.id)
            case .orphaned: break
            }
        }
        terminateOrphansLater(
            stored.filter { !$0.status.isFinished && adoptions[$0.id] == nil && !otherBoot.contains($0.id) }.compactMap { job in
                (job.pgid ?? job.pid).map { ProcessIdentity(pid: $0, startTime: job.processStartTime) }
            }.filter(\.isAlive))
        // Sets up containment now, which also kills what escaped those groups (cgroup path).
        _ = containment
        for var job in stored {
            // Only a job taken up again can be sent messages (`takeUp` says whether), or a
            // finished one whose session a follow-up resumes.
            job.acceptsMessages = false
            if let process = adoptions[job.id] {
                takeUp(job, process)
                // It keeps its slot, whatever the caps are now.
                admission.hold(ticket(for: job))
                // Killed while no server ran: it ends `killed`, as if asked here (with nothing
                // left to signal when it ended meanwhile: its supervisor stopped it).
                if stopRequested.contains(job.id) {
                    if process.endedBeforeAdoption, let runner = running[job.id] {
                        stoppedAlready(job.id, runner, .request, said: "killed while no server ran (agentgate kill)")
                    } else {
                        try? kill(job.id)
                    }
                }
                continue
            }
            if let completed = ended[job.id] {
                // It ended, but its final record was not saved (a full disk, a crash between
                // the two writes): its event file says how.
                job = completed
                jobsByID[job.id] = job
                persist(job.id)
            }
            if job.status == .queued {
                requeue(job)
                continue
            }
            if !job.status.isFinished {
                job.lastSeq = store.lastSeq(for: job.id)
                version += job.lastSeq
                var lifecycle = JobLifecycle(phase: .running)
                _ = lifecycle.handle(.serverRestarted)
                job.status = lifecycle.status
                job.endedAt = WallClock.milliseconds()
                if job.errorTail == nil { job.errorTail = "agentgate stopped while the job was running" }
                job.acceptsMessages = mayContinue(job)
                jobsByID[job.id] = job
                order.append(job.id)
                emit(job.id, .completed(job))
                job = jobsByID[job.id]!
                // Saved when the disk takes it: a full disk must not keep the server from
                // starting and serving history.
                persist(job.id)
                interrupted.append(job)
            } else {
                version += job.lastSeq
                job.acceptsMessages = mayContinue(job)
                jobsByID[job.id] = job.compacted()
                order.append(job.id)
            }
        }
        flushLogs()
        for job in interrupted {
            store.events.close(job: job.id)
            if !unsavedJobs.contains(job.id) { jobsByID[job.id] = job.compacted() }
        }
        if !admission.waiting.isEmpty { scheduleAdmission() }
        return interrupted
    }

    private static func cut(_ log: String, after end: Int) {
        var info = stat()
        guard stat(log, &info) == 0, Int(info.st_size) > end else { return }
        truncate(log, off_t(end))
    }

    /// Jobs taken up again at the last `recover`, with how long they had no server and
    /// whether their agent had ended meanwhile (only its end is left to record).
    public private(set) var adopted: [(id: String, unattendedMilliseconds: Int, endedMeanwhile: Bool)] = []

    /// Takes up a job the last server left running (its runner's `adopt` gave its process):
    /// its events go on from the next seq, its output from the spool cursor in its event log.
    private func takeUp(_ stored: Job, _ process: any AgentProcess) {
        var job = stored
        job.lastSeq = store.lastSeq(for: job.id)
        version += job.lastSeq
        job.status = .running
        // Its supervisor, when the last server stopped before recording it (and its start,
        // which came within moments of its launch).
        if job.startedAt == nil { job.startedAt = job.admittedAt ?? job.createdAt }
        if job.pid == nil, process.identity.pid > 0 {
            job.pid = process.identity.pid
            job.pgid = process.identity.pid
            job.processStartTime = process.identity.startTime
        }
        // Re-attached to a live agent (one that ended meanwhile only has its end recorded).
        if !process.endedBeforeAdoption {
            job.reattachCount += 1
            job.reattachedAt = WallClock.milliseconds()
        }
        jobsByID[job.id] = job
        order.append(job.id)
        storedSeqs[job.id] = job.lastSeq
        let outputFile = store.jobDirectory(job.id) + "/output.txt"
        let spec = LaunchSpec(
            provider: job.provider, executable: job.command.first ?? "", arguments: job.command, environment: [:],
            workingDirectory: job.cwd, stdin: "", outputFormat: AgentProvider.named(job.provider)?.outputFormat ?? .auto,
            outputFile: job.command.contains(outputFile) ? outputFile : nil,
            takesMessages: AgentProvider.named(job.provider)?.encodeMessage != nil && process.acceptsInput)
        jobsByID[job.id]?.acceptsMessages = spec.takesMessages
        let runner = RunningJob(spec: spec, process: process)
        runner.follows(answered: job.answered)
        runner.lifecycle = JobLifecycle(phase: .running)
        runner.interpreter.carry(turns: job.turns, costUSD: job.costUsd)
        (runner.reportedTurns, runner.reportedCost) = (job.turns, job.costUsd)
        running[job.id] = runner
        let id = job.id
        reopenQuestions(id, runner)
        watch(id, runner)
        armBudget(id, runner)
        persist(id)
        let lastEvent = store.events.eventsFile(job: id).flatMap { path -> Int? in
            var info = stat()
            return stat(path, &info) == 0 ? Int(info.st_mtim.tv_sec) * 1_000 + Int(info.st_mtim.tv_nsec) / 1_000_000 : nil
        }
        adopted.append((id, max(0, WallClock.milliseconds() - (lastEvent ?? WallClock.milliseconds())), process.endedBeforeAdoption))
    }

    /// Connects a job's process to the engine and lets it run.
    private func watch(_ id: String, _ runner: RunningJob) {
        let process = runner.process
        process.onStdout = { [unowned self] bytes in self.stdout(id, bytes) }
        process.onStderr = { [unowned self] bytes in self.stderr(id, bytes) }
        process.onNotice = { [unowned self] text in self.emit(id, .log(LogLine(.system, .info, text))) }
        process.onExit = { [unowned self] status in self.processExited(id, status) }
        do {
            try process.start()
        } catch {
            process.killNow()
            runner.startError = error.description
        }
    }

    /// Stops the process groups of `store`'s unfinished jobs (a process that owned that store
    /// died without stopping them) and returns how many there were. For stores nobody will
    /// open again, such as a killed `exec`'s private directory.
    @discardableResult
    public static func stopLeftovers(in store: JobStore, graceMilliseconds: Int) -> Int {
        let stored = (try? store.loadJobs()) ?? []
        let groups = stored.filter { !$0.status.isFinished }.compactMap { job in
            (job.pgid ?? job.pid).map { ProcessIdentity(pid: $0, startTime: job.processStartTime) }
        }.filter(\.isAlive)
        terminateOrphans(groups, graceMilliseconds: graceMilliseconds)
        return groups.count
    }

    /// Groups left over from a previous server: SIGTERM to all of them at once, one shared
    /// grace period, then SIGKILL to the survivors. Start-up takes one grace period however
    /// many jobs were running, not one per job.
    /// SIGTERM now to orphaned groups, SIGKILL from the loop after the grace to those still
    /// there: start-up (and `listen`) never waits on a job.
    private func terminateOrphansLater(_ groups: [ProcessIdentity]) {
        guard !groups.isEmpty else { return }
        for group in groups { Glibc.kill(-group.pid, SIGTERM) }
        _ = loop.schedule(afterMilliseconds: configuration.killGraceMilliseconds) {
            for group in groups where group.groupIsAlive { Glibc.kill(-group.pid, SIGKILL) }
        }
    }

    static func terminateOrphans(_ groups: [ProcessIdentity], graceMilliseconds: Int) {
        guard !groups.isEmpty else { return }
        for group in groups { Glibc.kill(-group.pid, SIGTERM) }
        let deadline = MonotonicClock.nanoseconds() + UInt64(max(0, graceMilliseconds)) * 1_000_000
        while groups.contains(where: \.groupIsAlive), MonotonicClock.nanoseconds() < deadline {
            usleep(20_000)
        }
        for group in groups where group.groupIsAlive { Glibc.kill(-group.pid, SIGKILL) }
    }

    // MARK: launch

    /// Validates the request, spawns the agent and returns the job (running, or failed when
    /// the spawn itself failed). Throws only for requests that must be corrected.
    public func launch(_ asked: LaunchRequest) throws(LaunchError) -> Job {
        let (request, policy) = try resolve(asked)
        let id = JobID.make()
        let outputFile = store.jobDirectory(id) + "/output.txt"
        let builder = CommandBuilder(policy: policy, capabilities: detector.current(), searchPath: detector.configuration.path)
        var spec = try builder.build(request, outputFile: outputFile)
        let workspace = request.worktreeOf.flatMap { jobsByID[$0]?.workspace } ?? workspace(of: spec.workingDirectory)
        let worktree = try worktreePlan(for: request, id: id, cwd: spec.workingDirectory)
        if let worktree { spec = try builder.build(request, outputFile: outputFile, runningIn: worktree.workingDirectory) }
        try checkPriority(request)

        try checkRoomToLaunch()

        // Decided before anything is recorded: a refused launch leaves nothing behind.
        let ticket = AdmissionQueue.Ticket(
            id: id, provider: spec.provider, workspace: workspace, project: request.project, key: request.key, priority: request.priority ?? 0)
        let decision = admission.admit(ticket, onConflict: request.onConflict ?? .queue)
        if let refusal = refusal(decision, key: request.key) { throw refusal }

        var job = Job(id: id, provider: spec.provider, prompt: request.prompt, createdAt: WallClock.milliseconds())
        job.label = request.label
        job.cwd = spec.workingDirectory ?? request.cwd
        job.model = request.model
        job.command = spec.arguments
        job.worktree = worktree
        job.project = request.project
        job.key = request.key
        job.priority = request.priority ?? 0
        job.workspace = workspace
        job.budget = JobBudget(request)
        job.profile = request.profile
        if case .wait = decision { job.status = .queued }

        // Recorded before anything runs: a job whose record or directory cannot be written
        // is refused, never started unrecorded (it would vanish at the next start).
        do {
            try store.events.create(job: id)
        } catch {
            releaseAdmission(id)
            throw LaunchError(.insufficientStorage, field: nil, "cannot create the job's directory in \(store.dataDirectory): \(error.message)")
        }
        do {
            // A queued job keeps its request: the next server launches it if this one stops first.
            if case .wait = decision { try saveRequest(asked, of: id) } else { try keepRequestForFollowUps(asked, of: id) }
            try store.save(job)
        } catch {
            releaseAdmission(id)
            store.events.close(job: id)
            store.deleteRequest(id)
            rmdir(store.jobDirectory(id))
            throw LaunchError(.insufficientStorage, field: nil, "cannot record the job in \(store.dataDirectory): \(error)")
        }
        jobsByID[id] = job
        order.append(id)

        if case .wait(let position) = decision {
            enqueue(id, spec, position: position)
        } else {
            begin(id, spec, lifecycle: JobLifecycle())
        }
        return jobsByID[id]!
    }

    /// Starts the agent of job `id` (recorded, its worktree ready if it has one).
    func spawn(_ id: String, _ spec: LaunchSpec, lifecycle: JobLifecycle) {
        let environment = EnvironmentPolicy.agentEnvironment(
            base: configuration.baseEnvironment, request: spec.environment, jobID: id, serverURL: configuration.serverURL)

        let process: any AgentProcess
        let budget = jobsByID[id]?.budget
        let started = WallClock.milliseconds()
        do {
            // A supervisor stops the agent at its deadline even while no server is attached.
            process = try jobRunner.process(
                forJob: id,
                spec: .init(
                    executable: spec.executable, arguments: spec.arguments, environment: environment,
                    workingDirectory: spec.workingDirectory, stdin: Array(spec.stdin.utf8),
                    deadlineMilliseconds: budget?.deadline(from: started), keepsStdinOpen: spec.takesMessages))
        } catch {
            fail(id, reason: "\(spec.executable): \(error.message)", lifecycle: lifecycle)
            return
        }

        let runner = RunningJob(spec: spec, process: process)
        runner.lifecycle = lifecycle
        // A follow-up's run follows the runs before it.
        runner.follows(answered: jobsByID[id]?.answered ?? 0)
        running[id] = runner
        update(id) {
            $0.startedAt = started
            $0.pid = process.identity.pid
            $0.pgid = process.identity.pid
            $0.processStartTime = process.identity.startTime
            $0.acceptsMessages = process.acceptsInput
        }
        carryOut(runner.lifecycle.handle(.spawned), id, runner)
        armBudget(id, runner)

        watch(id, runner)
    }

    /// Refuses a launch while the data dir is short of space or refuses writes: the job's
    /// events would be lost.
    func checkRoomToLaunch() throws(LaunchError) {
        if storage.failing {
            throw LaunchError(
                .insufficientStorage, field: nil, "the data dir \(store.dataDirectory) refuses writes (a full disk?); jobs cannot be recorded")
        }
        let free = StorageStatus.freeBytes(of: store.dataDirectory)
        storage.freeBytes = free
        if let free, free < configuration.minFreeBytes {
            throw LaunchError(
                .insufficientStorage, field: nil,
                "the data dir \(store.dataDirectory) has \(ByteCount.text(Int(free))) free; launches need \(ByteCount.text(Int(configuration.minFreeBytes)))")
        }
    }

    /// A job that never ran: started (as failed, unless it was announced while preparing)
    /// then completed, with the reason. `event`: what stopped it (`spawnFailed`, or
    /// `prepareFailed` for a worktree that could not be made).
    func fail(_ id: String, reason: String, lifecycle start: JobLifecycle = JobLifecycle(), event: JobLifecycle.Event = .spawnFailed) {
        var lifecycle = start
        let actions = lifecycle.handle(event)
        update(id) {
            $0.status = lifecycle.status
            $0.errorTail = reason
        }
        if actions.contains(.announceStarted) { emit(id, .started(jobsByID[id]!)) }
        endWithoutRunning(id, saying: LogLine(.system, .error, reason))
    }

    /// The end of a job whose agent never ran (it could not start, was cancelled while queued,
    /// or stopped while its worktree was made), its record already saying how it ended: the
    /// last line says why, then `job:completed`; its record, log and slot are closed.
    func endWithoutRunning(_ id: String, saying line: LogLine) {
        emit(id, .log(line))
        update(id) { $0.endedAt = WallClock.milliseconds() }
        emit(id, .completed(jobsByID[id]!))
        persist(id)
        flushLogs()
        store.events.close(job: id)
        releaseAdmission(id)
    }

    /// Does what the job's lifecycle asked for, in order.
    func carryOut(_ actions: [JobLifecycle.Action], _ id: String, _ runner: RunningJob) {
        for action in actions {
            switch action {
            case .announceStarted:
                announce(id, status: runner.lifecycle.status, first: true)
            case .announceStatus:
                announce(id, status: runner.lifecycle.status, first: false)
            case .signalGroup:
                let reason = runner.killReason ?? .request
                if reason != .serverStopping, askToStop(id, runner) { break }
                signalGroup(id, runner)
            case .cancelHook:
                runner.hook?.cancel(reason: "job was killed while its completion hook ran")
                emit(id, .log(LogLine(.system, .info, "kill requested: the agent had exited; its completion hook is stopped")))
            case .finalize:
                finalize(id, runner)
            case .announceCompleted:
                complete(id, runner)
            case .prepare, .spawn:
                // Only before a runner exists (`carryOutPreparing`).
                break
            }
        }
    }

    /// SIGTERM to the job's group (SIGKILL after the grace period), and the log says why.
    func signalGroup(_ id: String, _ runner: RunningJob) {
        let reason = runner.killReason ?? .request
        // A kill that ends the job `killed` is written down first: the server may stop within
        // its grace (attacker trial: the next server then ended it failed, by SIGKILL).
        if !reason.failsTheJob { runner.process.recordStopRequest() }
        runner.process.terminate(graceMilliseconds: configuration.killGraceMilliseconds)
        let level: LogLine.Kind = reason.failsTheJob ? .error : .info
        emit(id, .log(LogLine(.system, level, "\(reason.why): SIGTERM sent to the agent's process group (job pid \(jobsByID[id]?.pid ?? 0))")))
    }

    /// Shows the job's new status to everyone (`job:started` the first time, then
    /// `job:status`) and saves it.
    func announce(_ id: String, status: JobStatus, first: Bool) {
        update(id) {
            $0.status = status
            // Stopping or ended: a message could not reach the agent any more.
            if status != .running { $0.acceptsMessages = false }
        }
        emit(id, first ? .started(jobsByID[id]!) : .status(jobsByID[id]!))
        persist(id)
    }

    // MARK: output

    private func stdout(_ id: String, _ bytes: UnsafeRawBufferPointer) {
        guard let runner = running[id], !runner.outputCapped else { return }
        runner.stdoutFed += bytes.count
        for line in runner.splitter.feed(bytes) where !runner.outputCapped {
            interpret(id, runner, line)
        }
        if runner.interpreter.partialLine != runner.shownPartial { schedulePartial(id, runner) }
    }

    /// The in-progress line goes out at most once per `partialIntervalMilliseconds` per job:
    /// each message carries the whole line, so a line typed one character per delta would
    /// otherwise cost every viewer the square of its length (attacker trial: 32 MB for one
    /// 8,000-character line). The last state always goes out, at the end of the interval.
    private func schedulePartial(_ id: String, _ runner: RunningJob) {
        guard runner.partialTimer == nil else { return }
        let wait = max(0, runner.partialSentAt + configuration.partialIntervalMilliseconds - MonotonicClock.milliseconds())
        runner.partialTimer = loop.schedule(afterMilliseconds: wait) { [weak self, weak runner] in
            guard let self, let runner, self.running[id] === runner else { return }
            runner.partialTimer = nil
            self.publishPartial(id, runner)
        }
    }

    /// Sends the in-progress line when it changed, or again when stored events went out after
    /// it (a viewer drops the line on any stored event of the job, stderr and status included).
    /// A line that ended in a stored line needs no message of its own.
    private func publishPartial(_ id: String, _ runner: RunningJob) {
        let line = runner.interpreter.partialLine
        let resend = runner.partialResend
        runner.partialResend = false
        if resend {
            runner.shownPartial = nil
        if let timer = runner.partialTimer { loop.cancel(timer) }
        runner.partialTimer = nil
            guard line != nil else { return }
        } else if line == runner.shownPartial {
            return
        }
        runner.shownPartial = line
        runner.partialSentAt = MonotonicClock.milliseconds()
        guard !partialObservers.isEmpty, let seq = jobsByID[id]?.lastSeq else { return }
        let bytes = JobEvent.encodedPartial(jobId: id, seq: seq, line: line)
        for observer in partialObservers.values { observer(id, line, bytes) }
    }

    private func interpret(_ id: String, _ runner: RunningJob, _ line: LineSplitter.Line) {
        let output = runner.interpreter.interpret(line)
        // Compared with the runner's copy: reading the job's would copy the whole Job per line.
        let sessionId = runner.interpreter.sessionId
        if sessionId != nil, sessionId != runner.recordedSessionId {
            runner.recordedSessionId = sessionId
            // As the agent said it, within reason: it goes with every job summary.
            let kept = sessionId.map { $0.utf8.count <= Self.maxSessionIdBytes ? $0 : String(decoding: $0.utf8.prefix(Self.maxSessionIdBytes), as: UTF8.self) }
            if jobsByID[id]?.sessionId != kept {
                update(id) {
                    $0.sessionId = kept
                    if $0.model == nil { $0.model = runner.interpreter.report.model }
                }
                persist(id)
            }
        }
        if let raw = output.rawEvent { emit(id, .agentEvent(raw), runner: runner) }
        var endsTurn = false
        for logLine in output.lines {
            emit(id, .log(logLine), runner: runner)
            if logLine.kind == .result { endsTurn = true }
        }
        if endsTurn { closeInputIfAnswered(id, runner) }
        if runner.asksPermissions, output.rawEvent != nil {
            if runner.spec.outputFormat == .acpJSONRPC { noticeQuestion(id, runner, line.text) }
            if runner.spec.outputFormat == .claudeStreamJSON, line.text.contains("\"can_use_tool\"") { claudeAsks(id, runner, line.text) }
        }
        if runner.watchesReports { checkSpending(id, runner) }
    }

    private func stderr(_ id: String, _ bytes: UnsafeRawBufferPointer) {
        guard let runner = running[id], !runner.outputCapped else { return }
        runner.stderr.feed(bytes)
        if runner.stderr.hasPending, runner.stderrTimer == nil {
            runner.stderrTimer = loop.schedule(afterMilliseconds: configuration.stderrCoalesceMilliseconds) { [weak self, weak runner] in
                guard let self, let runner else { return }
                runner.stderrTimer = nil
                for line in runner.stderr.takePending() { self.emit(id, .log(line)) }
            }
        }
    }

    // MARK: completion

    private func processExited(_ id: String, _ status: ExitStatus) {
        guard let runner = running[id] else { return }
        FailPoint.reach(.agentExited)
        runner.exitStatus = status
        update(id) { $0.acceptsMessages = false }
        timedOutBySupervisor(id, runner)
        orphanedBySupervisor(id, runner)
        if let timer = runner.deadlineTimer { loop.cancel(timer) }
        runner.deadlineTimer = nil
        if let timer = runner.interruptTimer { loop.cancel(timer) }
        runner.interruptTimer = nil
        if let timer = runner.stderrTimer { loop.cancel(timer) }
        runner.stderrTimer = nil
        if !runner.outputCapped {
            if let last = runner.splitter.finish() { interpret(id, runner, last) }
            // A job stopped mid-answer keeps what it had said: the unfinished line is stored.
            for line in runner.interpreter.finish() { emit(id, .log(line)) }
            for line in runner.stderr.finish() { emit(id, .log(line)) }
        }
        runner.shownPartial = nil
        if let startError = runner.startError { emit(id, .log(LogLine(.system, .error, startError))) }
        let succeeded = runner.startError == nil && status == .exited(0) && !runner.interpreter.report.isError
        carryOut(runner.lifecycle.handle(.exited(succeeded: succeeded)), id, runner)
    }

    /// The agent exited: its result, the output file its command line named, and the
    /// operator's hook, then `finalized`.
    private func finalize(_ id: String, _ runner: RunningJob) {
        guard runner.exitStatus != nil else { return }
        guard let worktree = jobsByID[id]?.worktree, worktree.state == .active else { return finalizeResults(id, runner) }
        recordChange(id, worktree) { [weak self] in self?.finalizeResults(id, runner) }
    }

    /// The agent's result, the output file its command line named, and the operator's hook
    /// (after the job's change was recorded, when it has a worktree).
    private func finalizeResults(_ id: String, _ runner: RunningJob) {
        guard let status = runner.exitStatus else { return }
        // Hook (a): the agent's own final result. A killed run failed, whatever it said.
        var report = runner.interpreter.report
        if let reason = runner.killReason {
            report.isError = true
            report.endReason = reason.endReason
            // What was sent, and how the agent ended: "killed on request (SIGTERM; exit 143)".
            let ending: String
            switch (status.signal, status.exitCode) {
            case (SIGKILL?, _): ending = "SIGKILL after the grace period"
            case (SIGTERM?, _): ending = "SIGTERM"
            case (let signal?, _): ending = "SIGTERM; ended by \(ExitStatus.signalName(signal))"
            case (nil, nil): ending = "SIGTERM; how it ended is not known"
            case (nil, let code?): ending = "SIGTERM; exit \(code)"
            }
            report.errors.insert("\(reason.text) (\(ending))", at: 0)
        }
        update(id) {
            $0.exitCode = status.exitCode
            $0.signal = status.signal
            $0.errorTail = runner.stderr.tailText
            // The change recorded from its worktree (saved with the job before this, so a job
            // finished by the next server after a restart keeps it too).
            let diff = $0.result?["diff"]
            $0.result = report.isEmpty ? nil : report.json
            if let diff { $0.result = ($0.result ?? .object([])).setting("diff", to: diff) }
            if let model = report.model, $0.model == nil { $0.model = model }
        }
        // Hook (b): the output file the command line named.
        if let path = runner.spec.outputFile {
            switch OutputFileIngest.ingest(path: path, maxBytes: configuration.maxOutputFileBytes) {
            case .missing: break
            case .value(let value): update(id) { $0.result = ($0.result ?? .object([])).setting("output", to: value) }
            case .failed(let message): update(id) { $0.hookError = message }
            }
        }
        // Hook (c): the operator's command, exactly once per job (HookOutbox): a job taken up
        // after a restart does not run it again.
        let jobDirectory = store.jobDirectory(id)
        if configuration.onComplete != nil {
            switch HookOutbox.read(jobDirectory: jobDirectory) {
            case .notRun:
                break
            case .done(let outcome):
                recordHookOutcome(id, outcome)
                return carryOut(runner.lifecycle.handle(.finalized), id, runner)
            case .started:
                update(id) { $0.hookError = "the server stopped while the completion hook ran; it is not run a second time" }
                return carryOut(runner.lifecycle.handle(.finalized), id, runner)
            }
            guard HookOutbox.markStarted(jobDirectory: jobDirectory) else {
                update(id) { $0.hookError = "the completion hook did not run: its record (hook.json) could not be written" }
                return carryOut(runner.lifecycle.handle(.finalized), id, runner)
            }
        }
        if let hookConfiguration = configuration.onComplete {
            let hook = ExternalHook(loop: loop)
            runner.hook = hook
            var environment = configuration.baseEnvironment
            environment.append("AGENTGATE_JOB_ID=\(id)")
            if let worktree = jobsByID[id]?.worktree {
                environment += ["AGENTGATE_WORKTREE=\(worktree.path)", "AGENTGATE_BRANCH=\(worktree.branch)"]
                if worktree.headCommit != nil { environment.append("AGENTGATE_DIFF=\(diffPath(id))") }
            }
            // The hook sees the status the job is about to end with.
            var preview = jobsByID[id]!
            preview.status = runner.lifecycle.endingStatus
            preview.endedAt = WallClock.milliseconds()
            hook.run(hookConfiguration, input: JSONWriter.serialize(preview.json), environment: environment) {
                [unowned self] result in
                let outcome: HookOutbox.Outcome
                switch result {
                case .success(let value): outcome = .value(value)
                case .failure(let failure): outcome = .failed(failure.message)
                }
                HookOutbox.markDone(outcome, jobDirectory: jobDirectory)
                FailPoint.reach(.hookRecorded)
                self.recordHookOutcome(id, outcome)
                self.carryOut(runner.lifecycle.handle(.finalized), id, runner)
            }
        } else {
            carryOut(runner.lifecycle.handle(.finalized), id, runner)
        }
    }

    private func recordHookOutcome(_ id: String, _ outcome: HookOutbox.Outcome) {
        switch outcome {
        case .value(let value): update(id) { $0.result = ($0.result ?? .object([])).setting("hook", to: value) }
        case .failed(let message): update(id) { $0.hookError = message }
        }
    }

    /// Emits `job:completed` exactly once.
    func complete(_ id: String, _ runner: RunningJob) {
        guard running.removeValue(forKey: id) === runner else { return }
        if let timer = runner.deadlineTimer { loop.cancel(timer) }
        let now = WallClock.milliseconds()
        update(id) {
            $0.status = runner.lifecycle.status
            // When the agent ended (it may have while no server was attached), within reason.
            let started = $0.startedAt ?? $0.createdAt
            $0.endedAt = runner.process.endedAt.map { min(max($0, started), now) } ?? now
            // A follow-up now resumes its agent's session, as the job's next run.
            $0.acceptsMessages = mayContinue($0)
        }
        emit(id, .completed(jobsByID[id]!))
        persist(id)
        flushLogs()
        store.events.close(job: id)
        releaseAdmission(id)
        // From here the store has the whole job; memory keeps what the job list shows.
        if !unsavedJobs.contains(id), let job = jobsByID[id] { jobsByID[id] = job.compacted() }
        // Released on a later turn: we may be inside one of its callbacks.
        loop.schedule(afterMilliseconds: 0) { _ = runner }
    }

    // MARK: kill

    /// SIGTERM to the job's group, SIGKILL after the grace period. Killing twice is harmless;
    /// killing a finished job is an error that says so. A job whose completion hook is
    /// running is marked killed and its hook stopped; it still completes exactly once.
    public func kill(_ id: String, reason: KillReason = .request) throws(KillError) {
        guard let job = jobsByID[id] else { throw .notFound(id) }
        if let waiting = queued[id] { return cancelQueued(id, waiting, reason: reason) }
        if var waiting = preparing[id] {
            let actions = waiting.lifecycle.handle(.killRequested(reason))
            preparing[id] = waiting
            if actions.contains(.announceStatus) {
                emit(id, .log(LogLine(.system, reason.failsTheJob ? .error : .info, "\(reason.why): the job stops once its worktree is made")))
            }
            return carryOutPreparing(actions, id)
        }
        guard let runner = running[id] else { throw .alreadyFinished(id, job.status) }
        carryOut(runner.lifecycle.handle(.killRequested(reason)), id, runner)
    }

    /// Kills every running job; returns how many were asked to stop.
    /// - Parameter allowed: which jobs may be killed (a WebSocket viewer's kill of `"*"`
    ///   leaves the jobs another connection controls).
    @discardableResult
    public func killAll(reason: KillReason = .request, allowed: (String) -> Bool = { _ in true }) -> Int {
        var count = 0
        for id in running.keys.sorted() where running[id]?.killReason == nil && allowed(id) {
            if (try? kill(id, reason: reason)) != nil { count += 1 }
        }
        for id in preparing.keys.sorted() where preparing[id]?.lifecycle.killReason == nil && allowed(id) {
            if (try? kill(id, reason: reason)) != nil { count += 1 }
        }
        // Latest first: a cancel moves up only those behind it, which are gone already.
        for ticket in admission.waiting.reversed() where queued[ticket.id] != nil && allowed(ticket.id) {
            if (try? kill(ticket.id, reason: reason)) != nil { count += 1 }
        }
        return count
    }

    // MARK: deletion and retention

    /// Deletes a finished job: its record, events and files. The jobs version does not go
    /// back (it numbers events that happened).
    public func delete(_ id: String) throws(DeleteError) {
        guard let job = jobsByID[id] else { throw .notFound(id) }
        guard job.status.isFinished, running[id] == nil else { throw .stillRunning(id, job.status) }
        if let worktree = job.worktree, worktree.holdsUnreviewedWork, !sharesWorktreeWithAnotherJob(id, worktree) {
            throw .unreviewedWork(id, worktree.branch)
        }
        flushLogs()
        do {
            try store.delete(id)
        } catch {
            throw .storage(error.description)
        }
        jobsByID[id] = nil
        if let index = order.lastIndex(of: id) { order.remove(at: index) }
        // A change every poller must see (`?since=<version>` answers 304 only while nothing changed).
        version += 1
        storedSeqs[id] = nil
        pendingLogBytes[id] = nil
        cursorAppended.remove(id)
        cursorsDue.removeAll { $0.id == id }
        unsavedJobs.remove(id)
        for observer in deletionObservers.values { observer(id) }
        if let worktree = job.worktree { removeWorktreeOfDeletedJob(worktree) }
    }

    /// Deletes the finished jobs `retention` no longer keeps: older than its age, or past its
    /// count (the newest are kept). Never a running job. At most `limit` at a time (each is a
    /// rename and a record deletion on the loop): a caller with more to prune calls again on
    /// a later turn. Returns the ids deleted.
    @discardableResult
    public func prune(_ retention: Retention, now: Int = WallClock.milliseconds(), limit: Int = .max) -> [String] {
        guard !retention.keepsEverything else { return [] }
        var finishedSeen = 0
        var doomed: [String] = []
        for job in jobsNewestFirst where job.status.isFinished && running[job.id] == nil {
            finishedSeen += 1
            // Work nobody applied or discarded is never deleted, whatever its age.
            if let worktree = job.worktree, worktree.holdsUnreviewedWork { continue }
            let tooMany = retention.maxFinishedJobs.map { finishedSeen > $0 } ?? false
            let tooOld = retention.maxAgeMilliseconds.map { now - (job.endedAt ?? job.createdAt) > $0 } ?? false
            if tooMany || tooOld { doomed.append(job.id) }
        }
        var deleted: [String] = []
        for id in doomed.reversed().prefix(limit) where (try? delete(id)) != nil { deleted.append(id) }
        return deleted
    }

    // MARK: events and persistence

    func update(_ id: String, _ change: (inout Job) -> Void) {
        guard var job = jobsByID[id] else { return }
        change(&job)
        jobsByID[id] = job
    }

    func emit(_ id: String, _ payload: JobEvent.Payload) {
        emit(id, payload, runner: running[id])
    }

    /// `runner`: the job's while it runs (the caller's, or nil), so a line costs no lookup.
    private func emit(_ id: String, _ payload: JobEvent.Payload, runner: RunningJob?) {
        // In place: copying the Job out and back would retain and release each of its fields.
        guard let index = jobsByID.index(forKey: id) else { return }
        jobsByID.values[index].lastSeq += 1
        version += 1
        let event = JobEvent(jobId: id, seq: jobsByID.values[index].lastSeq, time: WallClock.milliseconds(), payload: payload)
        let bytes = event.encoded()
        pendingLogBytes[id, default: []].appendLine(bytes)
        if !flushScheduled {
            flushScheduled = true
            loop.atEndOfTurn { [weak self] in self?.flushLogs() }
        }
        for observer in observers.values { observer(event, bytes) }
        guard let runner else { return }
        // Its spool cursor is taken when the events are written: it is the cursor as of this
        // event then too, since bytes read later in the turn either make events or stay
        // unfinished (not counted).
        if !runner.cursorQueued, runner.process.spoolStart != nil {
            runner.cursorQueued = true
            cursorsDue.append((id, runner))
        }
        // Viewers drop the in-progress line on any stored event of the job: send it again.
        if runner.shownPartial != nil || runner.partialTimer != nil {
            runner.partialResend = true
            schedulePartial(id, runner)
        }
        runner.outputBytes += bytes.count + 1
        if runner.outputBytes > configuration.maxJobOutputBytes, !runner.outputCapped {
            runner.outputCapped = true
            try? kill(id, reason: .outputLimit(configuration.maxJobOutputBytes))
        }
    }

    /// Writes each job's pending events with one write per job. A write the disk refuses
    /// is never counted as stored: the events stay in memory (up to `maxUnstoredBytes` a
    /// job) and are written when it takes them, the job is stopped with reason `storage`,
    /// and the writes are tried again every second.
    public func flushLogs() {
        flushScheduled = false
        // A supervised job's spool cursor goes in the same append as the events made from
        // the bytes before it, after them.
        for (id, runner) in cursorsDue {
            runner.cursorQueued = false
            guard let cursor = runner.spoolCursor else { continue }
            cursorAppended.insert(id)
            pendingLogBytes[id, default: []].append(contentsOf: cursor.line)
        }
        cursorsDue.removeAll(keepingCapacity: true)
        guard !pendingLogBytes.isEmpty else { return }
        let pending = pendingLogBytes
        pendingLogBytes.removeAll(keepingCapacity: true)
        var failures: [(String, SystemError)] = []
        for (id, bytes) in pending {
            let hasCursor = cursorAppended.remove(id) != nil
            if hasCursor, FailPoint.isArmed(.eventsTorn), let log = store.events.eventsFile(job: id) { FailPoint.tear(log, bytes) }
            do {
                storedSeqs[id] = try store.events.append(job: id, lines: bytes)
                if hasCursor { FailPoint.reach(.eventsAppended) }
                // A finished job writes no more; a queued one only a line per move of the
                // queue: neither keeps its two descriptors (a thousand may wait).
                if let job = jobsByID[id], job.status.isFinished || job.status == .queued, pendingLogBytes[id] == nil {
                    store.events.close(job: id)
                }
            } catch {
                keepUnstored(id, bytes)
                failures.append((id, error))
            }
        }
        for (id, error) in failures { storageFailed(id, error) }
    }

    /// Bytes of the session id an agent reports that are kept (a resumable one has at most 200).
    static let maxSessionIdBytes = 256

    /// Writes a cursor at the start of the spools into job `id`'s log now: a new run's spools
    /// start empty, and a server that stops before the run's first events must not read them
    /// from the offsets the last run reached.
    func storeSpoolsRestarted(_ id: String) {
        pendingLogBytes[id, default: []].append(contentsOf: SpoolCursor(stdout: 0, stderr: 0).line)
        flushLogs()
    }

    /// Puts refused events back in front of any newer ones, dropping the oldest whole lines
    /// past the bound.
    private func keepUnstored(_ id: String, _ bytes: [UInt8]) {
        var kept = bytes + (pendingLogBytes[id] ?? [])
        if kept.count > configuration.maxUnstoredBytes {
            let excess = kept.count - configuration.maxUnstoredBytes
            let cut = kept[excess...].firstIndex(of: 0x0A).map { $0 + 1 } ?? kept.count
            storage.droppedEventBytes += cut
            kept.removeFirst(cut)
        }
        pendingLogBytes[id] = kept.isEmpty ? nil : kept
    }

    private func storageFailed(_ id: String, _ error: SystemError) {
        storage.writeFailures += 1
        let message = error.errno == ENOSPC ? "no space left on device" : error.description
        if !storage.failing {
            storage.failing = true
            onStorageWarning?("cannot write job events in \(store.dataDirectory): \(message); running jobs are stopped, new launches refused until writes succeed")
        }
        if let runner = running[id], runner.killReason == nil {
            try? kill(id, reason: .storage(message))
        }
        scheduleStorageRetry()
    }

    private func scheduleStorageRetry() {
        guard storageRetry == nil else { return }
        storageRetry = loop.schedule(afterMilliseconds: 1_000) { [weak self] in
            guard let self else { return }
            self.storageRetry = nil
            self.retryStorage()
        }
    }

    /// Writes what the disk refused before: events, then job records.
    private func retryStorage() {
        flushLogs()
        for id in unsavedJobs.sorted() {
            persist(id)
            if !unsavedJobs.contains(id), let job = jobsByID[id], job.status.isFinished { jobsByID[id] = job.compacted() }
        }
        if pendingLogBytes.isEmpty && unsavedJobs.isEmpty {
            if storage.failing { onStorageWarning?("job events and records are written again in \(store.dataDirectory)") }
            storage.failing = false
        } else {
            scheduleStorageRetry()
        }
    }

    /// Measures the data dir's free space: warns once when it falls below `warnFreeBytes`.
    @discardableResult
    public func checkStorage() -> StorageStatus {
        let free = StorageStatus.freeBytes(of: store.dataDirectory)
        storage.freeBytes = free
        let low = free.map { $0 < configuration.warnFreeBytes } ?? false
        if low, !storage.low {
            onStorageWarning?(
                "the data dir \(store.dataDirectory) has \(ByteCount.text(Int(free ?? 0))) free; launches are refused below \(ByteCount.text(Int(configuration.minFreeBytes)))")
        }
        storage.low = low
        return storage
    }

    /// Bytes of events held in memory because the disk refused them.
    public var unstoredBytes: Int { pendingLogBytes.values.reduce(0) { $0 + $1.count } }

    /// Events of a job after `seq` that are in memory only (the disk refuses them), as a
    /// slice; nil when there are none.
    public func unstoredEvents(of id: String, after seq: Int, maxBytes: Int) -> EventSlice? {
        guard storage.failing, let bytes = pendingLogBytes[id] else { return nil }
        return EventSlice.of(lines: bytes, after: seq, maxBytes: maxBytes)
    }

    /// Saves a job's record; one the database refuses is tried again every second, so a
    /// final status is never lost to a disk that was full for a while.
    func persist(_ id: String) {
        // A compacted job is a cut-down copy of a record already saved whole.
        guard let job = jobsByID[id], !job.isCompact else { return }
        do {
            try store.save(job)
            unsavedJobs.remove(id)
        } catch {
            if unsavedJobs.insert(id).inserted {
                storage.writeFailures += 1
                onStorageWarning?("cannot save job \(id) in \(store.dataDirectory): \(error); trying again every second")
            }
            scheduleStorageRetry()
        }
    }
}

/// The per-job state that exists only while its process runs.
final class RunningJob {
    let spec: LaunchSpec
    let process: any AgentProcess
    var splitter = LineSplitter()
    /// Bytes of stdout fed to `splitter`.
    var stdoutFed = 0
    var interpreter: StdoutInterpreter
    /// The in-progress line viewers were last sent, when, and what is due.
    var shownPartial: LogLine?
    var partialSentAt = 0
    var partialTimer: EventLoop.TimerID?
    /// A stored event went out after the line was sent: viewers dropped it.
    var partialResend = false
    var stderr = StderrCollector()
    var stderrTimer: EventLoop.TimerID?
    /// Bytes of its events so far, and whether they passed the limit (what it writes after
    /// is not kept).
    var outputBytes = 0
    var outputCapped = false
    var exitStatus: ExitStatus?
    /// Where the job is in its lifecycle; every status change goes through it.
    var lifecycle = JobLifecycle()
    /// Set when the job is being killed, with why.
    var killReason: JobManager.KillReason? { lifecycle.killReason }
    var startError: String?
    var hook: ExternalHook?
    /// Its spool cursor is due in the next write of events (`JobManager.cursorsDue`).
    var cursorQueued = false
    /// The agent's session id as last put in the job's record.
    var recordedSessionId: String?
    /// Whether it has turn or cost budgets (checked as its lines are read), and the timer
    /// of its timeout.
    var watchesReports = false
    /// Its agent takes the turn limit as a flag of its own (claude, goose).
    var ownTurnFlag = false
    var deadlineTimer: EventLoop.TimerID?
    /// A kill asked the agent to stop its turn first: SIGTERM follows when this fires.
    var interruptTimer: EventLoop.TimerID?
    /// Permission questions its agent asked that wait for a person (ACP, policy ask), by
    /// request key: the options' ids.
    var questions: [String: Set<String>] = [:]
    /// Claude Code's open permission prompts: what the tool would run with (an allow passes it
    /// back), its title, and the timer of the operator's default answer.
    var claudeQuestions: [String: (input: JSONValue, title: String, timer: EventLoop.TimerID?)] = [:]
    /// Messages its agent answered before this server took it up (a re-attached job's
    /// formatter counts only what it reads from then on).
    var answeredBefore = 0
    /// The turns and cost its agent reported, as last put in the job's record.
    var reportedTurns: Int?
    var reportedCost: Double?

    /// Its agent's permission requests wait for agentgate (Claude Code asked through its
    /// stdio, an ACP client under the ask policy): read from its lines. Decided once from its
    /// command line, so the jobs of the default policy pay nothing per line.
    let asksPermissions: Bool

    init(spec: LaunchSpec, process: any AgentProcess) {
        self.spec = spec
        self.process = process
        self.interpreter = StdoutInterpreter(format: spec.outputFormat)
        asksPermissions = spec.arguments.contains("--permission-prompt-tool=stdio") || spec.arguments.contains("--permissions=ask")
    }

    /// The run goes on from earlier ones (a re-attached run, or a follow-up's run of a
    /// finished job): the messages they answered count, and the job's log already shows their
    /// turns (an agent that replays its session on load is not shown again).
    func follows(answered: Int) {
        answeredBefore = answered
        if answered > 0 { interpreter.continuesJob() }
    }
}

enum FileHandleOutput {
    static func standardError(_ message: String) {
        let line = Array((message + "\n").utf8)
        line.withUnsafeBytes { _ = try? FileDescriptor.writeAll(2, $0) }
    }
}

extension RunningJob {
    /// How far its spool files were turned into events (whole lines whose events are made;
    /// stderr lines waiting to be coalesced are not yet), from where they were first read.
    var spoolCursor: SpoolCursor? {
        guard let start = process.spoolStart else { return nil }
        // Never below 0: a spool read again from its start (`SupervisedAgent.spoolTruncated`)
        // moves `start` back while lines taken before it may still be pending here.
        return process.checked(
            SpoolCursor(
                stdout: max(0, start.stdout + stdoutFed - splitter.unfinishedByteCount), stderr: max(0, start.stderr + stderr.consumedBytes)))
    }
}

extension [UInt8] {
    /// `line` and a newline, in place: one lookup of the pending bytes per event.
    fileprivate mutating func appendLine(_ line: [UInt8]) {
        append(contentsOf: line)
        append(0x0A)
    }
}
