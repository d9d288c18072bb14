import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// Follow-up messages to a running agent (issue 17), through real processes: a fake `claude`
/// that reads `--input-format stream-json` messages from its stdin and answers each one the
/// way the real CLI does (an init, the answer, a result), ending when its stdin closes.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ConversationEngineTests {
    /// The fake's script: the first turn waits for `go`, the second for `go2` (so follow-ups
    /// arrive mid-turn); like the real CLI, a message's turn begins (its init) only once the
    /// turn before it has ended.
    static func conversingAgent(_ scratch: TemporaryDirectory) -> String {
        let go = scratch.file("go")
        let go2 = scratch.file("go2")
        scratch.write(
            "converse.sh",
            #"""
            n=0
            while IFS= read -r line; do
              n=$((n+1))
              text=$(printf '%s' "$line" | sed 's/.*"text":"\([^"]*\)".*/\1/')
              echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'
              if [ $n -eq 1 ]; then while [ ! -e '\#(go)' ]; do sleep 0.02; done; fi
              if [ $n -eq 2 ]; then while [ ! -e '\#(go2)' ]; do sleep 0.02; done; fi
              echo "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_$n\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"answer $n to $text\"}]}}"
              echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"num_turns\":1,\"result\":\"answer $n\",\"session_id\":\"s1\",\"total_cost_usd\":0.0$n}"
            done
            echo "stdin closed after $n messages" >&2
            """#)
        return ". '\(scratch.file("converse.sh"))'"
    }

    static func engine(supervised: Bool, agents: FakeAgents = FakeAgents(), data: TemporaryDirectory = TemporaryDirectory("agentgate-conversation")) throws -> EngineHarness {
        guard supervised else { return try EngineHarness(agents: agents, data: data) }
        return try EngineHarness(agents: agents, data: data, runner: { loop, path in
            SupervisorRunner(
                loop: loop, supervisorExecutable: SupervisorRunnerTests.supervisor, jobsDirectory: path + "/jobs", graceMilliseconds: 300,
                containment: JobContainment(useCgroups: false))
        })
    }

    /// The texts of a job's log, the user's turns marked `›`.
    static func transcript(_ harness: EngineHarness, _ id: String) -> [String] {
        harness.logLines(of: id).filter { $0.stream != .system }.map(\.displayText)
    }

    @Test(arguments: [false, true])
    func aFollowUpSentMidTurnIsAnsweredAndTheJobEndsAfterIt(supervised: Bool) throws {
        let harness = try Self.engine(supervised: supervised)
        let job = try harness.launch(script: Self.conversingAgent(harness.scratch), prompt: "fix the bug")
        #expect(harness.spin(until: { harness.logLines(of: job.id).contains { $0.text.contains("session s1") } }))
        #expect(harness.manager.job(job.id)?.acceptsMessages == true)
        let seq = try harness.manager.sendMessage(job.id, text: "now also fix the tests")
        #expect(harness.events(of: job.id).last?.seq == seq)
        harness.scratch.write("go", "")
        // The first turn ended before the follow-up's began: its stdin stays open for it, and
        // for one more sent while it is answered.
        #expect(harness.spin(until: { harness.logLines(of: job.id).contains { $0.text == "✓ done · 1 turn · $0.0100" } }))
        harness.spin(milliseconds: 100)
        #expect(harness.manager.job(job.id)?.acceptsMessages == true && harness.manager.job(job.id)?.answered == 1)
        _ = try harness.manager.sendMessage(job.id, text: "and the docs")
        harness.scratch.write("go2", "")
        let done = try #require(harness.waitForCompletion(job.id))
        // Ended, with a session to resume: the next message continues it (ContinuationEngineTests).
        #expect(done.status == .done && done.messages == 2 && done.answered == 3 && done.acceptsMessages)
        #expect(
            Self.transcript(harness, job.id) == [
                "session s1 · model fake", "› now also fix the tests", "answer 1 to fix the bug", "✓ done · 1 turn · $0.0100",
                "› and the docs", "answer 2 to now also fix the tests", "✓ done · 2 turns · $0.0200", "answer 3 to and the docs",
                "✓ done · 3 turns · $0.0300", "[stderr] stdin closed after 3 messages",
            ])
        #expect(done.result?["text"]?.stringValue == "answer 3")
    }

    @Test func withNoFollowUpTheAgentsStdinClosesAfterItsAnswer() throws {
        let harness = try Self.engine(supervised: true)
        harness.scratch.write("go", "")
        let job = try harness.launch(script: Self.conversingAgent(harness.scratch), prompt: "just this")
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done && done.messages == 0)
        #expect(Self.transcript(harness, job.id).last == "[stderr] stdin closed after 1 messages")
        // The supervisor was told, and copied the one message.
        let agent = harness.data.path + "/jobs/\(job.id)/agent"
        #expect(FileManager.default.fileExists(atPath: agent + "/input.closed"))
        #expect(FakeAgents.claudeMessageText(try? String(contentsOfFile: agent + "/input", encoding: .utf8)) == "just this")
    }

    /// A client cannot pile messages up: at most `maxPendingMessages` wait unanswered.
    @Test func messagesWaitingForTheAgentAreBounded() throws {
        let harness = try Self.engine(supervised: false)
        let job = try harness.launch(script: Self.conversingAgent(harness.scratch))
        #expect(harness.spin(until: { harness.manager.job(job.id)?.acceptsMessages == true }))
        for n in 1..<JobManager.maxPendingMessages { _ = try harness.manager.sendMessage(job.id, text: "message \(n)") }
        #expect(throws: JobManager.MessageError.self) { try harness.manager.sendMessage(job.id, text: "one too many") }
        #expect(harness.manager.job(job.id)?.messages == JobManager.maxPendingMessages - 1)
        try harness.manager.kill(job.id)
        harness.waitForCompletion(job.id)
    }

    @Test func messagesThatCannotBeTakenAreRefusedWithTheReason() throws {
        let harness = try Self.engine(supervised: false)
        #expect(throws: JobManager.MessageError.unknownJob) { try harness.manager.sendMessage("0123456789abcdef", text: "hi") }
        let codex = try harness.launch("codex", script: "exec sleep 5")
        #expect(throws: JobManager.MessageError.notConversational(provider: "codex")) { try harness.manager.sendMessage(codex.id, text: "hi") }
        let claude = try harness.launch(script: Self.conversingAgent(harness.scratch))
        #expect(throws: JobManager.MessageError.invalidText("text is empty")) { try harness.manager.sendMessage(claude.id, text: " \n\t") }
        let huge = String(repeating: "x", count: LaunchRequest.maxPromptBytes + 1)
        #expect(throws: JobManager.MessageError.self) { try harness.manager.sendMessage(claude.id, text: huge) }
        // Nothing refused reached the log.
        #expect(!harness.logLines(of: claude.id).contains { $0.stream == .user })
        try harness.manager.kill(codex.id)
        try harness.manager.kill(claude.id)
        harness.waitForCompletion(codex.id)
        harness.waitForCompletion(claude.id)
    }

    /// The supervisor holds the agent's stdin: a server that stops sends no EOF, and the next
    /// one sends the follow-up through the same stdin.
    @Test func aFollowUpReachesTheAgentAfterAServerRestart() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-conversation-restart")
        let first = try Self.engine(supervised: true, agents: agents, data: data)
        defer { withExtendedLifetime(first) {} }
        let job = try first.launch(script: Self.conversingAgent(first.scratch), prompt: "start")
        #expect(first.spin(until: { first.logLines(of: job.id).contains { $0.text.contains("session s1") } }))
        first.manager.flushLogs()
        let second = try Self.engine(supervised: true, agents: agents, data: data)
        _ = try second.manager.recover()
        #expect(second.manager.adopted.map(\.id) == [job.id])
        #expect(second.manager.job(job.id)?.acceptsMessages == true)
        _ = try second.manager.sendMessage(job.id, text: "after the restart")
        first.scratch.write("go", "")
        first.scratch.write("go2", "")
        let done = try #require(second.waitForCompletion(job.id))
        #expect(done.status == .done && done.messages == 1)
        let texts = Self.transcript(second, job.id)
        #expect(texts.contains("answer 1 to start") && texts.contains("answer 2 to after the restart"), "\(texts)")
        #expect(texts.last == "[stderr] stdin closed after 2 messages", "\(texts)")
    }
}
