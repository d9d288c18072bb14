/// Codex CLI `exec --json`: the thread/turn/item format, and the mid-2025 `{"id","msg"}`
/// format that the same flag used to print (FORMATS.md §2).
public struct CodexJSONFormatter: AgentOutputFormatter {
    public private(set) var report = AgentReport()

    public init() {}

    public mutating func format(event: JSONValue) -> [LogLine] {
        if let msg = event["msg"] { return legacy(msg) }
        switch event["type"]?.stringValue {
        case "thread.started":
            let id = event["thread_id"]?.stringValue
            if let id { report.sessionId = id }
            return [LogLine(.stdout, .info, "session \(id ?? "?")")]
        case "item.started": return itemStarted(event["item"])
        case "item.completed": return itemCompleted(event["item"])
        case "turn.started":
            report.streamedTurns = AgentReport.adding(1, to: report.streamedTurns)
            return []
        case "turn.completed":
            report.usage = event["usage"]
            report.numTurns = AgentReport.adding(1, to: report.numTurns)
            return [LogLine(.stdout, .info, "turn completed" + Self.tokens(event["usage"]))]
        case "turn.failed":
            let message = Self.errorMessage(event["error"]?["message"]?.stringValue ?? "turn failed")
            report.isError = true
            report.errors.append(message)
            return [LogLine(.stdout, .error, "✗ turn failed: \(Summary.firstLine(message))")]
        case "error":
            let message = Self.errorMessage(event["message"]?.stringValue ?? "error")
            return [LogLine(.stdout, .error, "error: \(Summary.firstLine(message))")]
        default:
            // Legacy config-summary line: {"model":…,"sandbox":…}.
            if event["type"] == nil, let model = event["model"]?.stringValue {
                report.model = model
                let sandbox = event["sandbox"]?.stringValue.map { " · sandbox \($0)" } ?? ""
                return [LogLine(.stdout, .info, "model \(model)\(sandbox)")]
            }
            return []
        }
    }

    private func itemStarted(_ item: JSONValue?) -> [LogLine] {
        guard let item else { return [] }
        switch item["type"]?.stringValue {
        case "command_execution":
            return [LogLine(.stdout, .tool, "→ $ " + Summary.oneLine(item["command"]?.stringValue ?? ""))]
        case "mcp_tool_call":
            let name = "\(item["server"]?.stringValue ?? "mcp").\(item["tool"]?.stringValue ?? "tool")"
            return [LogLine(.stdout, .tool, ToolCallSummary.line(name: name, input: item["arguments"]))]
        default:
            return []
        }
    }

    private mutating func itemCompleted(_ item: JSONValue?) -> [LogLine] {
        guard let item else { return [] }
        switch item["type"]?.stringValue {
        case "agent_message":
            let text = item["text"]?.stringValue ?? ""
            report.resultText = text
            return LogLine.lines(.text, text)
        case "reasoning":
            return [LogLine(.stdout, .thinking, "(thinking) " + Summary.firstLine(item["text"]?.stringValue ?? ""))]
        case "command_execution":
            let exit = item["exit_code"]?.intValue
            let status = item["status"]?.stringValue ?? "completed"
            let output = Summary.firstLine(item["aggregated_output"]?.stringValue ?? "")
            let failed = status == "failed" || status == "declined" || (exit ?? 0) != 0
            let head = exit.map { "exit \($0)" } ?? status
            return [LogLine(.stdout, failed ? .error : .toolResult, "← \(head)" + (output.isEmpty ? "" : ": \(output)"))]
        case "file_change":
            let failed = item["status"]?.stringValue == "failed"
            return (item["changes"]?.arrayValue ?? []).map { change in
                let path = change["path"]?.stringValue ?? "?"
                let kind = change["kind"]?.stringValue ?? "update"
                return LogLine(.stdout, failed ? .error : .tool, "→ Edit: \(path) (\(kind))" + (failed ? " failed" : ""))
            }
        case "mcp_tool_call":
            let name = "\(item["server"]?.stringValue ?? "mcp").\(item["tool"]?.stringValue ?? "tool")"
            if let message = item["error"]?["message"]?.stringValue {
                return [LogLine(.stdout, .error, "← \(name) error: \(Summary.firstLine(message))")]
            }
            let text = ClaudeStreamFormatter.toolResultText(item["result"]?["content"])
            return [LogLine(.stdout, .toolResult, "← \(name): " + (text.isEmpty ? "ok" : Summary.firstLine(text)))]
        case "web_search":
            return [LogLine(.stdout, .tool, "→ WebSearch: " + Summary.oneLine(item["query"]?.stringValue ?? ""))]
        case "todo_list":
            let items = item["items"]?.arrayValue ?? []
            return [LogLine(.stdout, .info, "plan:")] + items.map { entry in
                let done = entry["completed"]?.boolValue == true
                return LogLine(.stdout, .info, "  [\(done ? "x" : " ")] \(entry["text"]?.stringValue ?? "")")
            }
        case "error":
            return [LogLine(.stdout, .error, "error: " + Summary.firstLine(item["message"]?.stringValue ?? ""))]
        default:
            return []
        }
    }

