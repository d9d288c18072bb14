/// Turns one agent's stdout events into readable log lines and an `AgentReport`.
///
/// Formatters are pure: JSON in, lines out, no I/O, so each one is tested against the real
/// transcripts in the fixtures and golden files. Unknown event types and fields are ignored,
/// because every agent's format keeps growing.
public protocol AgentOutputFormatter: Sendable {
    /// Formats one JSON event from stdout.
    mutating func format(event: JSONValue) -> [LogLine]
    /// Lines held back for context (goose streams text in chunks) at the end of the stream.
    mutating func finish() -> [LogLine]
    var report: AgentReport { get }
    /// `report.sessionId`, read after every line: without copying the whole report.
    var sessionId: String? { get }
    /// The line being streamed now (assistant text not yet ended by a newline): viewers show
    /// it live, and the log line that completes it replaces it. It is never stored.
    var partialLine: LogLine? { get }
    /// Whether a JSON event is kept as `job:event`. Streaming deltas are not: their text
    /// reaches the log as lines, and thousands of them would bloat the stored history.
    func keepsRawEvent(_ event: JSONValue) -> Bool
    /// Whether `report.costUSD` is the agent's own running total (Claude Code's
    /// `total_cost_usd`) rather than a sum of the costs it reported one step at a time.
    var reportsCostAsRunningTotal: Bool { get }
    /// The agent has answered every message it was given (its turn ended with nothing left
    /// running in the background): a conversation's stdin can be closed so that it ends.
    var answeredEveryMessage: Bool { get }
    /// The user messages the agent has answered, when it says which it took (Claude Code with
    /// `--replay-user-messages` echoes each turn's messages, and merges those sent during a
    /// turn into the next one); nil: one message per `result` (`report.resultCount`).
    var messagesAnswered: Int? { get }
    /// The run continues a job whose log shows its earlier turns already: a session the agent
    /// replays when it is loaded (ACP `session/load`) is not shown again.
    mutating func continuesJob()
}

extension AgentOutputFormatter {
    public mutating func finish() -> [LogLine] { [] }
    public var partialLine: LogLine? { nil }
    public func keepsRawEvent(_ event: JSONValue) -> Bool { true }
    public var sessionId: String? { report.sessionId }
    public var reportsCostAsRunningTotal: Bool { false }
    public var answeredEveryMessage: Bool { false }
    public var messagesAnswered: Int? { nil }
    public mutating func continuesJob() {}
}

/// The formatters agentgate knows, by the output format a provider's command line asks for.
public enum OutputFormat: String, Sendable, CaseIterable {
    case claudeStreamJSON = "claude-stream-json"
    case codexJSON = "codex-json"
    case opencodeJSON = "opencode-json"
    case gooseStreamJSON = "goose-stream-json"
    /// An Agent Client Protocol exchange, as `agentgate acp-client` writes it.
    case acpJSONRPC = "acp-jsonrpc"
    /// Picks one of the above from the first JSON event; plain text otherwise.
    case auto

    public func makeFormatter() -> any AgentOutputFormatter {
        switch self {
        case .claudeStreamJSON: ClaudeStreamFormatter()
        case .codexJSON: CodexJSONFormatter()
        case .opencodeJSON: OpencodeJSONFormatter()
        case .gooseStreamJSON: GooseStreamFormatter()
        case .acpJSONRPC: ACPFormatter()
        case .auto: DetectingFormatter()
        }
    }
}

/// The stdout side of a job: line → (log lines, raw event). Lines that are not a JSON object
/// pass through verbatim, since goose and others print banners on the same stream.
public struct StdoutInterpreter: Sendable {
    public struct Output: Sendable {
        public var lines: [LogLine]
        /// The line itself when it was a JSON object (for `job:event`).
        public var rawEvent: String?
    }

