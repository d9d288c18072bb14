/// An Agent Client Protocol exchange (FORMATS.md §5): the JSON-RPC 2.0 messages between
/// agentgate's ACP client (`agentgate acp-client`) and the agent, one per line, both ways, as
/// the client writes them to its stdout (and as the recorded transcripts hold them).
///
/// Which side sent a line is told by its method (`initialize`, `session/new`, `session/load`,
/// `session/prompt`, `session/cancel` are the client's; `session/update`,
/// `session/request_permission`, `fs/*`, `terminal/*` the agent's) and, for a response, by the
/// request it answers: the two sides number their requests independently, so a response that
/// carries a permission outcome answers the agent's request, any other the client's.
///
/// What a user sees: message chunks as streamed text (live, like Claude's deltas), thoughts,
/// tool calls with their title and how they ended, the plan when it changes, each permission
/// request and its answer, and one summary line per prompt with its stop reason.
public struct ACPFormatter: AgentOutputFormatter {
    public private(set) var report = AgentReport()
    /// The client's requests awaiting a response, by id: their method.
    private var clientRequests: [String: String] = [:]
    /// The agent's permission requests awaiting the client's answer, by id: the tool's title
    /// and the options' names by id.
    private var permissionRequests: [String: (title: String, options: [String: String])] = [:]
    /// Tool calls' titles by id (updates carry only what changed).
    private var toolTitles: [String: String] = [:]
    private var message = StreamingTextLines()
    private var thought = StreamingTextLines(kind: .thinking)
    /// The text of the prompt being answered, for the result.
    private var answer = ""
    private var lastPlan: [String] = []
    private var promptsPending = 0
    /// A `session/load` is under way: what the agent sends now are the session's earlier turns.
    private var loading = false
    /// Whether those are shown (not when the job's own log has them: a continued job).
    private var showsLoadedTurns = true
    static let maxTrackedIDs = 1_024

    public init() {}

    public mutating func continuesJob() { showsLoadedTurns = false }

    public var partialLine: LogLine? { message.partial }

    public var answeredEveryMessage: Bool { report.resultCount > 0 && promptsPending == 0 }

    /// Streamed chunks reach the log as lines: the raw notifications would fill the history.
    public func keepsRawEvent(_ event: JSONValue) -> Bool {
        guard event["method"]?.stringValue == "session/update" else { return true }
        switch event["params"]?["update"]?["sessionUpdate"]?.stringValue {
        case "agent_message_chunk", "agent_thought_chunk", "user_message_chunk": return false
        default: return true
        }
    }

    public mutating func format(event: JSONValue) -> [LogLine] {
        if let method = event["method"]?.stringValue {
            if let id = event["id"].map(Self.key) { return request(method, id: id, event["params"]) }
            return notification(method, event["params"])
        }
        guard let id = event["id"].map(Self.key) else { return [] }
        let result = event["result"]
        if result?["outcome"] != nil, let asked = permissionRequests.removeValue(forKey: id) {
            return [permissionAnswer(result?["outcome"], asked)]
        }
        guard let method = clientRequests.removeValue(forKey: id) else { return [] }
        if let error = event["error"] { return failed(method, error) }
        return response(method, result)
    }

    public mutating func finish() -> [LogLine] {
        flushText()
    }

    // MARK: requests

    private mutating func request(_ method: String, id: String, _ params: JSONValue?) -> [LogLine] {
        if method == "session/load" { loading = true }
        switch method {
        case "session/request_permission":
            let call = params?["toolCall"]
            let callID = call?["toolCallId"]?.stringValue ?? ""
            let title = call?["title"]?.stringValue ?? toolTitles[callID] ?? "a tool call"
            var names: [String: String] = [:]
            var shown: [String] = []
            for option in params?["options"]?.arrayValue ?? [] {
                guard let optionID = option["optionId"]?.stringValue else { continue }
                let name = option["name"]?.stringValue ?? optionID
                names[optionID] = name
                shown.append(name)
            }
            if permissionRequests.count < Self.maxTrackedIDs { permissionRequests[id] = (title, names) }
            return flushText() + [LogLine(.stdout, .info, "? permission for \(Summary.firstLine(title)): \(shown.joined(separator: " / "))")]
        case "initialize", "session/new", "session/load", "session/prompt", "authenticate", "session/set_mode":
            if clientRequests.count < Self.maxTrackedIDs { clientRequests[id] = method }
            if method == "session/load", let session = params?["sessionId"]?.stringValue { report.sessionId = session }
            if method == "session/prompt" {
                promptsPending += 1
                answer = ""
            }
            return []
        default:
            // fs/*, terminal/*: capabilities agentgate does not offer (it answers an error).
            return [LogLine(.stdout, .info, "the agent asked for \(method) (not offered)")]
        }
    }

