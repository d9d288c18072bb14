/// Claude Code `-p --output-format stream-json --verbose` (FORMATS.md §1).
public struct ClaudeStreamFormatter: AgentOutputFormatter {
    public private(set) var report = AgentReport()

    public init() {}

    public mutating func format(event: JSONValue) -> [LogLine] {
        if let sessionId = event["session_id"]?.stringValue, report.sessionId == nil {
            report.sessionId = sessionId
        }
        switch event["type"]?.stringValue {
        case "system": return system(event)
        case "assistant": return assistant(event)
        case "user": return user(event)
        case "result": return result(event)
        case "rate_limit_event":
            let status = event["rate_limit_info"]?["status"]?.stringValue ?? "unknown"
            return status == "allowed" ? [] : [LogLine(.stdout, .info, "rate limit: \(status)")]
        // stream_event deltas are followed by the complete assistant line: printing both
        // would show the text twice.
        default: return []
        }
    }

    private mutating func system(_ event: JSONValue) -> [LogLine] {
        switch event["subtype"]?.stringValue {
        case "init":
            if let id = event["session_id"]?.stringValue { report.sessionId = id }
            if let model = event["model"]?.stringValue { report.model = model }
            var parts: [String] = []
            if let id = report.sessionId { parts.append("session \(id)") }
            if let model = report.model { parts.append("model \(model)") }
            if let mode = event["permissionMode"]?.stringValue { parts.append("permissions \(mode)") }
            return [LogLine(.stdout, .info, parts.joined(separator: " · "))]
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

    private mutating func assistant(_ event: JSONValue) -> [LogLine] {
        if let model = event["message"]?["model"]?.stringValue, report.model == nil { report.model = model }
        let prefix = (event["parent_tool_use_id"]?.stringValue != nil) ? "  ⋮ " : ""
        var lines: [LogLine] = []
        for block in event["message"]?["content"]?.arrayValue ?? [] {
            switch block["type"]?.stringValue {
            case "text":
                lines += LogLine.lines(.text, block["text"]?.stringValue ?? "", prefix: prefix)
            case "tool_use":
                let name = block["name"]?.stringValue ?? "tool"
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

    private func user(_ event: JSONValue) -> [LogLine] {
        let prefix = (event["parent_tool_use_id"]?.stringValue != nil) ? "  ⋮ " : ""
        let content = event["message"]?["content"]
        if let text = content?.stringValue {
            return LogLine.lines(.info, text, prefix: prefix + "» ")
        }
        var lines: [LogLine] = []
        for block in content?.arrayValue ?? [] {
            switch block["type"]?.stringValue {
            case "tool_result":
                let text = Self.toolResultText(block["content"])
                if block["is_error"]?.boolValue == true {
                    lines.append(LogLine(.stdout, .error, prefix + "← error: " + Summary.firstLine(text)))
                } else {
                    lines.append(LogLine(.stdout, .toolResult, prefix + "← " + (text.isEmpty ? "(no output)" : Summary.firstLine(text))))
                }
            case "text":
                lines += LogLine.lines(.info, block["text"]?.stringValue ?? "", prefix: prefix + "» ")
            default:
                break
            }
        }
        return lines
    }

    /// `tool_result.content` is a string or a list of `{type: text, text}` blocks.
    static func toolResultText(_ content: JSONValue?) -> String {
        if let text = content?.stringValue { return text }
        return (content?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
    }

    private mutating func result(_ event: JSONValue) -> [LogLine] {
        let subtype = event["subtype"]?.stringValue
        // is_error is authoritative: a bad model reports subtype "success" with is_error true.
        let isError = event["is_error"]?.boolValue ?? (subtype.map { $0 != "success" } ?? false)
        report.isError = isError
        report.subtype = subtype
        report.resultText = event["result"]?.stringValue
        report.errors = (event["errors"]?.arrayValue ?? []).compactMap(\.stringValue)
        report.costUSD = event["total_cost_usd"]?.doubleValue ?? event["cost_usd"]?.doubleValue ?? report.costUSD
        report.numTurns = event["num_turns"]?.intValue ?? report.numTurns
        report.durationMs = event["duration_ms"]?.intValue ?? report.durationMs
        report.usage = event["usage"] ?? report.usage

        var facts: [String] = []
        if let ms = report.durationMs { facts.append(Self.seconds(ms)) }
        if let turns = report.numTurns { facts.append("\(turns) turn\(turns == 1 ? "" : "s")") }
        if let cost = report.costUSD { facts.append(Self.dollars(cost)) }
        let tail = facts.isEmpty ? "" : " · " + facts.joined(separator: " · ")
        if isError {
            var reason = report.errors.first ?? report.resultText ?? subtype ?? "error"
            if let status = event["api_error_status"]?.intValue { reason += " (API status \(status))" }
            return [LogLine(.stdout, .result, "✗ \(subtype ?? "error"): \(Summary.firstLine(reason))\(tail)")]
        }
        return [LogLine(.stdout, .result, "✓ done\(tail)")]
    }

    static func seconds(_ ms: Int) -> String {
        ms < 1000 ? "\(ms) ms" : String(format: "%.1f s", Double(ms) / 1000)
    }

    static func dollars(_ cost: Double) -> String {
        String(format: "$%.4f", cost)
    }
}

import Foundation
