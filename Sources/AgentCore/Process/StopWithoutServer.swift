#if canImport(Glibc)
import Glibc
#endif

/// `agentgate kill ID` while no server runs on the data dir: a job under its own supervisor
/// can still be stopped. The request is written down first (`stop-requested`, so the next
/// server ends the job `killed`, not `failed`), then the supervisor gets SIGTERM and does what
/// it does for a server: SIGTERM to the agent's group, SIGKILL after its grace, `exit.json`.
/// Every pid is checked against the records before it is signalled.
public enum StopWithoutServer {
    /// The file whose presence tells the next server that a stop was asked for meanwhile.
    public static let requestFile = "stop-requested"

    public enum Outcome: Equatable, Sendable {
        /// Its supervisor was asked to stop it.
        case stopping
        /// Its supervisor is gone and the agent works on: its group got SIGTERM (and SIGKILL
        /// after `graceMilliseconds` if it still ran).
        case stoppedUnsupervised
        /// It has already ended (the next server records how).
        case alreadyEnded
        /// Nothing of this job runs under a supervisor (no such job, or it is not running).
        case notRunning
    }

    /// Call while holding the data dir's lock, so no server takes the job up meanwhile.
    public static func stop(jobDirectory: String, graceMilliseconds: Int) -> Outcome {
        let directory = jobDirectory + "/agent"
        if ExitRecord.read(directory + "/exit.json") != nil { return .alreadyEnded }
        guard let agent = AgentRecord.read(directory + "/agent.json"), agent.identityHolds,
            let entry = ProcessTable.entry(of: agent.pid), !entry.isZombie
        else { return .notRunning }
        noteRequest(in: directory)
        if let supervisor = agent.supervisorIfParent(entry) {
            kill(supervisor, SIGTERM)
            return .stopping
        }
        kill(-agent.pgid, SIGTERM)
        var waited = 0
        func running() -> Bool { agent.identityHolds && !ProcessTable.hasEnded(agent.pid) }
        while waited < graceMilliseconds, running() {
            usleep(20_000)
            waited += 20
        }
        if running() { kill(-agent.pgid, SIGKILL) }
        return .stoppedUnsupervised
    }

    /// A job still queued (by its record; no agent started) is cancelled by a note in its
    /// directory: the next server ends it `killed` without running it. False when the job
    /// is not a queued one. Call while holding the data dir's lock.
    public static func cancelQueued(jobDirectory: String, store: JobStore, id: String) -> Bool {
        // (Not again: one cancelled before is not counted twice.)
        guard store.loadJob(id)?.status == .queued, access(jobDirectory + "/agent", F_OK) != 0, !wasRequested(in: jobDirectory) else { return false }
        let marker = open(jobDirectory + "/" + requestFile, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard marker >= 0 else { return false }
        close(marker)
        return true
    }

    /// `agentgate kill --all` while no server runs: every job of the data dir that runs under
    /// its supervisor is stopped and every queued one cancelled, as `stop` and `cancelQueued`
    /// do one. Call while holding the data dir's lock.
    public static func stopAll(dataDirectory: String, store: JobStore?, graceMilliseconds: Int) -> (stopped: [String], cancelled: [String]) {
        let jobs = dataDirectory + "/jobs"
        guard let listing = opendir(jobs) else { return ([], []) }
        var ids: [String] = []
        while let entry = readdir(listing) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if JobStore.isValidJobId(name) { ids.append(name) }
        }
        closedir(listing)
        var stopped: [String] = [], cancelled: [String] = []
        for id in ids.sorted() {
            let directory = jobs + "/" + id
            switch stop(jobDirectory: directory, graceMilliseconds: graceMilliseconds) {
            case .stopping, .stoppedUnsupervised: stopped.append(id)
            case .alreadyEnded: break
            case .notRunning:
                if let store, cancelQueued(jobDirectory: directory, store: store, id: id) { cancelled.append(id) }
            }
        }
        return (stopped, cancelled)
    }

    /// Writes the request down in `directory` (a job's `agent` directory).
    static func noteRequest(in directory: String) {
        let marker = open(directory + "/" + requestFile, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if marker >= 0 { close(marker) }
    }

    /// True when a stop was asked for while no server ran (`directory`: a job's `agent`
    /// directory, or a queued job's own).
    static func wasRequested(in directory: String) -> Bool {
        access(directory + "/" + requestFile, F_OK) == 0
    }
}