    private func permissionAnswer(_ outcome: JSONValue?, _ asked: (title: String, options: [String: String])) -> LogLine {
        guard outcome?["outcome"]?.stringValue == "selected", let option = outcome?["optionId"]?.stringValue else {
            return LogLine(.stdout, .info, "permission for \(Summary.firstLine(asked.title)): cancelled")
        }
        return LogLine(.stdout, .info, "permission for \(Summary.firstLine(asked.title)): \(asked.options[option] ?? option)")
    }

    // MARK: responses

    private mutating func response(_ method: String, _ result: JSONValue?) -> [LogLine] {
        let said = flushText()
        return said + responseLines(method, result)
    }

    private mutating func responseLines(_ method: String, _ result: JSONValue?) -> [LogLine] {
        switch method {
        case "initialize":
            var parts = ["ACP agent"]
            if let name = result?["agentInfo"]?["name"]?.stringValue {
                parts.append(name + (result?["agentInfo"]?["version"]?.stringValue.map { " " + $0 } ?? ""))
            }
            if let version = result?["protocolVersion"]?.intValue { parts.append("protocol \(version)") }
            return [LogLine(.stdout, .info, parts.joined(separator: " · "))]
        case "session/new":
            guard let session = result?["sessionId"]?.stringValue else { return [] }
            report.sessionId = session
            return [LogLine(.stdout, .info, "session \(session)")]
        case "session/load":
            loading = false
            guard showsLoadedTurns else { return [LogLine(.stdout, .info, "session \(report.sessionId ?? "") resumed")] }
            return [LogLine(.stdout, .info, "session \(report.sessionId ?? "") loaded: its earlier turns are above")]
        case "session/prompt":
            return promptEnded(stopReason: result?["stopReason"]?.stringValue ?? "end_turn", error: nil)
        default:
            return []
        }
    }

    private mutating func failed(_ method: String, _ error: JSONValue) -> [LogLine] {
        if method == "session/load" { loading = false }
        let message = error["message"]?.stringValue ?? "error"
        let code = error["code"]?.intValue.map { " (\($0))" } ?? ""
        if method == "session/prompt" { return promptEnded(stopReason: nil, error: message + code) }
        report.isError = true
        report.errors.append("\(method): \(message)\(code)")
        return flushText() + [LogLine(.stdout, .error, "✗ \(method) failed: \(Summary.firstLine(message))\(code)")]
    }

    /// One prompt answered: its summary line, and the result so far.
    private mutating func promptEnded(stopReason: String?, error: String?) -> [LogLine] {
        var lines = flushText()
        promptsPending = max(0, promptsPending - 1)
        report.resultCount += 1
        report.numTurns = AgentReport.adding(1, to: report.numTurns)
        report.resultText = answer.trimmingCharacters(in: .whitespacesAndNewlines)
        let turns = report.numTurns.map { " · \($0) turn\($0 == 1 ? "" : "s")" } ?? ""
        if let error {
            report.isError = true
            report.errors.append(error)
            report.endReason = "error"
            lines.append(LogLine(.stdout, .result, "✗ the prompt failed: \(Summary.firstLine(error))\(turns)"))
            return lines
        }
        let reason = stopReason ?? "end_turn"
        report.stopReason = reason
        report.endReason = reason
        switch reason {
        case "end_turn":
            report.isError = false
            lines.append(LogLine(.stdout, .result, "✓ done\(turns)"))
        case "cancelled":
            lines.append(LogLine(.stdout, .result, "⊘ cancelled\(turns)"))
        case "refusal":
            report.isError = true
            lines.append(LogLine(.stdout, .result, "✗ the agent refused\(turns)"))
        default:
            lines.append(LogLine(.stdout, .result, "⚠ stopped: \(reason)\(turns)"))
        }
        return lines
    }

    // MARK: notifications

    private mutating func notification(_ method: String, _ params: JSONValue?) -> [LogLine] {
        switch method {
        case "session/update": return update(params?["update"])
        case "session/cancel": return flushText() + [LogLine(.stdout, .info, "cancel sent to the agent")]
        default: return []
        }
    }

