/// One job's lifecycle with no I/O: the engine says what happened, carries out the actions
/// returned (in order), and shows `status`. Every status a job takes is decided here, so the
/// rules are in one place and tested without a process.
///
/// ```
///  queued ──admitted──▶ starting ──spawned──▶ running ──exited──▶ finalizing ──finalized──▶ finished
///    ▲ enqueue │ kill      isolate │  ▲  │                │ kill               │ kill: hook cancelled,
///    │         ▼                   ▼  │  │ spawnFailed    ▼                    │ still finalized once
///  starting  finished(killed) preparing ┘  └─▶ finished(failed) stopping ──exited───┘
///                    prepared  │ prepareFailed, or prepared after a kill ──▶ finished
///  found unfinished when the server starts ──▶ finished(interrupted)
///  finished ──continued (a follow-up resumes the agent's session)──▶ starting
/// ```
///
/// `queued` is where a job waits for admission control (caps, its key); `preparing` is where
/// it waits for its worktree.
public struct JobLifecycle: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        case queued, preparing, starting, running, stopping, finalizing
        case finished(JobStatus)
    }

    public enum Event: Sendable, Equatable {
        /// Admission control holds it back: it waits in the queue.
        case enqueue
        /// It may start now.
        case admitted
        /// The job runs in a worktree of its own, which must be made first.
        case isolate
        /// Its worktree is ready.
        case prepared
        /// Its worktree could not be made.
        case prepareFailed
        /// The agent's process exists.
        case spawned
        /// It could not be started at all.
        case spawnFailed
        case killRequested(JobManager.KillReason)
        /// The agent exited; `succeeded`: it started, exited 0 and did not report an error.
        case exited(succeeded: Bool)
        /// Results are ingested and the completion hook has run (or was stopped).
        case finalized
        /// A server started and found the job unfinished, with nothing to re-attach to.
        case serverRestarted
        /// A finished job takes a follow-up message: its agent's session is resumed as a new
        /// run of the same job (same id, its events' seq going on).
        case continued
    }

    public enum Action: Sendable, Equatable {
        /// `job:started` with the job as it is now.
        case announceStarted
        /// `job:status` (running after preparing, or stopping).
        case announceStatus
        /// Make the job's worktree; then `prepared` or `prepareFailed`.
        case prepare
        /// Start the agent; then `spawned` or `spawnFailed`.
        case spawn
        /// SIGTERM to the agent's group, SIGKILL after the grace period.
        case signalGroup
        /// The agent had already exited: stop its completion hook instead.
        case cancelHook
        /// Ingest the agent's result and output file, run the completion hook; then `finalized`.
        case finalize
        /// `job:completed`, exactly once; the job's record and log are closed.
        case announceCompleted
    }

    public private(set) var phase: Phase
    /// Why the job is being stopped, once a kill was asked for (the first reason wins).
    public private(set) var killReason: JobManager.KillReason?
    private var succeeded = false
    /// `job:started` went out before the spawn (when preparing began).
    private var announced = false

    public init(phase: Phase = .starting) {
        self.phase = phase
    }

    /// The status a job in this lifecycle shows.
    public var status: JobStatus {
        switch phase {
        case .preparing: killReason == nil ? .preparing : .stopping
        case .queued: .queued
        case .starting: .starting
        case .running: .running
        case .stopping: .stopping
        case .finalizing: killReason == nil ? .running : .stopping
        case .finished(let status): status
        }
    }

    public var isFinished: Bool {
        if case .finished = phase { return true }
        return false
    }

    /// The status the job ends with if it is finalized now (what a completion hook is shown).
    public var endingStatus: JobStatus {
        if let killReason { return killReason.failsTheJob ? .failed : .killed }
        return succeeded ? .done : .failed
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        case (.finished, .continued):
            // A new run: nothing of the last one's ending carries over.
            phase = .starting
            killReason = nil
            succeeded = false
            announced = true
            return [.announceStatus]
        case (.finished, _):
            return []
        case (_, .serverRestarted):
            phase = .finished(.interrupted)
            return [.announceCompleted]
        case (.starting, .enqueue):
            phase = .queued
            announced = true
            return [.announceStarted]
        case (.queued, .admitted):
            phase = .starting
            return []
        case (.queued, .spawnFailed):
            // Its command line could not be made again (after a restart): announced when queued.
            phase = .finished(.failed)
            return [.announceCompleted]
        case (.queued, .killRequested(let reason)):
            // Cancelled while it waited: it ends without having run.
            killReason = reason
            phase = .finished(endingStatus)
            return [.announceCompleted]
        case (.starting, .isolate):
            phase = .preparing
            let first = !announced
            announced = true
            return [first ? .announceStarted : .announceStatus, .prepare]
        case (.preparing, .prepared):
            // Killed while its worktree was made: it never starts.
            if killReason != nil {
                phase = .finished(endingStatus)
                return [.announceCompleted]
            }
            phase = .starting
            return [.spawn]
        case (.preparing, .prepareFailed):
            phase = .finished(killReason == nil ? .failed : endingStatus)
            return [.announceCompleted]
        case (.starting, .spawned):
            phase = killReason == nil ? .running : .stopping
            let announce: Action = announced ? .announceStatus : .announceStarted
            return killReason == nil ? [announce] : [announce, .signalGroup]
        case (.starting, .spawnFailed):
            phase = .finished(.failed)
            return announced ? [.announceCompleted] : [.announceStarted, .announceCompleted]
        case (.preparing, .killRequested(let reason)):
            guard killReason == nil else { return [] }
            killReason = reason
            return [.announceStatus]
        case (.starting, .killRequested(let reason)):
            // Nothing runs yet: stopped when it spawns.
            if killReason == nil { killReason = reason }
            return []
        case (.running, .killRequested(let reason)):
            killReason = reason
            phase = .stopping
            return [.announceStatus, .signalGroup]
        case (.finalizing, .killRequested(let reason)):
            guard killReason == nil else { return [] }
            killReason = reason
            return [.announceStatus, .cancelHook]
        case (.stopping, .killRequested):
            return []
        case (.running, .exited(let succeeded)), (.stopping, .exited(let succeeded)):
            self.succeeded = succeeded
            phase = .finalizing
            return [.finalize]
        case (.finalizing, .finalized):
            phase = .finished(endingStatus)
            return [.announceCompleted]
        default:
            // An event that cannot happen in this phase (an exit before the spawn was
            // reported, a second exit, a finalize before the exit): ignored.
            return []
        }
    }
}