    public private(set) var formatter: any AgentOutputFormatter
    /// What the agent had reported spending before this interpreter took over its stream (a
    /// re-attached job's output goes on from a cursor; its turns and cost go on from here).
    private var spentBefore = AgentReport()

    public init(format: OutputFormat) {
        formatter = format.makeFormatter()
    }

    /// See `AgentOutputFormatter.continuesJob`.
    public mutating func continuesJob() { formatter.continuesJob() }

    /// Continues a re-attached job's turns and cost from what the last server recorded.
    public mutating func carry(turns: Int?, costUSD: Double?) {
        spentBefore.numTurns = turns
        spentBefore.costUSD = costUSD
    }

    public var report: AgentReport {
        var report = formatter.report
        guard spentBefore.numTurns != nil || spentBefore.costUSD != nil else { return report }
        if let before = spentBefore.numTurns {
            report.numTurns = AgentReport.adding(before, to: report.numTurns)
            report.streamedTurns = report.streamedTurns.map { AgentReport.adding(before, to: $0) }
        }
        if let before = spentBefore.costUSD {
            // A running total already counts what was spent before; step costs add to it.
            report.costUSD = formatter.reportsCostAsRunningTotal ? max(before, report.costUSD ?? 0) : before + (report.costUSD ?? 0)
        }
        return report
    }
    public var sessionId: String? { formatter.sessionId }

    /// See `AgentOutputFormatter.partialLine`.
    public var partialLine: LogLine? { formatter.partialLine }

    public mutating func interpret(_ line: LineSplitter.Line) -> Output {
        var text = line.text
        if line.droppedBytes == 0, text.utf8.first == UInt8(ascii: "{"),
            let event = try? JSONParser.parse(text), case .object = event
        {
            let lines = formatter.format(event: event)
            return Output(lines: lines, rawEvent: formatter.keepsRawEvent(event) ? text : nil)
        }
        if line.droppedBytes > 0 {
            text += " … [truncated \(line.droppedBytes) bytes]"
        }
        if text.isEmpty { return Output(lines: [], rawEvent: nil) }
        return Output(lines: [LogLine(.stdout, .raw, text)], rawEvent: nil)
    }

    public mutating func finish() -> [LogLine] {
        formatter.finish()
    }
}

/// Used for custom commands: recognises the format from the first JSON event.
struct DetectingFormatter: AgentOutputFormatter {
    private var inner: (any AgentOutputFormatter)?

    var report: AgentReport { inner?.report ?? AgentReport() }
    var reportsCostAsRunningTotal: Bool { inner?.reportsCostAsRunningTotal ?? false }
    var answeredEveryMessage: Bool { inner?.answeredEveryMessage ?? false }
    var sessionId: String? { inner?.sessionId }
    var partialLine: LogLine? { inner?.partialLine }
    func keepsRawEvent(_ event: JSONValue) -> Bool { inner?.keepsRawEvent(event) ?? true }

    mutating func format(event: JSONValue) -> [LogLine] {
        if inner == nil {
            guard let detected = Self.detect(event) else {
                return [LogLine(.stdout, .raw, JSONWriter.string(event))]
            }
            inner = detected.makeFormatter()
        }
        return inner!.format(event: event)
    }

    mutating func finish() -> [LogLine] { inner?.finish() ?? [] }

    static func detect(_ event: JSONValue) -> OutputFormat? {
        if event["msg"] != nil { return .codexJSON }
        guard let type = event["type"]?.stringValue else { return nil }
        switch type {
        case "system", "assistant", "user", "result", "stream_event", "rate_limit_event": return .claudeStreamJSON
        case "thread.started", "turn.started", "turn.completed", "turn.failed", "item.started", "item.updated", "item.completed":
            return .codexJSON
        case "step_start", "step_finish", "tool_use", "text", "reasoning": return event["sessionID"] != nil ? .opencodeJSON : nil
        case "message", "notification", "complete", "model_change": return .gooseStreamJSON
        default: return nil
        }
    }
}
