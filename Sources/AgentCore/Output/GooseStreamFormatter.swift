/// goose `run --output-format stream-json` (FORMATS.md §4). Assistant text streams as many
/// `message` lines sharing one id, so text is held until the id changes or the stream ends.
public struct GooseStreamFormatter: AgentOutputFormatter {
    public private(set) var report = AgentReport()
    private var pendingText = ""
    private var pendingID: JSONValue?

    public init() {}

    public mutating func format(event: JSONValue) -> [LogLine] {
        switch event["type"]?.stringValue {
        case "message":
            return message(event["message"])
        case "notification":
            let text = event["log"]?["message"]?.stringValue ?? event["message"]?.stringValue
            return flushText() + (text.map { [LogLine(.stdout, .info, Summary.firstLine($0))] } ?? [])
        case "model_change":
            report.model = event["model"]?.stringValue ?? report.model
            return flushText() + [LogLine(.stdout, .info, "model \(event["model"]?.stringValue ?? "?")")]
        case "error":
            let message = event["error"]?.stringValue ?? "error"
            report.isError = true
            report.errors.append(message)
            return flushText() + [LogLine(.stdout, .error, "error: " + Summary.firstLine(message))]
        case "complete":
            var usage: [JSONValue.Member] = []
            for key in ["total_tokens", "input_tokens", "output_tokens"] {
                if let value = event[key], !value.isNull { usage.append(.init(key, value)) }
            }
            if !usage.isEmpty { report.usage = .object(usage) }
            return flushText()
        default:
            return []
        }
    }

    public mutating func finish() -> [LogLine] { flushText() }

    private mutating func message(_ message: JSONValue?) -> [LogLine] {
        guard let message else { return [] }
        var lines: [LogLine] = []
        let role = message["role"]?.stringValue
        for block in message["content"]?.arrayValue ?? [] {
            switch block["type"]?.stringValue {
            case "text" where role == "assistant":
                if pendingID != message["id"] || message["id"] == .null { lines += flushText() }
                pendingID = message["id"]
                pendingText += block["text"]?.stringValue ?? ""
            case "toolRequest":
                lines += flushText()
                let call = block["toolCall"]?["value"]
                let name = call?["name"]?.stringValue ?? "tool"
                lines.append(LogLine(.stdout, .tool, ToolCallSummary.line(name: name, input: call?["arguments"])))
            case "toolResponse":
                lines += flushText()
                let value = block["toolResult"]?["value"]
                let contents = value?["content"]?.arrayValue ?? value?.arrayValue ?? []
                let text = contents.compactMap { $0["text"]?.stringValue }.filter { !$0.isEmpty }.first ?? ""
                if value?["isError"]?.boolValue == true || block["toolResult"]?["status"]?.stringValue == "error" {
                    lines.append(LogLine(.stdout, .error, "← error: " + Summary.firstLine(text)))
                } else {
                    lines.append(LogLine(.stdout, .toolResult, "← " + (text.isEmpty ? "(no output)" : Summary.firstLine(text))))
                }
            case "thinking":
                lines += flushText()
                lines.append(LogLine(.stdout, .thinking, "(thinking) " + Summary.firstLine(block["thinking"]?.stringValue ?? "")))
            default:
                break
            }
        }
        return lines
    }

    private mutating func flushText() -> [LogLine] {
        guard !pendingText.isEmpty else { return [] }
        let text = pendingText
        pendingText = ""
        pendingID = nil
        report.resultText = text
        // goose reports provider failures as assistant text and still exits 0.
        if text.hasPrefix("Ran into this error:") {
            report.isError = true
            report.errors.append(text)
            return LogLine.lines(.error, text)
        }
        return LogLine.lines(.text, text)
    }
}
