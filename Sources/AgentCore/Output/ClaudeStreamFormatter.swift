import Foundation

/// Claude Code `-p --output-format stream-json --verbose --include-partial-messages`
/// (FORMATS.md §1), as the real CLI writes it (fixtures recorded from it in
/// `Tests/claude/fixtures`).
///
/// What a user must see, and where it comes from:
/// - assistant text live, line by line, from `stream_event` text deltas (`StreamingTextLines`);
///   the complete `assistant` line that follows adds only what the deltas had not;
/// - retries while the API is overloaded (`system/api_retry`), as they happen;
/// - tool results in the order of their calls, matched by `tool_use_id` (parallel calls finish
///   in any order), a failed command's first error line, permission denials as such;
/// - one summary line for the whole run, even when a background subagent makes the CLI
///   report a second `result`, and an API error that ended the run once, with its status.
public struct ClaudeStreamFormatter: AgentOutputFormatter {
    public private(set) var report = AgentReport()
    public var reportsCostAsRunningTotal: Bool { true }
    /// Each message the CLI takes starts a turn with a `system/init`; each turn ends with a
    /// `result` (a background subagent's notification starts one more, answered the same way).
    public var answeredEveryMessage: Bool { report.resultCount > 0 && report.resultCount >= turnsStarted && backgroundTasks.isEmpty }
    private var recentMessageIDs: [String] = []

    /// Streamed text blocks whose complete `assistant` line has not arrived yet, oldest first.
    private var streams: [(messageID: String, text: StreamingTextLines)] = []
    /// Streams ended to make room, by message id, for their assistant line to complete.
    private var ended: [String: StreamingTextLines] = [:]
    private var endedOrder: [String] = []
    static let maxOpenStreams = 32
    /// The stream whose unfinished line is shown as `partialLine`.
    private var liveStream: String?
    private var currentMessageID = ""

    private var calls = ToolCallOrder()
    private var deniedToolUseIDs: Set<String> = []
    /// Background subagents started and not yet reported done, by task id.
    private var backgroundTasks: [String: String] = [:]
    private var turnsStarted = 0
    /// The user's messages the CLI echoed (`isReplay`) as it took them into a turn, and how
    /// many of them had been taken when the last turn ended.
    private var messagesTaken = 0
    private var sawReplay = false
    private var messagesAnsweredAtResult = 0
    public var messagesAnswered: Int? { sawReplay ? messagesAnsweredAtResult : nil }
    private var summaryOwed = false
    /// The text of an API error the CLI reported as a synthetic assistant message: shown once,
    /// in the summary line, not as prose.
    private var apiErrorText: String?

    public init() {}

    public var partialLine: LogLine? {
        guard let liveStream else { return nil }
        return streams.last { $0.messageID == liveStream }?.text.partial
    }

    public func keepsRawEvent(_ event: JSONValue) -> Bool {
        switch event["type"]?.stringValue {
        case "stream_event": false
        case "system": event["subtype"]?.stringValue != "thinking_tokens"
        default: true
        }
    }

    public mutating func format(event: JSONValue) -> [LogLine] {
        if let sessionId = event["session_id"]?.stringValue, report.sessionId == nil {
            report.sessionId = sessionId
        }
        switch event["type"]?.stringValue {
        case "system": return system(event)
        case "stream_event": return streamEvent(event)
        case "assistant": return assistant(event)
        case "user": return user(event)
        case "result": return result(event)
        case "control_request":
            // A permission prompt (`--permission-prompt-tool stdio`): agentgate answers it.
            guard event["request"]?["subtype"]?.stringValue == "can_use_tool" else { return [] }
            return finishStreams() + [LogLine(.stdout, .info, "? permission for \(Self.permissionTitle(event["request"]))")]
        case "rate_limit_event":
            let status = event["rate_limit_info"]?["status"]?.stringValue ?? "unknown"
            return status == "allowed" ? [] : [LogLine(.stdout, .info, "rate limit: \(status)")]
        default: return []
        }
    }

    /// What a `can_use_tool` request asks for: the tool and what it says it does ("Write
    /// notes.txt", "Bash: rm -rf build").
    public static func permissionTitle(_ request: JSONValue?) -> String {
        let tool = request?["display_name"]?.stringValue ?? request?["tool_name"]?.stringValue ?? "a tool"
        guard let description = request?["description"]?.stringValue, !description.isEmpty else { return tool }
        return tool + " " + Summary.firstLine(description, limit: 200)
    }

