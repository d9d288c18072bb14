/// opencode `run --format json` (FORMATS.md §3): tool events arrive only when a tool finishes.
public struct OpencodeJSONFormatter: AgentOutputFormatter {
    public private(set) var report = AgentReport()

    public init() {}

    public mutating func format(event: JSONValue) -> [LogLine] {
        if report.sessionId == nil, let id = event["sessionID"]?.stringValue { report.sessionId = id }
        let part = event["part"]
        switch event["type"]?.stringValue {
        case "text":
            let text = part?["text"]?.stringValue ?? ""
            report.resultText = text
            return LogLine.lines(.text, text)
        case "reasoning":
            return [LogLine(.stdout, .thinking, "(thinking) " + Summary.firstLine(part?["text"]?.stringValue ?? ""))]
        case "tool_use":
            let tool = part?["tool"]?.stringValue ?? "tool"
            let state = part?["state"]
            var lines = [LogLine(.stdout, .tool, ToolCallSummary.line(name: tool, input: state?["input"]))]
            if state?["status"]?.stringValue == "error" {
                let message = state?["error"]?.stringValue ?? state?["output"]?.stringValue ?? "failed"
                lines.append(LogLine(.stdout, .error, "← error: " + Summary.firstLine(message)))
            } else {
                let output = state?["output"]?.stringValue ?? ""
                lines.append(LogLine(.stdout, .toolResult, "← " + (output.isEmpty ? "(no output)" : Summary.firstLine(output))))
            }
            return lines
        case "step_start":
            report.streamedTurns = AgentReport.adding(1, to: report.streamedTurns)
            return []
        case "step_finish":
            if let cost = part?["cost"]?.doubleValue { report.costUSD = (report.costUSD ?? 0) + cost }
            report.numTurns = AgentReport.adding(1, to: report.numTurns)
            report.usage = part?["tokens"] ?? report.usage
            return []
        case "error":
            let error = event["error"]
            let name = error?["name"]?.stringValue ?? "error"
            let message = error?["data"]?["message"]?.stringValue ?? error?["message"]?.stringValue ?? ""
            report.isError = true
            report.errors.append("\(name): \(message)")
            return [LogLine(.stdout, .error, "✗ \(name): \(Summary.firstLine(message))")]
        case "done":
            let rejected = event["rejected"]?.arrayValue ?? []
            return rejected.isEmpty ? [] : [LogLine(.stdout, .info, "\(rejected.count) permission request(s) auto-rejected")]
        default:
            return []
        }
    }
}
