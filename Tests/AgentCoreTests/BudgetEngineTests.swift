import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import AgentCore

/// Each budget stops a real child, which ends `failed` with the budget as its reason.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BudgetEngineTests {
    func launch(_ harness: EngineHarness, _ provider: String = "claude", script: String, timeout: Int? = nil, maxTurns: Int? = nil,
                budget: Double? = nil, argsFile: String? = nil) throws -> Job {
        var env = ["FAKE_SCRIPT": script]
        if let argsFile { env["FAKE_ARGS_FILE"] = argsFile }
        return try harness.manager.launch(
            LaunchRequest(provider: provider, prompt: "x", env: env, maxTurns: maxTurns, timeoutSeconds: timeout, maxBudgetUsd: budget))
    }

    func expectStopped(_ job: Job?, _ reason: String, _ line: String, _ harness: EngineHarness) {
        #expect(job?.status == .failed)
        #expect(job?.result?["endReason"]?.stringValue == reason)
        #expect(job?.result?["errors"]?[0]?.stringValue?.hasPrefix(line) == true, "\(String(describing: job?.result))")
        #expect(job?.statusLine.contains(": " + line) == true, "\(job?.statusLine ?? "")")
        if let pid = job?.pid { #expect(!processIsRunning(pid)) }
    }

    @Test func aTimeoutStopsTheAgentFromItsStart() throws {
        let harness = try EngineHarness()
        let started = MonotonicClock.milliseconds()
        let job = try launch(harness, script: "echo working; exec sleep 30", timeout: 1)
        let done = harness.waitForCompletion(job.id)
        #expect(MonotonicClock.milliseconds() - started < 5_000)
        expectStopped(done, "timeout", "stopped: it ran past its timeout of 1 s", harness)
        #expect(harness.logLines(of: job.id).contains { $0.text.hasPrefix("timeout of 1 s reached: SIGTERM sent") })
        #expect(done?.budget == JobBudget(timeoutSeconds: 1))
    }

    /// A Claude stream-json run that reports its cost as it goes (stream-json input gives a
    /// result per turn, each with the running total): stopped at the result that reaches the
    /// budget, and the CLI got the budget as its own flag too.
    @Test func aCostBudgetStopsAClaudeRunAtTheResultThatReachesIt() throws {
        let harness = try EngineHarness()
        let args = harness.scratch.path + "/args"
        let result = { (cost: String, turns: Int) in
            #"{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":\#(turns),"total_cost_usd":\#(cost),"session_id":"s1"}"#
        }
        let script = """
            echo '\(result("0.0647", 1))'; sleep 0.2
            echo '\(result("0.0838", 1))'; sleep 0.2
            echo '\(result("0.1200", 1))'; exec sleep 30
            """
        let job = try launch(harness, script: script, budget: 0.08, argsFile: args)
        let done = harness.waitForCompletion(job.id)
        expectStopped(done, "budget", "stopped: its reported cost reached its budget of $0.08", harness)
        #expect(done?.costUsd == 0.0838, "stopped at the result that reached it")
        // Viewers saw the spend as it went: a small stored event per change, that reads back.
        let spends = harness.events(of: job.id).compactMap { event -> Double? in
            if case .spend(_, let cost) = event.payload { cost } else { nil }
        }
        #expect(spends == [0.0647, 0.0838])
        let stored = harness.encoded[job.id]?.compactMap { try? JSONParser.parse($0) }.compactMap(JobEvent.init(json:)) ?? []
        #expect(stored.contains { $0.payload == .spend(turns: 2, costUsd: 0.0838) }, "\(stored.map(\.type))")
        #expect((try? String(contentsOfFile: args, encoding: .utf8))?.contains("--max-budget-usd=0.08") == true)
    }

    /// codex has no turn flag: agentgate counts the turns it reports.
    @Test func aTurnBudgetStopsAnAgentThatReportsTurns() throws {
        let harness = try EngineHarness()
        let turn = #"{"type":"turn.completed","usage":{"input_tokens":10,"output_tokens":2}}"#
        let job = try launch(harness, "codex", script: "echo '\(turn)'; sleep 0.2; echo '\(turn)'; sleep 0.2; echo '\(turn)'; exec sleep 30", maxTurns: 1)
        let done = harness.waitForCompletion(job.id)
        expectStopped(done, "max_turns", "stopped: it went past its limit of 1 turn", harness)
        #expect(done?.turns == 2)
    }

    /// An agent that says when a turn begins is stopped as it begins one too many, before
    /// that turn has run.
    @Test func aTurnBudgetStopsAnAgentAsItBeginsATurnTooMany() throws {
        let harness = try EngineHarness()
        let start = #"{"type":"step_start","part":{"type":"step-start"}}"#
        let finish = #"{"type":"step_finish","part":{"type":"step-finish","cost":0.001}}"#
        let text = { (n: Int) in #"{"type":"text","part":{"text":"step \#(n)"}}"# }
        // Each step's work comes a moment after it begins.
        let script = (1...3).map { "echo '\(start)'; sleep 0.2; echo '\(text($0))'; echo '\(finish)'" }.joined(separator: "; ") + "; exec sleep 30"
        let job = try launch(harness, "opencode", script: script, maxTurns: 2)
        let done = harness.waitForCompletion(job.id)
        expectStopped(done, "max_turns", "stopped: it went past its limit of 2 turns", harness)
        let texts = harness.logLines(of: job.id).map(\.text)
        #expect(texts.contains("step 2") && !texts.contains("step 3"), "\(texts)")
        #expect(done?.turns == 2)
    }

    /// Claude Code stops itself at its --max-turns; one that runs on regardless is stopped
    /// by agentgate's count of the model calls it streams (one call to spare: Claude's own
    /// count differs from its messages by one).
    @Test func aClaudeRunThatIgnoresItsTurnFlagIsStoppedByTheStreamedCalls() throws {
        let harness = try EngineHarness()
        let args = harness.scratch.path + "/args"
        let call = { (n: Int) in
            #"{"type":"assistant","message":{"id":"msg_\#(n)","role":"assistant","content":[{"type":"text","text":"turn \#(n)"}]}}"#
        }
        // Two events of one message are one call.
        let script = (1...5).map { "echo '\(call($0))'; echo '\(call($0))'; sleep 0.1" }.joined(separator: "; ") + "; exec sleep 30"
        let job = try launch(harness, script: script, maxTurns: 2, argsFile: args)
        let done = harness.waitForCompletion(job.id)
        expectStopped(done, "max_turns", "stopped: it went past its limit of 2 turns", harness)
        let texts = harness.logLines(of: job.id).map(\.text)
        #expect(texts.contains("turn 4") && !texts.contains("turn 5"), "\(texts)")
        #expect((try? String(contentsOfFile: args, encoding: .utf8))?.contains("--max-turns=2") == true)
    }

    /// What an agent spent before a restart counts after it: the next server goes on from
    /// the recorded cost (opencode reports it one step at a time), not from zero.
    @Test func spendingBeforeARestartCountsAgainstTheBudgetAfterIt() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-budget-restart")
        let go = data.path + "/go"
        let step = #"{"type":"step_finish","sessionID":"s1","part":{"type":"step-finish","cost":0.02}}"#
        let script = "echo '\(step)'; echo '\(step)'; while [ ! -e '\(go)' ]; do sleep 0.05; done; echo '\(step)'; exec sleep 30"
        func engine() throws -> EngineHarness {
            try EngineHarness(agents: agents, data: data, runner: { loop, path in
                SupervisorRunner(
                    loop: loop, supervisorExecutable: SupervisorRunnerTests.supervisor, jobsDirectory: path + "/jobs",
                    graceMilliseconds: 300, containment: JobContainment(useCgroups: false))
            })
        }
        // This server stops running (kept, not freed: its process handles would kill what
        // it started); the agent goes on under its supervisor.
        let first = try engine()
        let id = try launch(first, "opencode", script: script, budget: 0.05).id
        #expect(first.spin(until: { first.manager.job(id)?.costUsd == 0.04 }))
        first.manager.flushLogs()
        defer { withExtendedLifetime(first) {} }
        let second = try engine()
        _ = try second.manager.recover()
        #expect(second.manager.adopted.map(\.id) == [id])
        data.write("go", "")
        let done = second.waitForCompletion(id)
        expectStopped(done, "budget", "stopped: its reported cost reached its budget of $0.05", second)
        #expect(abs((done?.costUsd ?? 0) - 0.06) < 1e-9)
        #expect(done?.turns == 3)
    }

    @Test func budgetsAnAgentCannotHonourAreRefusedNotDropped() throws {
        let harness = try EngineHarness()
        for provider in ["codex", "goose"] {
            #expect(throws: LaunchError.self) { try launch(harness, provider, script: "true", budget: 1) }
        }
        #expect(harness.manager.jobs.isEmpty)
    }
}

