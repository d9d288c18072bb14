import Testing

@testable import AgentCore

/// Budgets with no process: what a request asks for, what the operator allows, when one is used up.
@Suite struct JobBudgetTests {
    @Test func theOperatorsDefaultsFillInAndItsMaximaRefuseNamingTheField() throws {
        var policy = BudgetPolicy()
        policy.defaultTimeoutSeconds = 600
        policy.maxTimeoutSeconds = 3_600
        policy.maxMaxTurns = 50
        policy.defaultBudgetUsd = 2
        policy.maxBudgetUsd = 10

        let plain = try policy.apply(to: LaunchRequest(provider: "claude", prompt: "x"))
        #expect(plain.timeoutSeconds == 600 && plain.maxTurns == 50 && plain.maxBudgetUsd == 2)
        // A provider that reports no cost gets no cost budget from a default (it would be refused).
        let codex = try policy.apply(to: LaunchRequest(provider: "codex", prompt: "x"))
        #expect(codex.timeoutSeconds == 600 && codex.maxTurns == 50 && codex.maxBudgetUsd == nil)
        let goose = try policy.apply(to: LaunchRequest(provider: "goose", prompt: "x"))
        #expect(goose.maxBudgetUsd == nil && goose.maxTurns == 50)
        let asked = try policy.apply(to: LaunchRequest(provider: "claude", prompt: "x", maxTurns: 5, timeoutSeconds: 30, maxBudgetUsd: 0.5))
        #expect(asked.timeoutSeconds == 30 && asked.maxTurns == 5 && asked.maxBudgetUsd == 0.5)

        for (request, field, message) in [
            (LaunchRequest(provider: "claude", prompt: "x", timeoutSeconds: 3_601), "timeoutSeconds", "timeoutSeconds must be at most 3600 on this server (serve --max-timeout)"),
            (LaunchRequest(provider: "claude", prompt: "x", maxTurns: 51), "maxTurns", "maxTurns must be at most 50 on this server (serve --max-turns-limit)"),
            (LaunchRequest(provider: "claude", prompt: "x", maxBudgetUsd: 10.5), "maxBudgetUsd", "maxBudgetUsd must be at most 10 on this server (serve --max-budget-usd)"),
        ] {
            #expect(throws: LaunchError(.invalidField, field: field, message)) { try policy.apply(to: request) }
        }
        // No policy: nothing added.
        let none = try BudgetPolicy().apply(to: LaunchRequest(provider: "claude", prompt: "x"))
        #expect(JobBudget(none) == nil)
    }

    @Test func aBudgetIsUsedUpPastItsTurnsOrAtItsCost() {
        let budget = JobBudget(timeoutSeconds: 60, maxTurns: 3, maxBudgetUsd: 0.08)
        #expect(budget.exceeded(turns: 3, cost: 0.0799) == nil)
        #expect(budget.exceeded(turns: 4, cost: nil) == .maxTurns(3))
        #expect(budget.exceeded(turns: nil, cost: 0.08) == .budget(0.08))
        #expect(JobBudget(timeoutSeconds: 5).exceeded(turns: 100, cost: 100) == nil)
        #expect(JobBudget(json: budget.json) == budget)
    }

    @Test func requestsTakeBudgetsWithinTheirLimitsAndProvidersOnlyTheOnesTheyCanHonour() throws {
        let parsed = try LaunchRequest(json: ["provider": "claude", "prompt": "x", "timeoutSeconds": 30, "maxBudgetUsd": 2])
        #expect(parsed.timeoutSeconds == 30 && parsed.maxBudgetUsd == 2)
        #expect(try LaunchRequest(json: parsed.json) == parsed)
        for (field, value) in [("timeoutSeconds", JSONValue.int(0)), ("timeoutSeconds", .int(7 * 86_400 + 1)), ("timeoutSeconds", .string("30")),
                               ("timeoutSeconds", .double(1.5)), ("maxBudgetUsd", .string("1")), ("maxBudgetUsd", .bool(true)),
                               // abs(Int.min) traps: found by review, it crashed the server.
                               ("priority", .int(Int.min)), ("priority", .int(Int.max)), ("priority", .int(1_001))] {
            #expect(throws: LaunchError.self, "\(field)=\(value)") {
                try LaunchRequest(json: .object([.init("provider", "claude"), .init("prompt", "x"), .init(field, value)]))
            }
        }
        #expect(LaunchRequest.dollars(0.08) == "0.08" && LaunchRequest.dollars(2) == "2" && LaunchRequest.dollars(1e-7) == "0")
        #expect(KillReasonText.of(.timeout(30)) == ("stopped: it ran past its timeout of 30 s", "timeout"))
        #expect(KillReasonText.of(.budget(0.5)) == ("stopped: its reported cost reached its budget of $0.5", "budget"))
        #expect(KillReasonText.of(.maxTurns(1)) == ("stopped: it went past its limit of 1 turn", "max_turns"))
    }

    /// An agent's report may lie past any number (attacker trial: two results of 2^63-1
    /// turns trapped the server, and `show` trapped on a cost of 1e300): clamped and shown.
    @Test func countsAnAgentReportsNeverTrap() {
        var claude = StdoutInterpreter(format: .claudeStreamJSON)
        for turns in [Int.max, 1, Int.min, -1] {
            let line = #"{"type":"result","subtype":"success","num_turns":\#(turns),"duration_ms":\#(turns),"usage":{"input_tokens":\#(turns)},"total_cost_usd":1e300}"#
            _ = claude.interpret(LineSplitter.Line(text: line, droppedBytes: 0))
        }
        #expect(claude.report.numTurns == Int.max)
        #expect(claude.report.durationMs == Int.max)
        #expect(claude.report.usage?["input_tokens"]?.intValue == Int.max)
        claude.carry(turns: Int.max, costUSD: nil)
        #expect(claude.report.numTurns == Int.max)
        #expect(LaunchRequest.dollars(1e300) == "1e+300")
        #expect(LaunchRequest.dollars(-0.5) == "-0.5")
        #expect(LaunchRequest.dollars(.infinity) == "inf" && LaunchRequest.dollars(.nan) == "nan")
    }

    /// A re-attached job's turns and cost go on from what the last server recorded: step
    /// costs add to it, a running total (Claude Code's) already includes it.
    @Test func spendingCarriesOverToTheNextServersInterpreter() throws {
        var opencode = StdoutInterpreter(format: .opencodeJSON)
        opencode.carry(turns: 2, costUSD: 0.04)
        _ = opencode.interpret(LineSplitter.Line(text: #"{"type":"step_finish","part":{"cost":0.02}}"#, droppedBytes: 0))
        #expect(opencode.report.numTurns == 3)
        #expect(abs((opencode.report.costUSD ?? 0) - 0.06) < 1e-12)

        var claude = StdoutInterpreter(format: .claudeStreamJSON)
        claude.carry(turns: nil, costUSD: 0.5)
        #expect(claude.report.costUSD == 0.5)
        _ = claude.interpret(LineSplitter.Line(text: #"{"type":"result","subtype":"success","num_turns":4,"total_cost_usd":0.75}"#, droppedBytes: 0))
        #expect(claude.report.costUSD == 0.75)
        #expect(claude.report.numTurns == 4)
    }
}

/// The log text and end reason of a kill reason (internal to the engine).
enum KillReasonText {
    static func of(_ reason: JobManager.KillReason) -> (String, String) { (reason.text, reason.endReason) }
}
