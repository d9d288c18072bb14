import AgentCore
import ArgumentParser
import CSystemShims
import Dispatch
import EventLoop
import Foundation
import Gateway
import Logging
import WebSocketServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the gateway: jobs over HTTP, WebSocket and SSE, metrics, and the dashboard.",
        discussion: """
            Listens on 127.0.0.1:7777 by default. Every /api/ request needs the token (created on \
            first start in <data dir>/token, mode 0600), a loopback Host, and for POST/DELETE our \
            own Origin when a browser sends one. Auth cannot be turned off; a non-loopback \
            address must also name the Host clients will use (--allow-host).
            """)

    @Option(help: "Address to listen on. Non-loopback addresses also need --allow-host for their name.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 7777

    @Option(help: "Read the API token from this file instead of the data dir (AGENTGATE_TOKEN also works).")
    var tokenFile: String?

    @Option(parsing: .singleValue, help: "Another Host name to accept (repeatable).")
    var allowHost: [String] = []

    @Option(parsing: .singleValue, help: "Another Origin allowed to change state (repeatable).")
    var allowOrigin: [String] = []

    @Option(help: "The dashboard's folder (default: web-client/ of the checkout the binary was built in, or <prefix>/share/agentgate/web-client beside <prefix>/bin, or web-client/ in the working directory).")
    var webRoot: String?

    @Option(help: "Open connections allowed in all.")
    var maxConnections = 16_384

    @Option(help: "Open connections allowed from one client address.")
    var maxConnectionsPerClient = 4_096

    @Option(help: "Seconds a dashboard session may sit unused before it must sign in again.")
    var sessionIdle = 12 * 3600

    @Option(help: "Seconds a dashboard session lives at most, used or not.")
    var sessionMax = 7 * 86400

    @Option(help: "What the server logs on stderr: trace, debug, info (start, launches, kills, exits), notice, warning (failures, refusals), error, critical.")
    var logLevel = "info"

    @Option(help: "Delete finished jobs (records, events, files) this many days after they ended; checked at start and hourly.")
    var retainDays: Double?

    @Option(help: "Keep at most this many finished jobs (the newest); older ones are deleted at start and as jobs end.")
    var retainJobs: Int?

    @Flag(help: "Stop every job when this server stops (SIGTERM/SIGINT), as a child of the server with pipes. By default each job runs under its own supervisor (agentgate shim) with its output in files: it keeps running when the server stops or crashes, and the next serve on the data dir re-attaches it with no event lost.")
    var killJobsOnExit = false

    /// Jobs outlive this server (the default): see `--kill-jobs-on-exit`.
    var surviveRestarts: Bool { !killJobsOnExit }

    @Option(help: "Seconds a job may work on with no server attached before its supervisor stops it (0: never).")
    var orphanTimeout: Double = 1_800

    @OptionGroup var engine: EngineOptions

    @OptionGroup(title: "Admission control") var admission: AdmissionOptions

    func validate() throws {
        try engine.validatePassEnv()
        _ = try admission.limits()
        _ = try admission.budgets()
        _ = try admission.loadProfiles()
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel): one of \(OperatorLog.levels.joined(separator: ", "))")
        }
        guard sessionIdle > 0, sessionMax > 0 else { throw ValidationError("--session-idle and --session-max must be positive") }
        if let retainDays, !(retainDays > 0 && retainDays <= 100_000) { throw ValidationError("--retain-days must be more than 0") }
        if let retainJobs, retainJobs < 0 { throw ValidationError("--retain-jobs must be 0 or more") }
        guard orphanTimeout >= 0, orphanTimeout <= 31_536_000 else { throw ValidationError("--orphan-timeout must be 0 to 31536000 seconds") }
        if !AccessPolicy.isLoopbackAddress(host) && allowHost.isEmpty {
            throw ValidationError(
                "\(host) is not a loopback address: name the Host clients will use with --allow-host (the token stays required)")
        }
    }

    func run() throws {
        // SIGHUP reloads the profiles (handled once the loop runs); until then it is ignored,
        // never the default that ends the process.
        signal(SIGHUP, SIG_IGN)
        let environment = ProcessInfo.processInfo.environment
        let dataDirectory = engine.resolvedDataDirectory
        let loop = try EventLoop()
        let store: JobStore
        let token: String
        let lock: DataDirectoryLock
        do {
            // One owner per data dir: a second server would interrupt and kill this one's jobs.
            // The lock comes first: opening the store may rebuild its database.
            try JobStore.prepare(dataDirectory: dataDirectory)
            switch try DataDirectoryLock.acquire(dataDirectory: dataDirectory, owner: "agentgate serve", waitingForAGoneHolder: 10_000) {
            case .acquired(let acquired):
                lock = acquired
                store = try JobStore(dataDirectory: dataDirectory)
                PrivateRuns.sweep(dataDirectory: dataDirectory)
            case .held(let holder):
                printError(
                    "agentgate: \(dataDirectory) is in use by another agentgate (\(TerminalText.escaped(holder))); "
                        + "stop it first, or give this server its own --data-dir")
                throw ExitCode(2)
            }
            token = try TokenFile.resolve(environment: environment, tokenFile: tokenFile, dataDirectory: dataDirectory)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("agentgate: \(error)")
            throw ExitCode(2)
        }
        defer { withExtendedLifetime(lock) {} }
        let detector = AgentDetector(configuration: engine.detectorConfiguration)
        _ = detector.refresh()
        var managerConfiguration: JobManager.Configuration
        do {
            managerConfiguration = try engine.managerConfiguration(
                environment: environment.filter { $0.key != "AGENTGATE_TOKEN" }.map { "\($0.key)=\($0.value)" }.sorted(),
                defaultWorkspaces: [homeDirectory()])
            managerConfiguration.admission = try admission.limits()
            managerConfiguration.maxPriority = admission.maxPriority
            managerConfiguration.budgets = try admission.budgets()
            managerConfiguration.profiles = try admission.loadProfiles()
        } catch {
            printError("agentgate: \(error)")
            throw ExitCode(2)
        }
        let urlHost = host.contains(":") ? "[\(host)]" : host
        var runner: (any JobRunner)?
        // While this server runs it touches the heartbeat: supervisors stop their agents once
        // no server has touched it for --orphan-timeout.
        let heartbeat = dataDirectory + "/serve.heartbeat"
        let orphanTimeoutMilliseconds = Int(orphanTimeout * 1_000)
        // Touched in either mode: a --kill-jobs-on-exit server also takes up the jobs a server
        // before it left under their supervisors, which watch it.
        Heartbeat.touch(heartbeat)
        // A quarter of the timeout at most (and every 10 s), so a live server is never taken
        // for gone.
        Heartbeat.keep(heartbeat, everyMilliseconds: max(50, min(10_000, (orphanTimeoutMilliseconds > 0 ? orphanTimeoutMilliseconds : 40_000) / 4)), on: loop)
        let supervisors = SupervisorRunner(
            loop: loop, supervisorExecutable: StaticFiles.executablePath(argumentZero: CommandLine.arguments[0]),
            jobsDirectory: dataDirectory + "/jobs", graceMilliseconds: managerConfiguration.killGraceMilliseconds,
            containment: JobContainment(useCgroups: false),
            orphanTimeout: orphanTimeoutMilliseconds > 0 ? (heartbeat, orphanTimeoutMilliseconds) : nil)
        if surviveRestarts {
            // A cgroup per job lives under this server's own tree, which the next server
            // clears: a job that is to outlive the server is contained by its group instead.
            managerConfiguration.useCgroups = false
            runner = supervisors
        }
        let manager = JobManager(loop: loop, store: store, detector: detector, configuration: managerConfiguration, runner: runner)
        // Jobs still working under the supervisors of a server before this one are taken up
        // whatever this server's own jobs run under (and stopped with it under
        // --kill-jobs-on-exit), never ended for being unknown to its runner.
        manager.adoptionRunner = supervisors
        let interrupted = try manager.recover()
        let log = OperatorLog(logger: OperatorLog.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info)) { delay, action in
            loop.schedule(afterMilliseconds: delay, action)
        }
        log.watch(manager)
        manager.onStorageWarning = { message in log.logger.warning("\(message)") }
        for note in store.startupNotes { log.logger.warning("\(note)") }
        // Free space is measured every 5 s: the operator is warned before the disk is full.
        func checkStorageEvery5Seconds() {
            manager.checkStorage()
            _ = loop.schedule(afterMilliseconds: 5_000) { checkStorageEvery5Seconds() }
        }
        checkStorageEvery5Seconds()
        // Retention runs on the loop once it serves (a first pass may delete many jobs), then hourly.
        let retention = JobManager.Retention(maxAgeMilliseconds: retainDays.map { Int($0 * 86_400_000) }, maxFinishedJobs: retainJobs)
        // A batch of 100 per loop turn, so a first pass over thousands of old jobs never holds
        // the loop.
        func prune(after delay: Int, deletedSoFar: Int) {
            guard !retention.keepsEverything else { return }
            _ = loop.schedule(afterMilliseconds: delay) {
                let deleted = manager.prune(retention, limit: 100)
                if deleted.count == 100 { return prune(after: 0, deletedSoFar: deletedSoFar + 100) }
                let total = deletedSoFar + deleted.count
                if total > 0 { log.logger.notice("retention: deleted \(total) finished job(s) (--retain-days/--retain-jobs)") }
                prune(after: 3_600_000, deletedSoFar: 0)
            }
        }
        prune(after: 0, deletedSoFar: 0)
        // --retain-jobs also holds as jobs end, not only hourly (after the turn that ends one).
        if retention.maxFinishedJobs != nil {
            var pruneDue = false
            manager.addObserver { event, _ in
                guard case .completed = event.payload, !pruneDue else { return }
                pruneDue = true
                _ = loop.schedule(afterMilliseconds: 0) {
                    pruneDue = false
                    let deleted = manager.prune(JobManager.Retention(maxFinishedJobs: retention.maxFinishedJobs), limit: 100)
                    if !deleted.isEmpty { log.logger.info("retention: deleted \(deleted.count) finished job(s) past --retain-jobs") }
                }
            }
        }

        var httpConfiguration = HTTPServer.Configuration()
        httpConfiguration.host = host
        httpConfiguration.port = port
        httpConfiguration.maxConnections = maxConnections
        httpConfiguration.maxConnectionsPerClient = maxConnectionsPerClient
        // Raise the fd limit, then keep a reserve of it for jobs (see FileLimits).
        httpConfiguration = httpConfiguration.limited(toFileLimit: FileLimits.raiseSoftLimit())
        FileLimits.growDescriptorTable(toHold: httpConfiguration.maxConnections + 1_024)
        let webRoot = self.webRoot ?? StaticFiles.locateDefaultRoot(executablePath: StaticFiles.executablePath(argumentZero: CommandLine.arguments[0]))
        // Every limit the server keeps, in one value (see ServerConfiguration).
        var configuration = ServerConfiguration()
        configuration.http = httpConfiguration
        configuration.jobs = managerConfiguration
        let server: GatewayServer
        do throws(SystemError) {
            server = try GatewayServer(
                loop: loop, manager: manager, policy: AccessPolicy(token: token, extraHosts: allowHost, extraOrigins: allowOrigin),
                configuration: configuration, webRoot: webRoot)
            server.gateway.sessions.limits.idleMilliseconds = sessionIdle * 1000
            server.gateway.sessions.limits.maxAgeMilliseconds = sessionMax * 1000
            // Dashboard sessions outlive a restart (hashes only, 0600).
            server.gateway.sessionFile = dataDirectory + "/sessions"
            server.gateway.restoreSessions()
            // A rotated token file takes effect at once and ends every session; a token from
            // the environment cannot change.
            if environment["AGENTGATE_TOKEN"]?.isEmpty ?? true {
                server.gateway.tokenWatcher = TokenWatcher(path: tokenFile ?? TokenFile.path(dataDirectory: dataDirectory))
            }
            server.http.listener.onAcceptError = { error in log.logger.error("accept paused: \(error)") }
            server.gateway.onRefused = { request, status, code in log.refused(request, status: status, code: code) }
            server.http.onConnectionRefused = { message in log.connectionRefused(message) }
            try server.start()
        } catch {
            printError("agentgate: cannot listen on \(host):\(port): \(error.message)")
            throw ExitCode(2)
        }
        let serverURL = "http://\(urlHost):\(server.port)"
        lock.describe("pid \(getpid()), agentgate serve on \(serverURL)")
        managerConfiguration.serverURL = serverURL
        manager.configuration = managerConfiguration

        // SIGINT/SIGTERM means "restart": jobs work on under their supervisors for the next
        // server; with --kill-jobs-on-exit they are stopped first (they would be orphaned).
        var signalSet = sigset_t()
        sigemptyset(&signalSet)
        sigaddset(&signalSet, SIGINT)
        sigaddset(&signalSet, SIGTERM)
        sigaddset(&signalSet, SIGHUP)
        pthread_sigmask(SIG_UNBLOCK, &signalSet, nil)
        let surviving = surviveRestarts
        let sources = handleTerminationSignals(loop: loop, manager: manager) { manager in
            if !surviving { manager.killAll(reason: .serverStopping) }
            loop.stop()
        }
        defer { sources.forEach { $0.cancel() } }
        // SIGHUP reads the profiles again; a file that no longer checks keeps the old ones.
        let reloadLog = LoopBound(log)
        let reload = handleReloadSignal(loop: loop, manager: manager) { [admission] manager in
            do {
                let profiles = try admission.loadProfiles()
                manager.configuration.profiles = profiles
                reloadLog.value.logger.notice("profiles reloaded: \(profiles.isEmpty ? "none (the file names no profile)" : profiles.keys.sorted().joined(separator: ", "))")
            } catch {
                reloadLog.value.logger.error("profiles not reloaded, the old ones stay: \(error)")
            }
        }
        defer { reload.cancel() }

        var banner = "agentgate listening on \(serverURL)\n"
        banner += "dashboard: \(serverURL)/#token=\(token)\n"
        if webRoot == nil {
            banner += "the dashboard's files were not found: copy web-client/ to <prefix>/share/agentgate/ beside <prefix>/bin (README \"Installing on PATH\") or pass --web-root\n"
        }
        if !interrupted.isEmpty { banner += "\(interrupted.count) job(s) were running at the last stop and are now interrupted\n" }
        if let roots = managerConfiguration.policy.workspaces?.roots {
            banner += "jobs may run in: \(roots.joined(separator: ", ")) (--workspace adds more)\n"
        }
        // How a job's stray processes are kept from outliving it (README "What a job does").
        if surviveRestarts {
            banner += "jobs run under a supervisor each (a subreaper): they outlive this server's restart (--kill-jobs-on-exit stops them with it)\n"
        } else {
            banner += manager.containment.mode == .cgroup
                ? "jobs are contained: a cgroup v2 group each\n" : "jobs are contained: a subreaper (--no-cgroup, or cgroup v2 is not usable here)\n"
        }
        let endedMeanwhile = manager.adopted.filter(\.endedMeanwhile).count
        if manager.adopted.count > endedMeanwhile { banner += "re-attached \(manager.adopted.count - endedMeanwhile) job(s) that ran on while no server did\n" }
        if endedMeanwhile > 0 { banner += "\(endedMeanwhile) job(s) ended while no server ran: their output and ends are recorded now\n" }
        if manager.queuedCount > 0 { banner += "\(manager.queuedCount) queued job(s) wait again, in their order\n" }
        let limits = managerConfiguration.admission
        banner += "jobs run \(limits.maxRunning.map { "at most \($0) at once" } ?? "with no cap") (--max-running); up to \(limits.maxQueued) more wait queued\n"
        if !managerConfiguration.profiles.isEmpty {
            banner += "profiles: \(managerConfiguration.profiles.keys.sorted().joined(separator: ", ")) (kill -HUP \(getpid()) reads \(admission.profiles ?? "the file") again)\n"
        }
        FileHandle.standardOutput.write(Data(banner.utf8))
        log.logger.info("listening on \(serverURL), data in \(dataDirectory), \(manager.jobRunner.containmentDescription) containment")
        if webRoot == nil { log.logger.warning("the dashboard's files were not found (--web-root, or README \"Installing on PATH\")") }
        if !interrupted.isEmpty {
            let named = interrupted.prefix(10).map(\.id).joined(separator: ", ") + (interrupted.count > 10 ? ", …" : "")
            log.logger.notice(
                "\(interrupted.count) job(s) were running at the last stop and are now interrupted (\(named)): nothing of them could be re-attached (no live supervisor, or the host restarted)")
        }
        for (id, unattended, ended) in manager.adopted {
            let after = String(format: "%.1f", Double(unattended) / 1_000)
            log.logger.notice(
                ended ? "server restarted: job \(id) ended while no server ran; recording its end (unattended for \(after) s)" : "server restarted, re-attached job \(id) after \(after) s")
        }
        for stray in manager.strayWorktrees() {
            log.logger.warning("worktree \(stray) belongs to no job; it is kept (git worktree remove it when it holds nothing you need)")
        }
        loop.run()
        // A server started now waits for this one to be done (a scripted `kill; serve`).
        lock.describe("pid \(getpid()), agentgate serve on \(serverURL) \(DataDirectoryLock.stoppingMark)")
        if surviveRestarts {
            if manager.runningCount + manager.queuedCount == 0 {
                log.logger.notice("stopping: no job is running or queued")
            } else {
                log.logger.notice(
                    "stopping: \(manager.runningCount) running job(s) keep working under their supervisors and \(manager.queuedCount) queued job(s) keep their places; the next `agentgate serve` on \(dataDirectory) re-attaches them (--kill-jobs-on-exit stops them instead)")
            }
            manager.flushLogs()
            OperatorLog.stderr.drain()
            // The jobs' inotify instances, closed at once rather than one by one at exit
            // (each close waits for the kernel while agents write).
            SpoolWatcher.closeAllOpen()
            // Exit here: letting the engine go would stop the processes it watches.
            Glibc.exit(0)
        }
        log.logger.info("stopping: \(manager.runningCount) running job(s) get SIGTERM")
        // Give killed jobs their grace period to finish writing their events.
        loop.run(untilMilliseconds: managerConfiguration.killGraceMilliseconds + 1_000) { manager.runningCount == 0 }
        manager.flushLogs()
        OperatorLog.stderr.drain()
    }
}

/// The file a server touches while it runs (unless `--kill-jobs-on-exit`): each job's supervisor
/// reads its age to know whether any server is attached (`--orphan-timeout`).
enum Heartbeat {
    static func touch(_ path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        futimens(fd, nil)
        close(fd)
    }

    static func keep(_ path: String, everyMilliseconds interval: Int, on loop: EventLoop) {
        _ = loop.schedule(afterMilliseconds: interval) {
            touch(path)
            keep(path, everyMilliseconds: interval, on: loop)
        }
    }
}
