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
            (which kills the job's process group). For provider 'custom', put the argv after '--'. \
            While a server owns the data dir, exec leaves its jobs alone and keeps this job's \
            record in a private temporary directory instead (removed when exec ends).
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

    @OptionGroup var session: AgentSessionOptions

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
        let lock: DataDirectoryLock
        var privateDirectory: String?
        do {
            (store, lock, privateDirectory) = try Self.openStore(engine.resolvedDataDirectory)
        } catch {
            printError("agentgate: \(error)")
            throw ExitCode(2)
        }
        defer {
            withExtendedLifetime(lock) {}
            if let privateDirectory { try? FileManager.default.removeItem(atPath: privateDirectory) }
        }
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }.sorted()
        var configuration: JobManager.Configuration
        do {
            try engine.validatePassEnv()
            configuration = try engine.managerConfiguration(environment: environment)
            // Beside the data dir's other worktrees, never in a private directory: that is
            // removed when exec ends, and a worktree holds work nobody reviewed yet.
            configuration.worktreesDirectory = engine.resolvedDataDirectory + "/worktrees"
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
            env: Dictionary(session.environment.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }),
            resumeSession: session.resume, maxTurns: session.maxTurns,
            command: command.isEmpty ? nil : command)

        var finished: Job?
        var interrupted = false
        let printer = LogPrinter(json: json, raw: raw, showsPartialLines: !json && isatty(1) == 1)
        var jobID: String?
        // Lines go out as they come: written once per turn of the loop, not when the job ends.
        var flushScheduled = false
        manager.addObserver { event, bytes in
            guard event.jobId == jobID else { return }
            printer.print(event, bytes)
            if case .completed(let job) = event.payload { finished = job }
            if !flushScheduled {
                flushScheduled = true
                loop.atEndOfTurn {
                    flushScheduled = false
                    printer.flush()
                }
            }
        }
        manager.addPartialObserver { job, line, _ in
            guard job == jobID else { return }
            printer.showPartial(line?.text ?? "")
        }

        // Ctrl-C kills the job's process group instead of orphaning it.
        let signalSources = handleTerminationSignals(loop: loop, manager: manager) { manager in
            guard !manager.jobs.isEmpty else { return }
            interruptedFlag.withLock { $0 = true }
            manager.killAll(reason: .interrupted)
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

extension Exec {
    /// The data dir's store, locked; or, while another process (a server) owns it or jobs the
    /// last server left still work on or wait, a store in a private directory
    /// `<data>/exec/run-XXXXXX` (locked too, removed at the end), so this job never touches
    /// those jobs.
    static func openStore(_ dataDirectory: String) throws -> (JobStore, DataDirectoryLock, String?) {
        // The lock first: opening the store may rebuild its database.
        try JobStore.prepare(dataDirectory: dataDirectory)
        PrivateRuns.sweep(dataDirectory: dataDirectory)
        let holder: String
        switch try DataDirectoryLock.acquire(dataDirectory: dataDirectory, owner: "agentgate exec") {
        case .acquired(let lock):
            let store = try JobStore(dataDirectory: dataDirectory)
            // Jobs the last server left working under their supervisors, or waiting queued,
            // are the next server's to take up: recovering them here would end them (attacker
            // trial). They are left alone as a server's jobs are, and the lock let go of.
            let waiting = (try? store.loadJobs())?.filter { job in
                !job.status.isFinished && (job.status == .queued || access(store.jobDirectory(job.id) + "/agent", F_OK) == 0)
            }.count ?? 0
            if waiting == 0 { return (store, lock, nil) }
            holder = "\(waiting) job(s) of the last server work on under their supervisors or wait queued, for the next `agentgate serve`"
        case .held(let holding):
            holder = "in use by " + TerminalText.escaped(holding)
        }
        // Made as `new-…` and locked before it is named `run-…`: a sweep may take any unlocked
        // `run-…` for a dead exec's at once.
        let made = try PrivateRuns.make(dataDirectory: dataDirectory, holder: holder)
        try JobStore.prepare(dataDirectory: made)
        guard case .acquired(let lock) = try DataDirectoryLock.acquire(dataDirectory: made, owner: "agentgate exec") else {
            throw JobStore.Error(description: "cannot lock \(made)")
        }
        let directory = PrivateRuns.named(made)
        guard rename(made, directory) == 0 else { throw JobStore.Error(description: "cannot rename \(made): \(String(cString: strerror(errno)))") }
        printError("agentgate: \(dataDirectory): \(holder); its jobs are left alone, and this job's record is kept in \(directory) until exec ends")
        return (try JobStore(dataDirectory: directory), lock, directory)
    }
}

/// The private directories of `exec` runs made while a server owned the data dir. One whose
/// exec died without removing it (SIGKILL) is found by the next exec or serve: its lock is
/// free, so its agent, if still running, is stopped and the directory removed (attacker trial:
/// a killed exec left its directory and its agent behind).
enum PrivateRuns {
    static func make(dataDirectory: String, holder: String) throws -> String {
        let parent = dataDirectory + "/exec"
        if mkdir(parent, 0o700) != 0 && errno != EEXIST {
            throw JobStore.Error(description: "\(dataDirectory) is in use (\(holder)), and \(parent) cannot be made")
        }
        var template = Array((parent + "/new-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw JobStore.Error(description: "\(dataDirectory) is in use (\(holder)), and no private directory could be made in \(parent)")
        }
        return String(cString: made)
    }

    /// The name a locked `new-…` directory takes.
    static func named(_ made: String) -> String {
        guard let slash = made.lastIndex(of: "/") else { return made }
        return made[..<slash] + "/run-" + made[made.index(slash, offsetBy: 5)...]
    }

    static func sweep(dataDirectory: String, graceMilliseconds: Int = 2_000) {
        let parent = dataDirectory + "/exec"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        for name in names where name.hasPrefix("new-") {
            // An exec that died between making and locking its directory: nothing ran in it.
            // (One made a moment ago may be about to be locked.)
            var info = stat()
            let directory = parent + "/" + name
            if stat(directory, &info) == 0, time(nil) - info.st_mtim.tv_sec > 10 { try? FileManager.default.removeItem(atPath: directory) }
        }
        for name in names where name.hasPrefix("run-") {
            let directory = parent + "/" + name
            // Locked since before it had this name: free means its exec is gone.
            guard case .acquired(let lock)? = try? DataDirectoryLock.acquire(dataDirectory: directory, owner: "agentgate sweep"),
                let store = try? JobStore(dataDirectory: directory)
            else { continue }
            let stopped = JobManager.stopLeftovers(in: store, graceMilliseconds: graceMilliseconds)
            if stopped > 0 { printError("agentgate: stopped \(stopped) job(s) left running by an exec that died (\(directory))") }
            try? FileManager.default.removeItem(atPath: directory)
            withExtendedLifetime(lock) {}
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
    /// On a terminal, the line being streamed is drawn in place (`job:partial`) and replaced
    /// by the finished line; through a pipe only finished lines are written.
    let showsPartialLines: Bool
    private var buffer: [UInt8] = []
    private var partialShown = false

    init(json: Bool, raw: Bool = false, showsPartialLines: Bool = false) {
        self.json = json
        self.raw = raw
        self.showsPartialLines = showsPartialLines
    }

    /// Draws the in-progress line over the previous one (empty: erases it).
    func showPartial(_ text: String) {
        guard showsPartialLines else { return }
        buffer += Array("\r\u{1B}[K".utf8)
        partialShown = !text.isEmpty
        buffer += Array(Self.oneRow(text, columns: Self.terminalColumns()).utf8)
        flush()
    }

    /// `text` escaped and cut (from the start, with "…") to fit one terminal row: a line that
    /// wraps cannot be redrawn in place, since `\r` and erase-line reach only the last row.
    /// Widths are counted as terminals draw them: East Asian wide characters and emoji take
    /// two columns, combining marks none; a tab becomes a space.
    static func oneRow(_ text: String, columns: Int) -> String {
        let escaped = TerminalText.escaped(text).replacingOccurrences(of: "\t", with: " ")
        // The last column stays free: some terminals wrap as soon as it is written.
        let room = max(2, columns - 1)
        if escaped.reduce(0, { $0 + cellWidth($1) }) <= room { return escaped }
        var width = 1  // the "…"
        var kept: [Character] = []
        for character in escaped.reversed() {
            let cells = cellWidth(character)
            if width + cells > room { break }
            width += cells
            kept.append(character)
        }
        return "…" + String(kept.reversed())
    }

    /// Terminal cells of one character (wcwidth, for the ranges agents write).
    static func cellWidth(_ character: Character) -> Int {
        guard let scalar = character.unicodeScalars.first else { return 0 }
        let value = scalar.value
        if scalar.properties.generalCategory == .nonspacingMark || scalar.properties.generalCategory == .enclosingMark { return 0 }
        let wide: [ClosedRange<UInt32>] = [
            0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
            0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x1F300...0x1F64F,
            0x1F900...0x1F9FF, 0x20000...0x3FFFD,
        ]
        return wide.contains { $0.contains(value) } ? 2 : 1
    }

    static func terminalColumns() -> Int {
        var size = winsize()
        return ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
    }

    func print(_ event: JobEvent, _ bytes: [UInt8]) {
        if partialShown {
            buffer += Array("\r\u{1B}[K".utf8)
            partialShown = false
        }
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
        case .queue(let position, let reason):
            return "[agentgate] queued (\(AdmissionQueue.ordinal(position)))" + (reason.map { ": \($0)" } ?? "")
        case .spend:
            // The agent's own lines say what it spent; the job's fields keep the running total.
            return nil
        case .permission(let request, _, let options, let expiresAt, let answer):
            // The question and its answer are in the agent's lines; this says how to answer.
            guard answer == nil else { return nil }
            let ids = (options.arrayValue ?? []).compactMap { $0["optionId"]?.stringValue }
            // Replayed after its time was up (a finished job's log): nothing to type any more.
            if let expiresAt, expiresAt <= WallClock.milliseconds() {
                return "[agentgate] permission question \(request): its time is up (the operator's default answers it)"
            }
            let wait = expiresAt.map { " within \(max(0, ($0 - WallClock.milliseconds() + 999) / 1_000)) s" } ?? ""
            return "[agentgate] answer\(wait) with: agentgate answer \(event.jobId) \(request) <\(ids.joined(separator: "|"))>"
        case .status(let job):
            // Running after preparing its worktree: said like a start; stopping is said by the log.
            guard job.status == .running else { return nil }
            return "[agentgate] job \(job.id) \(job.status.rawValue): \(job.provider)" + (job.pid.map { " (pid \($0))" } ?? "")
        case .started(let job):
            return "[agentgate] job \(job.id) \(job.status.rawValue): \(job.provider)" + (job.pid.map { " (pid \($0))" } ?? "")
        case .completed(let job):
            return job.statusLine + (job.hookError.map { " · hook error: \($0)" } ?? "")
        }
    }
}