    private mutating func legacy(_ msg: JSONValue) -> [LogLine] {
        switch msg["type"]?.stringValue {
        case "agent_reasoning":
            return [LogLine(.stdout, .thinking, "(thinking) " + Summary.firstLine(msg["text"]?.stringValue ?? ""))]
        case "agent_message":
            let text = msg["message"]?.stringValue ?? ""
            report.resultText = text
            return LogLine.lines(.text, text)
        case "exec_command_begin":
            let command = msg["command"]?.arrayValue?.compactMap(\.stringValue) ?? []
            // ["bash", "-lc", "ls -1"] reads best as its script.
            let shown = command.count == 3 && command[1] == "-lc" ? command[2] : command.joined(separator: " ")
            return [LogLine(.stdout, .tool, "→ $ " + Summary.oneLine(shown))]
        case "exec_command_end":
            let exit = msg["exit_code"]?.intValue ?? 0
            let stdout = msg["stdout"]?.stringValue ?? ""
            let output = Summary.firstLine(stdout.isEmpty ? (msg["stderr"]?.stringValue ?? "") : stdout)
            return [LogLine(.stdout, exit == 0 ? .toolResult : .error, "← exit \(exit)" + (output.isEmpty ? "" : ": \(output)"))]
        case "patch_apply_begin":
            return (msg["changes"]?.objectMembers ?? []).map { member in
                let kind = member.value.objectMembers?.first?.key ?? "update"
                return LogLine(.stdout, .tool, "→ Edit: \(member.key) (\(kind))")
            }
        case "patch_apply_end":
            if msg["success"]?.boolValue == false {
                return [LogLine(.stdout, .error, "← patch failed: " + Summary.firstLine(msg["stderr"]?.stringValue ?? ""))]
            }
            return [LogLine(.stdout, .toolResult, "← patch applied")]
        case "error":
            let message = msg["message"]?.stringValue ?? "error"
            report.isError = true
            report.errors.append(message)
            return [LogLine(.stdout, .error, "error: " + Summary.firstLine(message))]
        case "task_complete":
            if let last = msg["last_agent_message"]?.stringValue {
                let alreadyShown = report.resultText == last
                report.resultText = last
                return alreadyShown ? [] : LogLine.lines(.text, last)
            }
            return []
        default:
            return []
        }
    }

    /// Codex often wraps the upstream API's JSON error in a string: show its message.
    static func errorMessage(_ text: String) -> String {
        guard text.hasPrefix("{"), let value = try? JSONParser.parse(text) else { return text }
        return value["error"]?["message"]?.stringValue ?? value["message"]?.stringValue ?? text
    }

    static func tokens(_ usage: JSONValue?) -> String {
        guard let usage, let input = usage["input_tokens"]?.intValue, let output = usage["output_tokens"]?.intValue else { return "" }
        let cached = usage["cached_input_tokens"]?.intValue.map { " (\($0) cached)" } ?? ""
        return " · tokens in \(input)\(cached), out \(output)"
    }
}
