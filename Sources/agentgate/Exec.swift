import AgentCore
import ArgumentParser
import CSystemShims
import Dispatch
import EventLoop
import Foundation

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one job in this process and print its log.",
        discussion: """
            Exit status: 0 when the job is done, 1 when it failed, 130 when interrupted by Ctrl-C \
            (which kills the job's process group). For provider 'custom', put the argv after '--'.
            """)

    @Argument(help: "claude, codex, opencode, goose, or custom.")
    var provider: String

    @Option(help: "The prompt (read from stdin when omitted).")
    var prompt: String?

    @Option(help: "Working directory of the job.")
    var cwd: String?

    @Option(help: "Model name passed to the agent.")
    var model: String?

    @Option(help: "Effort / reasoning effort passed to the agent.")
    var effort: String?

    @Option(help: "A label for the job.")
    var label: String?

    @Flag(help: "Print the events as NDJSON instead of log lines.")
    var json = false

    @Flag(help: "Print agent output as it is, control characters included (by default they are shown escaped: ESC as \\x1b).")
    var raw = false

    @OptionGroup var engine: EngineOptions

    @Argument(parsing: .postTerminator, help: "argv for provider 'custom'.")
    var command: [String] = []

    func run() throws {
        ag_ignore_sigpipe()
        let promptText: String
        if let prompt {
            promptText = prompt
        } else if provider == "custom" {
            promptText = ""
        } else {
            promptText = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }

        let loop = try EventLoop()
        let store: JobStore
        do {
            store = try JobStore(dataDirectory: engine.resolvedDataDirectory)
        } catch {
            printError("agentgate: \(error)")
            throw ExitCode(2)
        }
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }.sorted()
        let configuration: JobManager.Configuration
        do {
            try engine.validatePassEnv()
            configuration = try engine.managerConfiguration(environment: environment)
        } catch {
            printError("agentgate: \(error)")
            throw ExitCode(2)
        }
        let manager = JobManager(
            loop: loop, store: store, detector: AgentDetector(configuration: engine.detectorConfiguration),
            configuration: configuration)
        try manager.recover()

        let request = LaunchRequest(
            provider: provider, prompt: promptText,
            cwd: cwd.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }, model: model, effort: effort, label: label,
            command: command.isEmpty ? nil : command)

        var finished: Job?
        var interrupted = false
        let printer = LogPrinter(json: json, raw: raw)
        var jobID: String?
        manager.addObserver { event, bytes in
            guard event.jobId == jobID else { return }
            printer.print(event, bytes)
            if case .completed(let job) = event.payload { finished = job }
        }

        // Ctrl-C kills the job's process group instead of orphaning it.
        let signalSources = handleTerminationSignals(loop: loop, manager: manager) { manager in
            guard !manager.jobs.isEmpty else { return }
            interruptedFlag.withLock { $0 = true }
            manager.killAll()
        }
        defer { signalSources.forEach { $0.cancel() } }

        let job: Job
        do {
            // Observers filter on jobID, which is known only after launch; events emitted
            // during launch are replayed from the store below.
            job = try manager.launch(request)
        } catch {
            printError("agentgate: \(error.message)")
            throw ExitCode(2)
        }
        jobID = job.id
        for event in manager.events(for: job.id) {
            printer.print(event, event.encoded())
            if case .completed(let done) = event.payload { finished = done }
        }
        loop.run(untilMilliseconds: Int.max / 2_000_000) { finished != nil }
        manager.flushLogs()
        interrupted = interruptedFlag.withLock { $0 }
        printer.flush()
        switch finished?.status {
        case .done?: return
        case .killed? where interrupted: throw ExitCode(130)
        default: throw ExitCode(1)
        }
    }
}

import Synchronization
let interruptedFlag = Mutex(false)

/// Prints a job's events as log lines (or NDJSON) to stdout; control characters in the
/// lines are shown escaped unless `raw` (see `TerminalText`).
final class LogPrinter {
    let json: Bool
    let raw: Bool
    private var buffer: [UInt8] = []

    init(json: Bool, raw: Bool = false) {
        self.json = json
        self.raw = raw
    }

    func print(_ event: JobEvent, _ bytes: [UInt8]) {
        if json {
            buffer += bytes
            buffer.append(0x0A)
        } else if let line = Self.text(of: event) {
            buffer += Array((raw ? line : TerminalText.escaped(line)).utf8)
            buffer.append(0x0A)
        }
        if buffer.count > 16 * 1024 { flush() }
        if case .completed = event.payload { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { _ = try? FileDescriptor.writeAll(1, $0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// The text form of an event, as `exec` and `tail` print it; nil for raw agent events.
    static func text(of event: JobEvent) -> String? {
        switch event.payload {
        case .log(let line):
            return line.displayText
        case .agentEvent: return nil
        case .started(let job):
            return "[agentgate] job \(job.id) \(job.status.rawValue): \(job.provider)" + (job.pid.map { " (pid \($0))" } ?? "")
        case .completed(let job):
            return job.statusLine + (job.hookError.map { " · hook error: \($0)" } ?? "")
        }
    }
}
