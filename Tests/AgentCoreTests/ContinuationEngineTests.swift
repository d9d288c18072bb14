import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// A follow-up to a finished job (issue 17): the agent's session is resumed as the job's next
/// run, through real processes. The fake `claude` answers each stdin message as the real CLI
/// does, and says which session it resumed.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ContinuationEngineTests {
    /// A fresh run writes `lines` answer lines; a resumed one (`--resume=s1` in its argv)
    /// waits for `gate` (when given) and answers `resumed: <text>`. Either ends when its stdin
    /// closes.
    static func resumingAgent(_ scratch: TemporaryDirectory, lines: Int = 3, gate: String? = nil) -> String {
        let wait = gate.map { "while [ ! -e '\(scratch.file($0))' ]; do sleep 0.02; done" } ?? ":"
        scratch.write(
            "resume.sh",
            #"""
            IFS= read -r line
            text=$(printf '%s' "$line" | sed 's/.*"text":"\([^"]*\)".*/\1/')
            echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'
            case "$*" in
              *--resume=s1*)
                \#(wait)
                echo "{\"type\":\"assistant\",\"message\":{\"id\":\"r\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"resumed: $text\"}]}}"
                ;;
              *)
                i=0
                while [ $i -lt \#(lines) ]; do
                  i=$((i+1))
                  echo "{\"type\":\"assistant\",\"message\":{\"id\":\"m$i\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"line $i of the first run, padded to make the spool longer than the next run's\"}]}}"
                done
                ;;
            esac
            echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"s1","total_cost_usd":0.01}'
            while IFS= read -r more; do :; done
            """#)
        return ". '\(scratch.file("resume.sh"))'"
    }

    static func completions(_ harness: EngineHarness, _ id: String) -> Int {
        harness.events(of: id).filter { if case .completed = $0.payload { true } else { false } }.count
    }

    /// Every stored event of the job, checked to be seq 1…last with no gap or repeat.
    static func storedTexts(_ manager: JobManager, _ id: String) -> [String] {
        let events = manager.events(for: id)
        #expect(events.map(\.seq) == Array(1...(manager.job(id)?.lastSeq ?? 0)))
        return events.compactMap { if case .log(let line) = $0.payload, line.stream != .system { line.displayText } else { nil } }
    }

    @Test(arguments: [false, true])
    func aFollowUpToAFinishedJobResumesItsSessionAsTheSameJob(supervised: Bool) throws {
        let harness = try ConversationEngineTests.engine(supervised: supervised)
        let job = try harness.launch(script: Self.resumingAgent(harness.scratch), prompt: "fix the bug")
        let first = try #require(harness.waitForCompletion(job.id))
        #expect(first.status == .done && first.sessionId == "s1" && first.acceptsMessages)
        let seq = try harness.manager.sendMessage(job.id, text: "now the tests")
        #expect(harness.manager.job(job.id)?.status == .running)
        #expect(harness.manager.job(job.id)?.command.contains("--resume=s1") == true)
        #expect(harness.spin(until: { Self.completions(harness, job.id) == 2 }))
        let done = try #require(harness.manager.job(job.id))
        #expect(done.status == .done && done.messages == 1 && done.answered == 2 && done.acceptsMessages)
        #expect(done.lastSeq > first.lastSeq && seq == first.lastSeq + 2)  // job:status, then the user's turn
        let texts = Self.storedTexts(harness.manager, job.id)
        #expect(
            Array(texts.suffix(4)) == ["› now the tests", "session s1 · model fake", "resumed: now the tests", "✓ done · 1 turn · $0.0100"], "\(texts)")
        #expect(texts.filter { $0.hasPrefix("line 1 of the first run") }.count == 1)
        // Its events say so: running again (job:status), then completed a second time.
        let statuses = harness.events(of: job.id).compactMap { if case .status(let job) = $0.payload { job.status } else { nil } }
        #expect(statuses == [.starting, .running])
    }

    /// The job's request (its env with the fake's script) outlives the server; the next run is
    /// re-attached by a server started while it runs, its spools read from their start.
    @Test func aFinishedJobContinuesAfterARestartAndItsNextRunSurvivesAnother() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-continuation-restart")
        let first = try ConversationEngineTests.engine(supervised: true, agents: agents, data: data)
        defer { withExtendedLifetime(first) {} }
        let job = try first.launch(script: Self.resumingAgent(first.scratch, lines: 200, gate: "go"), prompt: "start")
        #expect(first.waitForCompletion(job.id)?.status == .done)
        first.manager.flushLogs()

        let second = try ConversationEngineTests.engine(supervised: true, agents: agents, data: data)
        defer { withExtendedLifetime(second) {} }
        _ = try second.manager.recover()
        #expect(second.manager.job(job.id)?.acceptsMessages == true)
        _ = try second.manager.sendMessage(job.id, text: "go on")
        #expect(second.spin(until: { second.manager.job(job.id)?.status == .running }))
        second.spin(milliseconds: 200)
        second.manager.flushLogs()

        let third = try ConversationEngineTests.engine(supervised: true, agents: agents, data: data)
        _ = try third.manager.recover()
        #expect(third.manager.adopted.map(\.id) == [job.id])
        first.scratch.write("go", "")
        let done = try #require(third.waitForCompletion(job.id))
        #expect(done.status == .done && done.messages == 1)
        let texts = Self.storedTexts(third.manager, job.id)
        #expect(texts.filter { $0 == "resumed: go on" }.count == 1, "\(texts.suffix(5))")
        #expect(texts.filter { $0.hasPrefix("line 200 of the first run") }.count == 1)
        #expect(texts.last == "✓ done · 1 turn · $0.0100")
    }

    @Test func theCompletionHookRunsOncePerRun() throws {
        let dir = TemporaryDirectory("agentgate-continuation-hook")
        let harness = try EngineHarness { $0.onComplete = .init(command: "cat >> '\(dir.file("runs"))'; echo >> '\(dir.file("runs"))'; echo '{}'") }
        let job = try harness.launch(script: Self.resumingAgent(harness.scratch), prompt: "one")
        harness.waitForCompletion(job.id)
        _ = try harness.manager.sendMessage(job.id, text: "two")
        #expect(harness.spin(until: { Self.completions(harness, job.id) == 2 }))
        let runs = try String(contentsOfFile: dir.file("runs"), encoding: .utf8).split(separator: "\n")
        #expect(runs.count == 2)
        #expect(runs.last?.contains("\"messages\":1") == true)
    }

    @Test func aFinishedJobThatCannotBeContinuedIsRefusedWithTheReason() throws {
        let harness = try EngineHarness { $0.admission.maxRunning = 1 }
        // No session reported: nothing to resume.
        let silent = try harness.launch(script: "read -r line; echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"x\"}'")
        #expect(harness.waitForCompletion(silent.id)?.acceptsMessages == false)
        #expect(throws: JobManager.MessageError.self) { try harness.manager.sendMessage(silent.id, text: "more") }
        do {
            _ = try harness.manager.sendMessage(silent.id, text: "more")
        } catch {
            guard case .cannotContinue(let launch) = error else { Issue.record("\(error)"); return }
            #expect(launch.message.contains("no session"))
        }
        // A session id no resume could take (an agent may report anything): not continuable,
        // and kept at most 256 bytes long.
        for reported in ["--help", "../../x", String(repeating: "s", count: 10_000)] {
            let odd = try harness.launch(
                script: #"read -r line; echo '{"type":"result","subtype":"success","is_error":false,"result":"x","session_id":"\#(reported)"}'"#)
            let done = try #require(harness.waitForCompletion(odd.id))
            #expect(done.acceptsMessages == false && (done.sessionId?.utf8.count ?? 0) <= 256 && done.sessionId?.isEmpty == false)
            #expect(throws: JobManager.MessageError.self) { try harness.manager.sendMessage(odd.id, text: "more") }
        }
        // The server at its cap: the follow-up is refused, not queued, and nothing changed.
        let job = try harness.launch(script: Self.resumingAgent(harness.scratch), prompt: "one")
        let first = try #require(harness.waitForCompletion(job.id))
        let busy = try harness.launch(script: "exec sleep 30")
        #expect(harness.spin(until: { harness.manager.job(busy.id)?.status == .running }))
        do {
            _ = try harness.manager.sendMessage(job.id, text: "two")
            Issue.record("a follow-up over the cap was taken")
        } catch {
            guard case .busy = error else { Issue.record("\(error)"); return }
        }
        #expect(harness.manager.job(job.id) == first.compacted())
        #expect(harness.manager.queuedCount == 0)
        try harness.manager.kill(busy.id)
        harness.waitForCompletion(busy.id)
        harness.spin(milliseconds: 50)
        // Room again: it continues.
        _ = try harness.manager.sendMessage(job.id, text: "two")
        #expect(harness.spin(until: { Self.completions(harness, job.id) == 2 }))
    }

    /// In its worktree: the next run works on the same change, and the change recorded when it
    /// ends is the whole of it; once discarded, the job takes no follow-up.
    @Test func theNextRunWorksInTheJobsWorktreeAndItsChangeGrows() throws {
        let harness = try EngineHarness()
        let repository = GitRepository(files: ["notes.txt": "one\n"])
        let script = #"""
            IFS= read -r line
            echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'
            case "$*" in *--resume=s1*) echo three >> notes.txt ;; *) echo two >> notes.txt ;; esac
            echo "{\"type\":\"assistant\",\"message\":{\"id\":\"a\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"in $(pwd)\"}]}}"
            echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"s1"}'
            while IFS= read -r more; do :; done
            """#
        let job = try harness.manager.launch(
            LaunchRequest(provider: "claude", prompt: "two", cwd: repository.path, env: ["FAKE_SCRIPT": script], isolation: .worktree))
        let first = try #require(harness.waitForCompletion(job.id))
        #expect(first.worktree?.state == .ready && first.worktree?.summary == "1 file changed, +1 \u{2212}0")
        _ = try harness.manager.sendMessage(job.id, text: "three")
        #expect(harness.manager.job(job.id)?.worktree?.state == .active)
        #expect(harness.spin(until: { Self.completions(harness, job.id) == 2 }))
        let done = try #require(harness.manager.details(of: job.id))
        #expect(done.status == .done && done.cwd == first.cwd && done.worktree?.path == first.worktree?.path)
        #expect(done.worktree?.state == .ready && done.worktree?.summary == "1 file changed, +2 \u{2212}0")
        #expect(repository.read("notes.txt") == "one\n")  // the checkout itself is untouched
        #expect(harness.logLines(of: job.id).filter { $0.text == "in \(first.cwd ?? "")" }.count == 2)
        let discarded = try WorktreeEngineTests.await(harness) { harness.manager.discardChange(of: job.id, completion: $0) }
        #expect((try? discarded.get())?.worktree?.state == .discarded && harness.manager.job(job.id)?.acceptsMessages == false)
        do {
            _ = try harness.manager.sendMessage(job.id, text: "four")
            Issue.record("a job whose worktree was discarded was continued")
        } catch {
            guard case .cannotContinue(let launch) = error else { Issue.record("\(error)"); return }
            #expect(launch.code == .noWorktree)
        }
    }
}
