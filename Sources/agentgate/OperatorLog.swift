import AgentCore
import EventLoop
import Foundation
import HTTPCore
import Logging

/// What `serve` tells its operator on stderr, through swift-log: start, each launch, kill and
/// exit, refused requests and connections, accept pauses. `--log-level` picks how much
/// (`debug` adds every event's type; `warning` keeps only failures and refusals).
///
/// Refusals are what an attacker controls, so they are rate-limited: the first few of each
/// 10 s window are logged, the rest counted and summed up when the window ends. Everything
/// that came from a client or an agent is logged as one escaped line (`oneLine`): an agent's
/// stderr must not be able to write log lines of its own (attacker trial).
final class OperatorLog {
    static let levels = Logger.Level.allCases.map(\.rawValue)

    let logger: Logger
    private let clock: () -> Int
    private var windowStart = 0
    private var refusalsInWindow = 0
    private var unlogged = 0
    static let windowMilliseconds = 10_000
    static let refusalsPerWindow = 10

    /// Runs a closure after a delay in milliseconds (the event loop's timer): the count of
    /// refusals not logged one by one goes out when their window ends.
    private let schedule: (Int, @escaping () -> Void) -> Void

    init(
        logger: Logger, clock: @escaping () -> Int = { MonotonicClock.milliseconds() },
        schedule: @escaping (Int, @escaping () -> Void) -> Void
    ) {
        self.logger = logger
        self.clock = clock
        self.schedule = schedule
    }

    /// The lines' way to stderr (a thread of its own: see `QueuedStderrLogHandler`).
    static let stderr = StderrLineWriter()

    /// The process's logging, to stderr at `level` (one call per process).
    static func bootstrap(level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { label in
            QueuedStderrLogHandler(logLevel: level, label: label, writer: stderr)
        }
        var logger = Logger(label: "agentgate")
        logger.logLevel = level
        return logger
    }

    /// Logs the jobs' lifecycle as the engine reports it.
    func watch(_ manager: JobManager) {
        // The grace is read only for the event that says it: `configuration` is a copy of a
        // struct of strings, too dear for every log line of every job.
        manager.addObserver { [self, unowned manager] event, _ in
            switch event.payload {
            case .log, .agentEvent: self.jobEvent(event, killGraceMilliseconds: 0)
            default: self.jobEvent(event, killGraceMilliseconds: manager.configuration.killGraceMilliseconds)
            }
        }
    }

    func jobEvent(_ event: JobEvent, killGraceMilliseconds: Int) {
        switch event.payload {
        case .started(let job) where job.status == .failed:
            logger.warning("job \(job.id) could not start: \(Self.oneLine(job.errorTail ?? "unknown reason"))")
        case .started(let job) where job.status == .queued:
            let place = job.queuePosition.map { " (\(AdmissionQueue.ordinal($0)))" } ?? ""
            logger.info("job \(job.id) queued\(place): \(job.provider) in \(Self.oneLine(job.cwd ?? "?"))")
        case .started(let job):
            let pid = job.pid.map { " pid \($0)" } ?? ""
            logger.info("job \(job.id) started: \(job.provider)\(pid) in \(Self.oneLine(job.cwd ?? "?"))")
        case .status(let job) where job.status == .stopping:
            logger.notice("job \(job.id) stopping: kill requested (SIGTERM, SIGKILL after \(Double(killGraceMilliseconds) / 1000) s)")
        case .completed(let job):
            var text = "job \(job.id) \(job.status.rawValue)"
            if let code = job.exitCode { text += " (exit \(code))" }
            if let signal = job.signal { text += " (\(ExitStatus.signalName(signal)))" }
            if let start = job.startedAt, let end = job.endedAt { text += " after \(Double(end - start) / 1000) s" }
            if let reason = job.result?["errors"]?[0]?.stringValue ?? (job.status == .done ? nil : job.errorTail) {
                text += ": " + Self.oneLine(reason)
            }
            switch job.status {
            case .done: logger.info("\(text)")
            case .failed: logger.warning("\(text)")
            default: logger.notice("\(text)")
            }
        default:
            logger.debug("job \(event.jobId) \(event.type) seq \(event.seq)")
        }
    }

    /// A request refused: for its credential, Host or Origin, or a launch or kill refused.
    func refused(_ request: HTTPRequest, status: Int, code: String) {
        let target = Self.oneLine(String(request.head.target), limit: 200)
        let why = status == 401 ? "missing or wrong token" : code == "forbidden_host" || code == "forbidden_origin" ? "Host or Origin not allowed" : Self.oneLine(code, limit: 60)
        refusal("refused \(Self.oneLine(request.head.method, limit: 20)) \(target): \(status) \(why)")
    }

    /// A connection refused at accept (a connection limit).
    func connectionRefused(_ message: String) {
        refusal("refused a connection: \(message)")
    }

    /// Text from a client or an agent as one log line: control characters escaped
    /// (`TerminalText`), and newlines and tabs too, cut to `limit` characters.
    static func oneLine(_ text: String, limit: Int = 300) -> String {
        var escaped = TerminalText.escaped(text).replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
        if escaped.count > limit { escaped = String(escaped.prefix(limit)) + "…" }
        return escaped
    }

    private func refusal(_ message: String) {
        let now = clock()
        if now - windowStart >= Self.windowMilliseconds {
            logUnlogged()
            windowStart = now
            refusalsInWindow = 0
        }
        refusalsInWindow += 1
        if refusalsInWindow <= Self.refusalsPerWindow {
            logger.warning("\(message)")
            return
        }
        unlogged += 1
        if unlogged == 1 {
            schedule(max(0, windowStart + Self.windowMilliseconds - now)) { [weak self] in self?.logUnlogged() }
        }
    }

    private func logUnlogged() {
        guard unlogged > 0 else { return }
        logger.warning("\(unlogged) more refusals in the last \(Self.windowMilliseconds / 1000) s were not logged one by one")
        unlogged = 0
    }
}