    private mutating func update(_ update: JSONValue?) -> [LogLine] {
        guard let update, !loading || showsLoadedTurns else { return [] }
        switch update["sessionUpdate"]?.stringValue {
        case "agent_message_chunk":
            let text = Self.text(of: update["content"])
            answer += text
            return thought.finish() + message.append(text)
        case "agent_thought_chunk":
            return message.finish() + thought.append(Self.text(of: update["content"]))
        case "user_message_chunk":
            // A loaded session's earlier turns, replayed.
            return flushText() + LogLine.lines(.text, Self.text(of: update["content"]), stream: .user)
        case "tool_call":
            let id = update["toolCallId"]?.stringValue ?? ""
            let title = update["title"]?.stringValue ?? "tool"
            if toolTitles.count < Self.maxTrackedIDs || toolTitles[id] != nil { toolTitles[id] = title }
            if report.toolCalls.count < AgentReport.maxToolCalls {
                report.toolCalls.append(.object([
                    "id": .string(String(id.prefix(200))), "title": .string(Summary.firstLine(title)),
                    "kind": update["kind"]?.stringValue.map { .string(String($0.prefix(40))) },
                    "status": .string(String((update["status"]?.stringValue ?? "pending").prefix(40))),
                ]))
            }
            var lines = flushText() + [LogLine(.stdout, .tool, "→ \(Summary.firstLine(title))")]
            if let ended = toolEnded(update, title: title) { lines.append(ended) }
            return lines
        case "tool_call_update":
            let id = update["toolCallId"]?.stringValue ?? ""
            if let title = update["title"]?.stringValue, toolTitles[id] != nil { toolTitles[id] = title }
            if let status = update["status"]?.stringValue, let index = report.toolCalls.lastIndex(where: { $0["id"]?.stringValue == id }) {
                report.toolCalls[index] = report.toolCalls[index].setting("status", to: .string(String(status.prefix(40))))
            }
            guard let ended = toolEnded(update, title: toolTitles[id] ?? update["title"]?.stringValue ?? "tool") else { return [] }
            toolTitles[id] = nil
            return flushText() + [ended]
        case "plan":
            let entries = (update["entries"]?.arrayValue ?? []).map { entry -> String in
                let mark = switch entry["status"]?.stringValue {
                case "completed": "✓"
                case "in_progress": "▸"
                default: "○"
                }
                return "  \(mark) \(Summary.firstLine(entry["content"]?.stringValue ?? ""))"
            }
            guard entries != lastPlan, !entries.isEmpty else { return [] }
            lastPlan = entries
            return flushText() + [LogLine(.stdout, .info, "plan:")] + entries.map { LogLine(.stdout, .info, $0) }
        default:
            return []
        }
    }

    /// `← title: output` once a tool call completed, `✗ title: output` once it failed.
    private func toolEnded(_ update: JSONValue, title: String) -> LogLine? {
        let output = (update["content"]?.arrayValue ?? []).compactMap { item -> String? in
            switch item["type"]?.stringValue {
            case "content": Self.text(of: item["content"])
            case "diff": item["path"]?.stringValue.map { "edited \($0)" }
            default: nil
            }
        }.joined(separator: "\n")
        let tail = output.isEmpty ? "" : ": " + Summary.firstLine(output)
        switch update["status"]?.stringValue {
        case "completed": return LogLine(.stdout, .toolResult, "← \(Summary.firstLine(title))\(tail)")
        case "failed": return LogLine(.stdout, .error, "✗ \(Summary.firstLine(title))\(tail)")
        default: return nil
        }
    }

    private mutating func flushText() -> [LogLine] {
        let lines = thought.finish() + message.finish()
        message = StreamingTextLines()
        thought = StreamingTextLines(kind: .thinking)
        return lines
    }

    private static func text(of content: JSONValue?) -> String {
        guard let content else { return "" }
        switch content["type"]?.stringValue {
        case "text": return content["text"]?.stringValue ?? ""
        case "resource_link": return "[\(content["name"]?.stringValue ?? content["uri"]?.stringValue ?? "resource")]"
        case .some(let other): return "[\(other)]"
        case nil: return content["text"]?.stringValue ?? ""
        }
    }

    /// A JSON-RPC id (a number or a string) as a key.
    private static func key(_ id: JSONValue) -> String {
        if let number = id.intValue { return "n\(number)" }
        return "s" + (id.stringValue ?? JSONWriter.string(id))
    }
}