    /// Ends every open text stream: their unfinished lines, as lines.
    private mutating func finishStreams() -> [LogLine] {
        var lines: [LogLine] = []
        for index in streams.indices { lines += streams[index].text.finish() }
        streams.removeAll()
        liveStream = nil
        return lines
    }

    public mutating func finish() -> [LogLine] {
        var lines = finishStreams()
        lines += calls.flushAll()
        if summaryOwed || (report.resultCount == 0 && apiErrorText != nil) {
            if report.resultCount == 0, let apiErrorText {
                report.isError = true
                report.resultText = apiErrorText
            }
            lines.append(summaryLine())
            summaryOwed = false
        }
        return lines
    }

    private static func prefix(_ event: JSONValue) -> String {
        event["parent_tool_use_id"]?.stringValue != nil ? "  ⋮ " : ""
    }

    // MARK: system

    private mutating func system(_ event: JSONValue) -> [LogLine] {
        switch event["subtype"]?.stringValue {
        case "init":
            turnsStarted += 1
            // A background subagent's notification starts a second turn in the same session:
            // it is the same run, so its session line is not repeated.
            if turnsStarted > 1, event["session_id"]?.stringValue == report.sessionId { return [] }
            if let id = event["session_id"]?.stringValue { report.sessionId = id }
            if let model = event["model"]?.stringValue { report.model = model }
            var parts: [String] = []
            if let id = report.sessionId { parts.append("session \(id)") }
            if let model = report.model { parts.append("model \(model)") }
            if let mode = event["permissionMode"]?.stringValue { parts.append("permissions \(mode)") }
            return [LogLine(.stdout, .info, parts.joined(separator: " · "))]
        case "api_retry":
            return [LogLine(.stdout, .error, Self.retryLine(event))]
        case "permission_denied":
            let tool = event["tool_name"]?.stringValue ?? "tool"
            var released: [LogLine] = []
            if let id = event["tool_use_id"]?.stringValue {
                deniedToolUseIDs.insert(id)
                released = calls.skip(id)
            }
            let message = event["message"]?.stringValue.map { ": " + Summary.firstLine($0) } ?? ""
            return [LogLine(.stdout, .error, Self.prefix(event) + "⊘ \(tool) denied\(message)")] + released
        case "task_started":
            if event["is_backgrounded"]?.boolValue == true, let task = event["task_id"]?.stringValue {
                backgroundTasks[task] = event["description"]?.stringValue ?? "subagent"
            }
            return []
        case "task_notification":
            let task = event["task_id"]?.stringValue ?? ""
            let description = backgroundTasks.removeValue(forKey: task) ?? event["description"]?.stringValue ?? "subagent"
            let status = event["status"]?.stringValue ?? "done"
            let summary = event["summary"]?.stringValue.map { ": " + Summary.firstLine($0) } ?? ""
            let kind: LogLine.Kind = status == "completed" ? .toolResult : .error
            return [LogLine(.stdout, kind, "  ⋮ ← subagent \(description) \(status)\(summary)")]
        case "hook_response":
            let name = event["hook_name"]?.stringValue ?? "hook"
            let outcome = event["outcome"]?.stringValue ?? event["exit_code"].map { "exit \(JSONWriter.string($0))" } ?? "done"
            return [LogLine(.stdout, .info, "hook \(name): \(outcome)")]
        case "compact_boundary":
            return [LogLine(.stdout, .info, "(context compacted)")]
        default:
            return []
        }
    }

    /// "API overloaded (529), retry 2 of 10 in 4 s".
    static func retryLine(_ event: JSONValue) -> String {
        let status = event["error_status"]?.intValue
        let what: String
        switch status {
        case 529?: what = "API overloaded (529)"
        case 429?: what = "API rate limit (429)"
        case let code?: what = "API error (\(code))"
        case nil: what = "API unreachable" + (event["error"]?.stringValue.map { " (\($0))" } ?? "")
        }
        var line = what
        if let attempt = event["attempt"]?.intValue {
            line += ", retry \(attempt)"
            if let total = event["max_retries"]?.intValue { line += " of \(total)" }
        }
        if let delay = event["retry_delay_ms"]?.intValue { line += " in " + seconds(delay) }
        return line
    }

