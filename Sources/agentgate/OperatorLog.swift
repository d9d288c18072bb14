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
/// 10 s window are logged, the rest counted and summed up in the next window. Everything
/// that came from a client or an agent is escaped (`TerminalText`) before it is logged.
final class OperatorLog {
    static let levels = Logger.Level.allCases.map(\.rawValue)

    let logger: Logger
    private let clock: () -> Int
    private var windowStart = 0
    private var refusalsInWindow = 0
    private var unlogged = 0
    static let windowMilliseconds = 10_000
    static let refusalsPerWindow = 10

    init(logger: Logger, clock: @escaping () -> Int = { Int(MonotonicClock.nanoseconds() / 1_000_000) }) {
        self.logger = logger
        self.clock = clock
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
        manager.addObserver { [self] event, _ in self.jobEvent(event, killGraceMilliseconds: manager.configuration.killGraceMilliseconds) }
    }

    func jobEvent(_ event: JobEvent, killGraceMilliseconds: Int) {
        switch event.payload {
        case .started(let job) where job.status == .failed:
            logger.warning("job \(job.id) could not start: \(TerminalText.escaped(job.errorTail ?? "unknown reason"))")
        case .started(let job):
            let pid = job.pid.map { " pid \($0)" } ?? ""
            logger.info("job \(job.id) started: \(job.provider)\(pid) in \(TerminalText.escaped(job.cwd ?? "?"))")
        case .status(let job) where job.status == .stopping:
            logger.notice("job \(job.id) stopping: kill requested (SIGTERM, SIGKILL after \(Double(killGraceMilliseconds) / 1000) s)")
        case .completed(let job):
            var text = "job \(job.id) \(job.status.rawValue)"
            if let code = job.exitCode { text += " (exit \(code))" }
            if let signal = job.signal { text += " (\(ExitStatus.signalName(signal)))" }
            if let start = job.startedAt, let end = job.endedAt { text += " after \(Double(end - start) / 1000) s" }
            if let reason = job.result?["errors"]?[0]?.stringValue ?? (job.status == .done ? nil : job.errorTail) {
                text += ": " + TerminalText.escaped(String(reason.prefix(300)))
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

    /// A request refused for its credential, Host or Origin.
    func refused(_ request: HTTPRequest, status: Int) {
        let target = TerminalText.escaped(String(request.head.target.prefix(200)))
        refusal("refused \(TerminalText.escaped(request.head.method)) \(target): \(status) \(status == 401 ? "missing or wrong token" : "Host or Origin not allowed")")
    }

    /// A connection refused at accept (a connection limit).
    func connectionRefused(_ message: String) {
        refusal("refused a connection: \(message)")
    }

    private func refusal(_ message: String) {
        let now = clock()
        if now - windowStart >= Self.windowMilliseconds {
            if unlogged > 0 {
                logger.warning("\(unlogged) more refusals in the last \(Self.windowMilliseconds / 1000) s were not logged one by one")
            }
            windowStart = now
            refusalsInWindow = 0
            unlogged = 0
        }
        refusalsInWindow += 1
        if refusalsInWindow <= Self.refusalsPerWindow {
            logger.warning("\(message)")
        } else {
            unlogged += 1
        }
    }
}
