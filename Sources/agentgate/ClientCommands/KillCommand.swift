import AgentCore
import ArgumentParser
import Glibc

/// `agentgate kill`: stop one job or all of them.
struct KillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill", abstract: "Kill a job (SIGTERM to its group, SIGKILL after the grace period), or --all.",
        discussion: """
            Exit status: 0 asked to stop, 5 no such job, 7 already finished.

            With no server running on the data dir, a job that outlives its server (serve's default) \
            is stopped through its supervisor, and a queued job is cancelled (with --all, every such \
            job); the next `agentgate serve` records them as killed.
            """)

    @Argument(help: "The job id.")
    var id: String?

    @Flag(help: "Kill every running job.")
    var all = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard (id != nil) != all else { throw ValidationError("name one job id, or --all") }
        if let id { try validateJobID(id) }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            if all {
                do throws(ClientFailure) {
                    let reply = try api.call("DELETE", "/api/agents/jobs")
                    print("killed \(reply["killed"]?.intValue ?? 0) job(s)")
                } catch {
                    guard error.exitCode == 3 else { throw error }
                    return try killAllWithoutServer(unreachable: error)
                }
            } else if let id {
                do throws(ClientFailure) {
                    _ = try api.call("DELETE", "/api/agents/jobs/\(id)")
                } catch {
                    guard error.exitCode == 3 else { throw error }
                    return try killWithoutServer(id, unreachable: error)
                }
                print("killing \(id)")
            }
            return 0
        }
    }

    /// `--all` with no server answering: as for one job, every job of the data dir.
    private func killAllWithoutServer(unreachable: ClientFailure) throws(ClientFailure) -> Int32 {
        let dataDirectory = client.dataDirectory
        let lock = try lockWithoutServer(unreachable: unreachable)
        defer { withExtendedLifetime(lock) {} }
        let (stopped, cancelled) = StopWithoutServer.stopAll(
            dataDirectory: dataDirectory, store: try? JobStore(dataDirectory: dataDirectory), graceMilliseconds: 5_000)
        var said = "killed \(stopped.count) job(s)"
        if !cancelled.isEmpty { said += " and cancelled \(cancelled.count) queued" }
        print(said + " (no server is running on \(dataDirectory): supervisors stop them, and the next `agentgate serve` records them killed)")
        return 0
    }

    /// The data dir's lock, taken when no server answers: none holds the data dir, so none
    /// starts and takes a job up while it is stopped.
    private func lockWithoutServer(unreachable: ClientFailure) throws(ClientFailure) -> DataDirectoryLock {
        let dataDirectory = client.dataDirectory
        switch try? DataDirectoryLock.acquire(dataDirectory: dataDirectory, owner: "agentgate kill") {
        case .acquired(let acquired)?: return acquired
        case .held(let holder)?:
            throw ClientFailure(message: unreachable.message + "; \(dataDirectory) is in use by \(TerminalText.escaped(holder))", exitCode: 3)
        case nil: throw unreachable
        }
    }

    /// No server answers: when none holds the data dir either, a job under its own supervisor
    /// is stopped directly (the lock is held meanwhile, so no server starts and takes it up).
    private func killWithoutServer(_ id: String, unreachable: ClientFailure) throws(ClientFailure) -> Int32 {
        let dataDirectory = client.dataDirectory
        let lock = try lockWithoutServer(unreachable: unreachable)
        defer { withExtendedLifetime(lock) {} }
        let jobDirectory = dataDirectory + "/jobs/" + id
        let store = try? JobStore(dataDirectory: dataDirectory)
        if let recorded = store?.loadJob(id), recorded.status.isFinished {
            throw ClientFailure(message: "job \(id) has already finished (\(recorded.status.rawValue))", exitCode: 7)
        }
        switch StopWithoutServer.stop(jobDirectory: jobDirectory, graceMilliseconds: 5_000) {
        case .stopping:
            print("killing \(id) (no server is running: its supervisor stops it, and the next `agentgate serve` records it killed)")
            return 0
        case .stoppedUnsupervised:
            print("killed \(id) (no server is running and its supervisor is gone: its process group was stopped, and the next `agentgate serve` records it killed)")
            return 0
        case .alreadyEnded:
            throw ClientFailure(message: "job \(id) has already ended (the next `agentgate serve` records how)", exitCode: 7)
        case .notRunning:
            guard access(jobDirectory, F_OK) == 0 else {
                throw ClientFailure(message: unreachable.message + "; and no job \(id) in \(dataDirectory)", exitCode: 5)
            }
            if let store, StopWithoutServer.cancelQueued(jobDirectory: jobDirectory, store: store, id: id) {
                print("cancelled \(id) (it was queued and no server is running: the next `agentgate serve` records it killed, never run)")
                return 0
            }
            throw ClientFailure(message: "job \(id) is not running (no server is running on \(dataDirectory))", exitCode: 7)
        }
    }
}