    // MARK: streamed text

    private mutating func streamEvent(_ event: JSONValue) -> [LogLine] {
        guard let inner = event["event"] else { return [] }
        switch inner["type"]?.stringValue {
        case "message_start":
            currentMessageID = inner["message"]?["id"]?.stringValue ?? ""
        case "content_block_start" where inner["content_block"]?["type"]?.stringValue == "text":
            let id = event["api_message_id"]?.stringValue ?? currentMessageID
            streams.append((id, StreamingTextLines(prefix: Self.prefix(event))))
            liveStream = id
            // Bounded: a stream whose assistant line never came is ended (its text so far
            // stored) to make room, and its assistant line, if it comes, is matched by id.
            if streams.count > Self.maxOpenStreams {
                var oldest = streams.removeFirst()
                let lines = oldest.text.finish()
                ended[oldest.messageID] = oldest.text
                endedOrder.append(oldest.messageID)
                if endedOrder.count > Self.maxOpenStreams { ended[endedOrder.removeFirst()] = nil }
                return lines
            }
        case "content_block_delta" where inner["delta"]?["type"]?.stringValue == "text_delta":
            let id = event["api_message_id"]?.stringValue ?? currentMessageID
            guard let index = streams.lastIndex(where: { $0.messageID == id }) else { return [] }
            liveStream = id
            return streams[index].text.append(inner["delta"]?["text"]?.stringValue ?? "")
        default:
            break
        }
        return []
    }

    // MARK: assistant

    /// A main-agent message not seen before is a model call: one per message, though each
    /// of its content blocks comes as an event of its own. The last few ids are kept (blocks
    /// of one message arrive together), not all of them.
    private mutating func countTurn(_ messageID: String, subagent: Bool) {
        guard !subagent, !messageID.isEmpty, !recentMessageIDs.contains(messageID) else { return }
        recentMessageIDs.append(messageID)
        if recentMessageIDs.count > 8 { recentMessageIDs.removeFirst() }
        report.streamedTurns = AgentReport.adding(1, to: report.streamedTurns)
    }

