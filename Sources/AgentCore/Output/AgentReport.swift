/// What an agent's output said about its run, gathered by a formatter as lines go by. It
/// becomes `job.result`, and together with the exit code decides the job's final status.
public struct AgentReport: Sendable, Equatable {
    public var sessionId: String?
    public var model: String?
    /// The final answer (Claude `result.result`, the last codex `agent_message`, …).
    public var resultText: String?
    /// The agent said the run failed, whatever its exit code (Claude `is_error`, codex `turn.failed`).
    public var isError = false
    public var subtype: String?
    public var errors: [String] = []
    public var costUSD: Double?
    public var numTurns: Int?
    /// The turns begun so far, as they streamed (Claude Code's assistant messages, codex
    /// `turn.started`, opencode `step_start`): a turn budget stops an agent as it begins one
    /// too many, not after it has run it. Not part of the result.
    public var streamedTurns: Int?
    public var durationMs: Int?
    public var usage: JSONValue?
    /// Why the run ended, as the agent said (Claude `terminal_reason`: completed, max_turns,
    /// api_error, prompt_too_long…) or as agentgate knows (`killed`).
    public var endReason: String?
    /// The model's last stop reason (end_turn, tool_use, max_tokens…).
    public var stopReason: String?
    /// The HTTP status of the model API error that ended the run.
    public var apiErrorStatus: Int?
    /// Tool calls the permission mode refused: `{tool, toolUseId}`.
    public var permissionDenials: [JSONValue] = []
    /// How many `result` events the run reported (a background subagent adds one).
    public var resultCount = 0
    /// The tool calls the run made, as ACP agents report them: `{id, title, kind, status}`
    /// (the latest status of each; at most `maxToolCalls`).
    public var toolCalls: [JSONValue] = []
    static let maxToolCalls = 500

    public init() {}

    /// True when nothing was learned (plain-text agents).
    public var isEmpty: Bool { self == AgentReport() }

    /// The `job.result` object: camelCase keys, absent fields left out.
    public var json: JSONValue {
        .object([
            "text": resultText.map(JSONValue.string),
            "isError": isEmpty ? nil : .bool(isError),
            "subtype": subtype.map(JSONValue.string),
            "errors": errors.isEmpty ? nil : .array(errors.map(JSONValue.string)),
            "costUsd": costUSD.map(JSONValue.double),
            "numTurns": numTurns.map(JSONValue.int),
            "durationMs": durationMs.map(JSONValue.int),
            "sessionId": sessionId.map(JSONValue.string),
            "model": model.map(JSONValue.string),
            "usage": usage,
            "endReason": endReason.map(JSONValue.string),
            "stopReason": stopReason.map(JSONValue.string),
            "apiErrorStatus": apiErrorStatus.map(JSONValue.int),
            "permissionDenials": permissionDenials.isEmpty ? nil : .array(permissionDenials),
            "toolCalls": toolCalls.isEmpty ? nil : .array(toolCalls),
        ])
    }
}

extension AgentReport {
    /// `total + count` for the counts an agent reports (turns, milliseconds, tokens): one
    /// that lies (2^63, negative) is clamped, never trapped on, and never counts down.
    static func adding(_ count: Int, to total: Int?) -> Int {
        let (sum, overflow) = (total ?? 0).addingReportingOverflow(max(0, count))
        return overflow ? Int.max : sum
    }
}
