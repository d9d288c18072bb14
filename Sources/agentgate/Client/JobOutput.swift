#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import EventLoop

/// How a followed job is printed: on a terminal with colour, a spinner while it starts and
/// a status line with the elapsed time; through a pipe as plain lines; with `--json` as
/// NDJSON events for other programs. Control characters from the agent are shown escaped
/// (see `TerminalText`) unless `raw`.
final class JobOutput {
    enum Mode { case terminal, plain, json }

    let mode: Mode
    let raw: Bool
    /// Whether the status line is drawn (stderr is a terminal and stdout shows lines).
    private let drawsStatus: Bool
    private var statusShown = false
    /// Whether the line the agent is still writing is drawn on the terminal's last row.
    private var partialShown = false
    private var frame = 0
    private var status = "starting"
    private var startedAt: Int?
    private var endedAt: Int?
    private static let spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]

    /// - Parameter live: whether the job is followed as it runs; printing its history
    ///   draws no status line.
    init(json: Bool, raw: Bool = false, live: Bool = true) {
        self.raw = raw
        mode = json ? .json : (isatty(1) == 1 ? .terminal : .plain)
        drawsStatus = live && mode == .terminal && isatty(2) == 1
    }

    /// Prints one event from the server.
    func event(_ value: JSONValue) {
        if mode == .json {
            write(1, JSONWriter.serialize(value) + [0x0A])
            return
        }
        guard let event = JobEvent(json: value) else { return }
        switch event.payload {
        case .started(let job), .status(let job), .completed(let job):
            status = job.status.rawValue
            startedAt = job.startedAt ?? job.createdAt
            endedAt = job.endedAt
        default:
            break
        }
        guard let line = LogPrinter.text(of: event) else { return }
        let text = raw ? line : TerminalText.escaped(line)
        clearStatus()
        clearPartial()
        write(1, Array((mode == .terminal ? Self.colour(event, text) : text).utf8) + [0x0A])
        drawStatus()
    }

    /// The line the agent is still writing (`job:partial`), drawn in place on a terminal
    /// (always escaped: it is redrawn with `\r`) until a finished line replaces it.
    func partial(_ text: String) {
        guard mode == .terminal else { return }
        clearStatus()
        clearPartial()
        guard !text.isEmpty else { return drawStatus() }
        write(1, Array(LogPrinter.oneRow(text, columns: LogPrinter.terminalColumns()).utf8))
        partialShown = true
    }

    private func clearPartial() {
        guard partialShown else { return }
        write(1, Array("\r\u{1B}[2K".utf8))
        partialShown = false
    }

    /// Redraws the spinner and elapsed time (call a few times a second).
    func tick() {
        frame += 1
        drawStatus()
    }

    /// A note for the person at the terminal (stderr), e.g. "reconnecting…".
    func note(_ text: String) {
        clearStatus()
        write(2, Array((text + "\n").utf8))
        drawStatus()
    }

    func finish() {
        clearStatus()
        clearPartial()
    }

    private func drawStatus() {
        // The in-progress line is the sign of life while it shows.
        guard drawsStatus, !partialShown else { return }
        var line = "\u{1B}[2m"
        if status == "starting" || status == "running" {
            line += Self.spinner[frame % Self.spinner.count] + " " + status
        } else {
            line += status
        }
        if let startedAt {
            let seconds = max(0, ((endedAt ?? WallClock.milliseconds()) - startedAt) / 1000)
            line += " · \(seconds / 60 > 0 ? "\(seconds / 60)m " : "")\(seconds % 60)s"
        }
        line += "\u{1B}[0m"
        write(2, Array(("\r\u{1B}[2K" + line).utf8))
        statusShown = true
    }

    private func clearStatus() {
        guard statusShown else { return }
        write(2, Array("\r\u{1B}[2K".utf8))
        statusShown = false
    }

    private static func colour(_ event: JobEvent, _ text: String) -> String {
        let code: String
        switch event.payload {
        case .log(let line):
            switch (line.stream, line.kind) {
            case (.stderr, _): code = "33"
            case (.system, _): code = "2"
            case (_, .tool): code = "36"
            case (_, .error): code = "31"
            case (_, .result): code = "32;1"
            case (_, .thinking): code = "2;3"
            case (_, .toolResult): code = "2"
            default: return text
            }
        case .completed(let job): code = job.status == .done ? "32" : "31"
        default: code = "2"
        }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = try? FileDescriptor.writeAll(fd, $0) }
    }
}