    private mutating func assistant(_ event: JSONValue) -> [LogLine] {
        let message = event["message"]
        if let model = message?["model"]?.stringValue, report.model == nil, model != "<synthetic>" { report.model = model }
        if event["is_api_error_message"]?.boolValue == true || event["error"] != nil && message?["model"]?.stringValue == "<synthetic>" {
            apiErrorText = (message?["content"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
            report.apiErrorStatus = event["api_error_status"]?.intValue ?? report.apiErrorStatus
            return []
        }
        let prefix = Self.prefix(event)
        let messageID = message?["id"]?.stringValue ?? ""
        countTurn(messageID, subagent: !prefix.isEmpty)
        var lines: [LogLine] = []
        for block in message?["content"]?.arrayValue ?? [] {
            switch block["type"]?.stringValue {
            case "text":
                let text = block["text"]?.stringValue ?? ""
                // The stream of this block: by message id, or (a transcript whose deltas name
                // another message) the only open one of the same agent.
                let sameAgent = streams.indices.filter { streams[$0].text.prefix == prefix }
                if let index = streams.firstIndex(where: { $0.messageID == messageID }) ?? (sameAgent.count == 1 ? sameAgent.first : nil) {
                    lines += streams[index].text.complete(with: text)
                    let id = streams[index].messageID
                    streams.remove(at: index)
                    if liveStream == id, !streams.contains(where: { $0.messageID == id }) { liveStream = nil }
                } else if var stream = ended.removeValue(forKey: messageID) {
                    endedOrder.removeAll { $0 == messageID }
                    lines += stream.complete(with: text)
                } else {
                    lines += LogLine.lines(.text, text, prefix: prefix)
                }
            case "tool_use":
                let name = block["name"]?.stringValue ?? "tool"
                if let id = block["id"]?.stringValue { lines += calls.call(id, name: name, message: messageID) }
                lines.append(LogLine(.stdout, .tool, prefix + ToolCallSummary.line(name: name, input: block["input"])))
            case "thinking", "redacted_thinking":
                let thought = block["thinking"]?.stringValue ?? ""
                lines.append(LogLine(.stdout, .thinking, prefix + (thought.isEmpty ? "(thinking)" : "(thinking) " + Summary.firstLine(thought))))
            default:
                break
            }
        }
        return lines
    }

    // MARK: user (tool results)

    private mutating func user(_ event: JSONValue) -> [LogLine] {
        let content = event["message"]?["content"]
        if event["isReplay"]?.boolValue == true {
            // Our own messages, echoed as the CLI takes them (several sent during one turn
            // come back as one, a text block each): the log shows each as it was sent.
            sawReplay = true
            messagesTaken += content?.stringValue != nil ? 1 : (content?.arrayValue ?? []).filter { $0["type"]?.stringValue == "text" }.count
            return []
        }
        let prefix = Self.prefix(event)
        if let text = content?.stringValue {
            return LogLine.lines(.info, text, prefix: prefix + "» ")
        }
        var lines: [LogLine] = []
        for block in content?.arrayValue ?? [] {
            switch block["type"]?.stringValue {
            case "tool_result":
                let id = block["tool_use_id"]?.stringValue ?? ""
                if deniedToolUseIDs.contains(id) { continue }
                let line = Self.toolResultLine(block, meta: event["tool_use_result"], prefix: prefix)
                lines += calls.result(id, line)
            case "text":
                lines += LogLine.lines(.info, block["text"]?.stringValue ?? "", prefix: prefix + "» ")
            default:
                break
            }
        }
        return lines
    }

    static func toolResultLine(_ block: JSONValue, meta: JSONValue?, prefix: String) -> LogLine {
        let text = stripToolUseError(toolResultText(block["content"]))
        if meta?["status"]?.stringValue == "async_launched" || text.hasPrefix("Async agent launched successfully") {
            return LogLine(.stdout, .toolResult, prefix + "← subagent started in the background")
        }
        guard block["is_error"]?.boolValue == true else {
            return LogLine(.stdout, .toolResult, prefix + "← " + (text.isEmpty ? "(no output)" : Summary.firstLine(text)))
        }
        // A failed command: "Exit code 2\n<its output>": the status, then its first error line.
        var lines = TextLines.split(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if let first = lines.first, first.hasPrefix("Exit code "), lines.count > 1 {
            lines.removeFirst()
            let status = "exit code " + first.dropFirst("Exit code ".count)
            return LogLine(.stdout, .error, prefix + "← error (\(status)): " + Summary.firstLine(lines.joined(separator: "\n")))
        }
        return LogLine(.stdout, .error, prefix + "← error: " + Summary.firstLine(text))
    }

    /// `tool_result.content` is a string or a list of `{type: text, text}` blocks.
    static func toolResultText(_ content: JSONValue?) -> String {
        if let text = content?.stringValue { return text }
        return (content?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
    }

    /// Claude wraps tool errors in `<tool_use_error>…</tool_use_error>`, markup meant for the model.
    static func stripToolUseError(_ text: String) -> String {
        var text = text
        for tag in ["<tool_use_error>", "</tool_use_error>"] { text = text.replacingOccurrences(of: tag, with: "") }
        return text
    }

    // MARK: result

    private mutating func result(_ event: JSONValue) -> [LogLine] {
        report.resultCount += 1
        messagesAnsweredAtResult = messagesTaken
        let subtype = event["subtype"]?.stringValue
        // is_error is authoritative: a bad model reports subtype "success" with is_error true.
        let isError = event["is_error"]?.boolValue ?? (subtype.map { $0 != "success" } ?? false)
        // One run, one report: a later result (a background subagent's turn) adds to it, and
        // an error stays the run's outcome.
        if isError || !report.isError {
            report.isError = isError
            report.subtype = subtype
            report.errors = (event["errors"]?.arrayValue ?? []).compactMap(\.stringValue)
            report.endReason = event["terminal_reason"]?.stringValue ?? report.endReason
            report.stopReason = event["stop_reason"]?.stringValue ?? report.stopReason
            report.apiErrorStatus = event["api_error_status"]?.intValue ?? report.apiErrorStatus
            if let text = event["result"]?.stringValue, !text.isEmpty || report.resultText == nil { report.resultText = text }
        }
        report.costUSD = event["total_cost_usd"]?.doubleValue ?? event["cost_usd"]?.doubleValue ?? report.costUSD
        if let turns = event["num_turns"]?.intValue { report.numTurns = AgentReport.adding(turns, to: report.numTurns) }
        if let ms = event["duration_ms"]?.intValue { report.durationMs = AgentReport.adding(ms, to: report.durationMs) }
        report.usage = Self.adding(report.usage, event["usage"])
        for denial in event["permission_denials"]?.arrayValue ?? [] {
            guard let id = denial["tool_use_id"]?.stringValue,
                !report.permissionDenials.contains(where: { $0["toolUseId"]?.stringValue == id })
            else { continue }
            report.permissionDenials.append(.object(["tool": denial["tool_name"], "toolUseId": .string(id)]))
        }
        // The summary waits while the run goes on: a turn started by a background subagent's
        // notification, or a subagent still running, reports a result of its own later.
        if report.resultCount < turnsStarted || !backgroundTasks.isEmpty {
            summaryOwed = true
            return []
        }
        summaryOwed = false
        // The summary is the run's last line: text cut off mid-line goes before it.
        return finishStreams() + calls.flushAll() + [summaryLine()]
    }

    /// Sums the numbers of two `usage` objects (each result reports its own turn's usage).
    static func adding(_ total: JSONValue?, _ usage: JSONValue?) -> JSONValue? {
        guard case .object(let new)? = usage else { return total }
        guard case .object(let old)? = total else { return usage }
        var members = old
        for member in new {
            if let index = members.firstIndex(where: { $0.key == member.key }) {
                if let a = members[index].value.intValue, let b = member.value.intValue {
                    members[index].value = .int(AgentReport.adding(b, to: a))
                }
            } else {
                members.append(member)
            }
        }
        return .object(members)
    }

    /// The run's one summary line: `✓ done`, `⚠ done` when tool calls were denied, or `✗`
    /// with why the run failed.
    private func summaryLine() -> LogLine {
        var facts: [String] = []
        if let ms = report.durationMs { facts.append(Self.seconds(ms)) }
        if let turns = report.numTurns { facts.append("\(turns) turn\(turns == 1 ? "" : "s")") }
        if let cost = report.costUSD { facts.append(Self.dollars(cost)) }
        let tail = facts.isEmpty ? "" : " · " + facts.joined(separator: " · ")
        if report.isError {
            return LogLine(.stdout, .result, "✗ " + failure() + tail)
        }
        let denied = report.permissionDenials.count
        if denied > 0 {
            return LogLine(.stdout, .result, "⚠ done, \(denied) tool call\(denied == 1 ? "" : "s") denied\(tail)")
        }
        return LogLine(.stdout, .result, "✓ done\(tail)")
    }

    private func failure() -> String {
        // An API error that ended the run, with its status when it had one (a connection
        // that failed has none): "API error 500: Internal server error…", said once.
        if report.apiErrorStatus != nil || report.endReason == "api_error" {
            let status = report.apiErrorStatus.map { " \($0)" } ?? ""
            var message = apiErrorText ?? report.resultText ?? report.errors.first ?? ""
            if message.hasPrefix("API Error: ") {
                message = String(message.dropFirst("API Error: ".count))
                if let code = report.apiErrorStatus, message.hasPrefix("\(code) ") { message = String(message.dropFirst("\(code) ".count)) }
            }
            return "API error\(status): " + Summary.firstLine(message, limit: 400)
        }
        let reason = report.errors.first ?? report.resultText ?? ""
        var name = report.endReason.flatMap { $0 == "completed" ? nil : $0 } ?? report.subtype.flatMap { $0 == "success" ? nil : $0 } ?? "error"
        switch name {
        case "error_max_turns", "max_turns": name = "max turns"
        case "error_max_budget_usd": name = "budget"
        default: name = name.replacingOccurrences(of: "_", with: " ")
        }
        return reason.isEmpty ? name : name + ": " + Summary.firstLine(reason)
    }

    static func seconds(_ ms: Int) -> String {
        if ms < 1000 { return "\(ms) ms" }
        if ms % 1000 == 0 { return "\(ms / 1000) s" }
        return String(format: "%.1f s", Double(ms) / 1000)
    }

    static func dollars(_ cost: Double) -> String {
        String(format: "$%.4f", cost)
    }
}

/// Tool results in the order of their calls. Claude runs the calls of one message in parallel
/// and reports each result when it finishes; a result is matched to its call by `tool_use_id`
/// and held until the results of the calls before it (in the same message) are out. With
/// several calls in a message, a result names its call ("← Bash #2: …"). A subagent's calls
/// are messages of their own, so they interleave with the main agent's freely.
///
/// Bounded (attacker trial: one call that never answered held every later result, and each
/// lookup scanned every call): calls are found by id in a dictionary; a message holds at most
/// `maxHeld` results behind a missing one, then gives them out and lets the missing one come
/// when it comes; at most `maxCalls` calls are tracked, the oldest messages dropped first.
struct ToolCallOrder: Sendable {
    private struct Batch: Sendable {
        var calls: [(id: String, name: String)] = []
        var results: [Int: LogLine] = [:]
        /// Calls whose result needs no holding: given out, denied, or skipped over.
        var done: Set<Int> = []
        var next = 0
    }

    static let maxHeld = 16
    static let maxCalls = 1_024

    private var batches: [String: Batch] = [:]
    /// Messages in the order of their first call, to drop the oldest.
    private var order: [String] = []
    private var callsByID: [String: (message: String, index: Int)] = [:]

    mutating func call(_ id: String, name: String, message: String) -> [LogLine] {
        var flushed: [LogLine] = []
        while callsByID.count >= Self.maxCalls, let oldest = order.first {
            flushed += flush(oldest)
        }
        if batches[message] == nil {
            batches[message] = Batch()
            order.append(message)
        }
        callsByID[id] = (message, batches[message]!.calls.count)
        batches[message]!.calls.append((id, name))
        return flushed
    }

    /// The result of call `id`: the lines that can be given out now.
    mutating func result(_ id: String, _ line: LogLine) -> [LogLine] {
        guard let (message, index) = callsByID[id], var batch = batches[message] else { return [line] }
        var line = line
        if batch.calls.count > 1, let arrow = line.text.range(of: "← ") {
            line.text.replaceSubrange(arrow, with: "← \(batch.calls[index].name) #\(index + 1): ")
        }
        // A call skipped over earlier: its result goes out as it comes.
        if index < batch.next {
            batch.done.insert(index)
            batches[message] = batch
            if batch.done.count == batch.calls.count { remove(message) }
            return [line]
        }
        batch.results[index] = line
        batch.done.insert(index)
        batches[message] = batch
        return ready(message)
    }

    /// A call that will have no result line (its permission was denied): the lines that can
    /// be given out now.
    mutating func skip(_ id: String) -> [LogLine] {
        guard let (message, index) = callsByID[id], batches[message] != nil else { return [] }
        batches[message]!.done.insert(index)
        return ready(message)
    }

    /// Every held result, in call order (the run ended).
    mutating func flushAll() -> [LogLine] {
        var lines: [LogLine] = []
        for message in order { lines += flush(message) }
        return lines
    }

    private mutating func ready(_ message: String) -> [LogLine] {
        guard var batch = batches[message] else { return [] }
        var lines: [LogLine] = []
        // Too much held behind a missing result: stop waiting for it.
        if batch.results.count > Self.maxHeld {
            while batch.next < batch.calls.count, !batch.done.contains(batch.next) { batch.next += 1 }
        }
        while batch.next < batch.calls.count, batch.done.contains(batch.next) {
            if let line = batch.results.removeValue(forKey: batch.next) { lines.append(line) }
            batch.next += 1
            if batch.results.count > Self.maxHeld {
                while batch.next < batch.calls.count, !batch.done.contains(batch.next) { batch.next += 1 }
            }
        }
        batches[message] = batch
        // Kept while a call skipped over may still answer (bounded by `maxCalls`).
        if batch.next == batch.calls.count, batch.done.count == batch.calls.count { remove(message) }
        return lines
    }

    /// Gives out a message's held results in call order and forgets it.
    private mutating func flush(_ message: String) -> [LogLine] {
        guard let batch = batches[message] else { return [] }
        let lines = batch.results.keys.sorted().compactMap { batch.results[$0] }
        remove(message)
        return lines
    }

    private mutating func remove(_ message: String) {
        guard let batch = batches.removeValue(forKey: message) else { return }
        for call in batch.calls where callsByID[call.id]?.message == message { callsByID[call.id] = nil }
        order.removeAll { $0 == message }
    }
}
