#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import Synchronization

/// Set by SIGINT while a client command follows a job.
let clientInterrupted = Atomic<Bool>(false)

/// Follows one job over `/ws` from a seq until it ends, printing each event once. With
/// `reconnect`, a lost connection (a server restart) is retried with backoff and the job
/// resumed after the last seq printed: nothing lost, nothing twice.
struct JobFollower {
    let api: ServerAPI
    let output: JobOutput
    var reconnect = false
    /// Also receive `job:event` (the agent's raw JSON), for `--json`.
    var rawEvents = false

    enum Outcome {
        case ended(Job)
        /// Ctrl-C; the seq printed last.
        case interrupted(lastSeq: Int)
    }

    /// Catches SIGINT in a flag the loop reads (the default would kill the client mid-line).
    static func catchInterrupts() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        signal(SIGINT) { _ in clientInterrupted.store(true, ordering: .relaxed) }
    }

    func follow(job id: String, since: Int) throws(ClientFailure) -> Outcome {
        var lastSeq = since
        var delay: Int32 = 250
        while true {
            let socket: EventSocket
            do {
                socket = try EventSocket(api: api)
            } catch {
                // Ctrl-C while connecting is a detach, not a failure.
                if clientInterrupted.load(ordering: .relaxed) { return .interrupted(lastSeq: lastSeq) }
                guard reconnect, error.exitCode == 3 || error.exitCode == 6 else { throw error }
                output.note("agentgate: server unreachable; retrying in \(Double(delay) / 1000) s")
                usleep(UInt32(delay) * 1000)
                delay = min(delay * 2, 5_000)
                continue
            }
            delay = 250
            socket.send(.object(["op": "subscribe", "job": .string(id), "since": .int(lastSeq), "events": .bool(rawEvents)]))
            connection: while true {
                if clientInterrupted.load(ordering: .relaxed) {
                    socket.close()
                    return .interrupted(lastSeq: lastSeq)
                }
                switch socket.next(timeoutMilliseconds: 100) {
                case .timedOut:
                    output.tick()
                case .closed:
                    if let closedBy = socket.closedBy, closedBy.code?.rawValue == 4401 {
                        // Signed out or the token rotated: reconnecting would be refused.
                        throw ClientFailure(message: "the server ended the connection: \(closedBy.reason)", exitCode: 4)
                    }
                    if socket.closedBy?.code?.rawValue == 4008 {
                        // Too far behind (this terminal was slower than the job): the server
                        // asks to resume from the last seq shown, from its store.
                        output.note("agentgate: fell behind the job; resuming from seq \(lastSeq)")
                        break connection
                    }
                    guard reconnect else { throw ClientFailure.serverGone }
                    output.note("agentgate: connection lost; reconnecting from seq \(lastSeq)")
                    break connection
                case .message(let message):
                    let type = message["type"]?.stringValue ?? ""
                    if type == "error" {
                        if message["code"]?.stringValue == "unknown_job" { throw ClientFailure(message: "no job \(id)", exitCode: 5) }
                        throw ClientFailure(message: message["error"]?.stringValue ?? "server error", exitCode: 8)
                    }
                    if type == "gap", message["job"]?.stringValue == id, let from = message["from"]?.intValue, let to = message["to"]?.intValue {
                        // Seqs the server's store lost (a full disk, a damaged file): said, then skipped.
                        output.note("agentgate: events \(from)–\(to) of this job are missing from the server's store")
                        lastSeq = max(lastSeq, to)
                        continue
                    }
                    if type == "job:partial" {
                        if message["job"]?.stringValue == id { output.partial(message["text"]?.stringValue ?? "") }
                        continue
                    }
                    guard type.hasPrefix("job:"), message["job"]?.stringValue == id, let seq = message["seq"]?.intValue, seq > lastSeq else {
                        continue
                    }
                    lastSeq = seq
                    output.event(message)
                    if type == "job:completed", let info = message["info"], var job = Job(json: info) {
                        // Its end is this event (the job it carries was taken just before it).
                        job.lastSeq = seq
                        socket.close()
                        return .ended(job)
                    }
                }
            }
        }
    }

    /// The exit code for a job's final status: 0 done, 1 failed or interrupted, 137 killed.
    static func exitCode(for job: Job) -> Int32 {
        switch job.status {
        case .done: 0
        case .killed: 137
        default: 1
        }
    }
}