/// A profile launch runs what the operator chose: its model and permission mode on the real
/// command line, its env, its prompt template on stdin.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ProfileEngineTests {
    @Test func aProfileLaunchRunsTheOperatorsChoices() throws {
        let profiles = try LaunchProfile.parse(Array(LaunchProfileTests.file.utf8))
        let harness = try EngineHarness { configuration in
            configuration.profiles = profiles
            configuration.policy.claudePermissionMode = "acceptEdits"
        }
        let files = harness.scratch.path
        // FAKE_* are the harness's --pass-env; MYAPP_TICKET only the profile allows.
        let job = try harness.manager.launch(LaunchRequest(json: [
            "profile": "review", "prompt": "the auth module",
            "env": ["FAKE_SCRIPT": "echo reviewed", "FAKE_ARGS_FILE": .string(files + "/args"), "FAKE_STDIN_FILE": .string(files + "/stdin"),
                    "FAKE_ENV_FILE": .string(files + "/env"), "MYAPP_TICKET": "T-1"],
        ]))
        let done = harness.waitForCompletion(job.id)
        #expect(done?.status == .done && done?.profile == "review" && done?.budget == JobBudget(timeoutSeconds: 600, maxTurns: 40))
        let args = harness.scratch.read("args") ?? ""
        #expect(args.contains("--model=opus") && args.contains("--effort=high") && args.contains("--max-turns=40"), "\(args)")
        #expect(args.contains("--permission-mode=plan") && !args.contains("acceptEdits"), "\(args)")
        #expect(FakeAgents.claudeMessageText(harness.scratch.read("stdin")) == "Review this change. Focus: the auth module")
        let env = harness.scratch.read("env") ?? ""
        #expect(env.contains("MYAPP_MODE=review") && env.contains("MYAPP_TICKET=T-1"), "\(env)")

        // Without the profile, its env key is not the request's to set; an unknown profile is named.
        #expect(throws: LaunchError.self) {
            try harness.manager.launch(LaunchRequest(provider: "claude", prompt: "x", env: ["MYAPP_TICKET": "T-1"]))
        }
        do {
            _ = try harness.manager.launch(LaunchRequest(json: ["profile": "nope", "prompt": "x"]))
            Issue.record("an unknown profile was taken")
        } catch {
            #expect(error.code == .unknownProfile && error.message == "no profile 'nope' on this server; profiles: quick, review")
        }
    }
}
