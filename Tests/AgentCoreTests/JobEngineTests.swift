import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import AgentCore

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct JobEngineTests {
    // MARK: 3. spawning, 5. events

    @Test func aClaudeJobStreamsFormattedLinesAndRecordsItsResult() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: FakeAgents.replay("claude-stream-json-bash-ls-assembled.jsonl"))
        #expect(job.status == .running)
        #expect(job.pid != nil && job.pgid == job.pid)
        #expect(job.processStartTime != nil)
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(done.exitCode == 0)
        #expect(done.sessionId == "40e7b02d-c0f9-4876-9010-f514d4eb0603")
        #expect(done.model == "claude-opus-4-5-20251101")
        #expect(done.result?["costUsd"] == .double(0.24722425))
        #expect(done.result?["numTurns"] == 2)
        #expect(done.result?["text"] == "Here are the files in the current directory.")

        let events = harness.events(of: job.id)
        #expect(events.map(\.seq) == Array(1...events.count))
        #expect(events.first?.type == "job:started")
        #expect(events.last?.type == "job:completed")
        #expect(events.filter { $0.type == "job:event" }.count == 4)
        let texts = harness.logLines(of: job.id).map(\.text)
        #expect(texts.contains("→ Bash: ls -la"))
        #expect(texts.contains { $0.hasPrefix("✓ done") })
    }

    @Test func thePromptArrivesOnStdinAndTheJobEnvironmentIsSet() throws {
        let harness = try EngineHarness()
        let stdinFile = harness.scratch.file("stdin")
        let envFile = harness.scratch.file("env")
        let prompt = String(repeating: "long prompt line\n", count: 40_000)  // 680 KB: more than a pipe holds
        let job = try harness.launch(
            script: "true", prompt: prompt, env: ["FAKE_STDIN_FILE": stdinFile, "FAKE_ENV_FILE": envFile, "EXTRA": "x y"])
        #expect(harness.waitForCompletion(job.id)?.status == .done)
        // Claude takes it as a stream-json user message (its stdin stays open for follow-ups).
        #expect(FakeAgents.claudeMessageText(harness.scratch.read("stdin")) == prompt)
        let env = harness.scratch.read("env") ?? ""
        #expect(env.contains("AGENTGATE_JOB_ID=\(job.id)\n"))
        #expect(env.contains("AGENTGATE_URL=http://127.0.0.1:7777\n"))
        #expect(env.contains("EXTRA=x y\n"))
    }

    @Test func aNonZeroExitFailsTheJobAndKeepsTheStderrTail() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: "echo 'fatal: no credentials' >&2; exit 3")
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .failed)
        #expect(done.exitCode == 3)
        #expect(done.errorTail == "fatal: no credentials\n")
        #expect(harness.logLines(of: job.id).contains(LogLine(.stderr, .raw, "fatal: no credentials")))
    }

    @Test func anAgentThatReportsAnErrorFailsEvenWithExitZero() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: FakeAgents.replay("claude-stream-json-bad-model-result-only.jsonl"))
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.exitCode == 0)
        #expect(done.status == .failed)
        #expect(done.result?["isError"] == true)
    }

    @Test func aFailedSpawnEndsTheJobFailedWithTheErrnoText() throws {
        let agents = FakeAgents(["codex"])
        // Passes `--version` detection through a shell, but cannot be exec'd itself.
        agents.installRaw("claude", "#!/nonexistent/interpreter\n")
        let harness = try EngineHarness(agents: agents)
        // Detection ran the broken claude: it is found but unavailable.
        #expect(throws: LaunchError.self) { try harness.launch(script: "true") }

        let capabilities = harness.manager.detector.current()
        #expect(capabilities.providers.first { $0.id == "claude" }?.path != nil)
        #expect(capabilities.providers.first { $0.id == "claude" }?.available == false)

        // A command whose interpreter vanishes between probe and launch fails at spawn.
        let codexPath = agents.directory.file("codex")
        _ = harness.manager.detector.current()
        try "#!/nonexistent/interpreter\n".write(toFile: codexPath, atomically: false, encoding: .utf8)
        let job = try harness.manager.launch(LaunchRequest(provider: "codex", prompt: "hi"))
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .failed)
        #expect(done.errorTail?.contains("No such file or directory") == true)
        #expect(harness.events(of: job.id).map(\.type) == ["job:started", "job:log", "job:completed"])
    }

    // MARK: 4. output

    @Test func aFiveMiBLineIsTruncatedAndInvalidUTF8IsReplaced() throws {
        let harness = try EngineHarness()
        let script = """
            head -c 5242880 /dev/zero | tr '\\0' 'x'; echo
            printf 'bad \\377\\376 bytes\\n'
            printf 'no newline at end'
            """
        let job = try harness.launch(script: script)
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        let lines = harness.logLines(of: job.id).filter { $0.stream == .stdout }
        #expect(lines.count == 3)
        #expect(lines[0].text.hasSuffix(" … [truncated \(5_242_880 - (1 << 20)) bytes]"))
        #expect(lines[0].text.utf8.count < (1 << 20) + 100)
        #expect(lines[1].text == "bad \u{FFFD}\u{FFFD} bytes")
        #expect(lines[2].text == "no newline at end")
    }

    @Test func stderrIsCoalescedIntoFewBatchesAndTheTailIsBounded() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: "i=0; while [ $i -lt 300 ]; do echo \"warn $i\" >&2; i=$((i+1)); done; sleep 0.5; echo late >&2")
        let done = try #require(harness.waitForCompletion(job.id))
        let stderrEvents = harness.events(of: job.id).filter {
            if case .log(let line) = $0.payload { line.stream == .stderr } else { false }
        }
        #expect(stderrEvents.count == 301)
        // Lines written together arrive together: consecutive seqs within a batch, and
        // far fewer distinct timestamps than lines.
        let times = Set(stderrEvents.map(\.time))
        #expect(times.count <= 10)
        #expect(done.errorTail!.utf8.count <= 4096)
        #expect(done.errorTail!.hasSuffix("late\n"))
    }

    // MARK: 6. kill

    @Test func killEscalatesToSIGKILLAndTakesTheWholeGroup() throws {
        let harness = try EngineHarness()
        let pidFile = harness.scratch.file("grandchild")
        // Ignores SIGTERM, and so does its grandchild (ignored signals survive exec).
        let job = try harness.launch(script: "trap '' TERM; sleep 300 & echo $! > '\(pidFile)'; echo started; wait")
        #expect(harness.spin(until: { readPid(pidFile) != nil }))
        let grandchild = try #require(readPid(pidFile))
        #expect(processIsRunning(grandchild))

        let start = MonotonicClock.nanoseconds()
        try harness.manager.kill(job.id)
        try harness.manager.kill(job.id)  // twice is harmless
        let done = try #require(harness.waitForCompletion(job.id))
        let elapsed = (MonotonicClock.nanoseconds() - start) / 1_000_000
        #expect(done.status == .killed)
        #expect(done.signal == SIGKILL)
        #expect(elapsed >= 250)  // waited for the 300 ms grace period first
        // The grandchild's pipes closed as it died; its exit may take a moment more to show.
        #expect(harness.spin(until: { !processIsRunning(grandchild) }, milliseconds: 2_000))
        #expect(!processEntryExists(job.pid!))  // reaped: no zombie
        #expect(throws: JobManager.KillError.alreadyFinished(job.id, .killed)) { try harness.manager.kill(job.id) }
        #expect(throws: JobManager.KillError.notFound("nope")) { try harness.manager.kill("nope") }
    }

    @Test func aCooperativeAgentStopsOnSIGTERM() throws {
        let harness = try EngineHarness { $0.killGraceMilliseconds = 10_000 }
        let job = try harness.launch(script: "echo up; exec sleep 300")
        #expect(harness.spin(until: { harness.logLines(of: job.id).contains { $0.text == "up" } }))
        try harness.manager.kill(job.id)
        let done = try #require(harness.waitForCompletion(job.id, timeoutMilliseconds: 5_000))
        #expect(done.status == .killed)
        #expect(done.signal == SIGTERM)
    }

    @Test func killAllStopsEveryRunningJob() throws {
        let harness = try EngineHarness()
        let jobs = try (0..<3).map { _ in try harness.launch(script: "exec sleep 300") }
        let finished = try harness.launch(script: "true")
        harness.waitForCompletion(finished.id)
        #expect(harness.manager.killAll() == 3)
        for job in jobs {
            #expect(harness.waitForCompletion(job.id)?.status == .killed)
        }
        #expect(harness.manager.runningCount == 0)
    }

    @Test func grandchildrenLeftBehindByANormalExitAreKilled() throws {
        let harness = try EngineHarness()
        let pidFile = harness.scratch.file("stray")
        let job = try harness.launch(script: "sleep 300 > /dev/null 2>&1 & echo $! > '\(pidFile)'; echo bye")
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        let stray = try #require(readPid(pidFile))
        #expect(harness.spin(until: { !processIsRunning(stray) }, milliseconds: 2_000))
    }

    @Test func noFileDescriptorsLeakAcrossJobs() throws {
        let harness = try EngineHarness()
        let warm = try harness.launch(script: "echo warm")
        harness.waitForCompletion(warm.id)
        harness.spin(milliseconds: 20)
        let before = FileDescriptor.processDescriptorCount()
        for _ in 0..<10 {
            let job = try harness.launch(script: FakeAgents.replay("claude-stream-json-simple-text.jsonl") + "; echo err >&2")
            harness.waitForCompletion(job.id)
        }
        let killed = try harness.launch(script: "exec sleep 300")
        try harness.manager.kill(killed.id)
        harness.waitForCompletion(killed.id)
        harness.spin(milliseconds: 20)
        #expect(FileDescriptor.processDescriptorCount() == before)
        #expect(harness.loop.registrationCount == 0)
    }

    // MARK: 7. completion hooks

    @Test func codexOutputFileIsIngestedAsJSON() throws {
        let harness = try EngineHarness()
        let script = """
            while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then printf '{"answer": 42}' > "$2"; fi; shift; done
            cat '\(Fixtures.transcript("codex-exec-json-simple-text.jsonl"))'
            """
        let job = try harness.launch("codex", script: script)
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(done.result?["output"] == ["answer": 42])
        #expect(done.result?["text"] == "pong")
        #expect(done.command.contains("-o"))
    }

    @Test func anOversizedOutputFileIsAHookErrorNotACrash() throws {
        let harness = try EngineHarness { $0.maxOutputFileBytes = 1000 }
        let script = #"while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then head -c 5000 /dev/zero > "$2"; fi; shift; done"#
        let job = try harness.launch("codex", script: script)
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(done.hookError == "output file is larger than 1000 bytes")
    }

    @Test func theOperatorHookGetsTheJobAndItsJSONIsMerged() throws {
        let dir = TemporaryDirectory()
        let harness = try EngineHarness {
            $0.onComplete = .init(command: "cat > '\(dir.file("job.json"))'; echo '{\"ticket\": \"T-1\"}'")
        }
        let job = try harness.launch(script: FakeAgents.replay("claude-stream-json-simple-text.jsonl"))
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(done.result?["hook"] == ["ticket": "T-1"])
        #expect(done.hookError == nil)
        let seen = try JSONParser.parse(dir.read("job.json") ?? "")
        #expect(seen["id"] == .string(job.id))
        #expect(seen["status"] == "done")
    }

    @Test(arguments: [
        ("echo not json", "hook printed invalid JSON"),
        ("echo oops >&2; exit 4", "hook exited with status 4: oops"),
        ("exec sleep 30", "hook timed out after 300 ms"),
        ("head -c 3000000 /dev/zero", "hook printed more than"),
    ])
    func aBadHookSetsHookErrorAndNeverBlocksCompletion(_ command: String, _ expected: String) throws {
        let harness = try EngineHarness { $0.onComplete = .init(command: command, timeoutMilliseconds: 300) }
        let job = try harness.launch(script: "echo hello")
        let done = try #require(harness.waitForCompletion(job.id, timeoutMilliseconds: 10_000))
        #expect(done.status == .done)
        #expect(done.hookError?.hasPrefix(expected) == true, "\(done.hookError ?? "nil")")
        #expect(harness.events(of: job.id).filter { $0.type == "job:completed" }.count == 1)
    }

    @Test func aJobKilledWhileItsHookRunsCompletesExactlyOnceAsKilled() throws {
        let dir = TemporaryDirectory()
        let marker = dir.file("hook-started")
        let harness = try EngineHarness { $0.onComplete = .init(command: "touch '\(marker)'; exec sleep 30") }
        let job = try harness.launch(script: "echo hello")
        #expect(harness.spin(until: { FileManager.default.fileExists(atPath: marker) }))
        #expect(harness.manager.job(job.id)?.status.isFinished == false)
        try harness.manager.kill(job.id)
        let done = try #require(harness.waitForCompletion(job.id))
        harness.spin(milliseconds: 100)
        #expect(done.status == .killed)
        #expect(done.exitCode == 0)
        #expect(done.hookError == "job was killed while its completion hook ran")
        #expect(harness.events(of: job.id).filter { $0.type == "job:completed" }.count == 1)
    }
}

/// What a user sees of a kill, and of a streamed answer, through the real engine.
struct JobEngineLiveTests {
    @Test func aKilledJobShowsStoppingThenEndsKilledWithAnErrorResult() throws {
        let harness = try EngineHarness { $0.killGraceMilliseconds = 10_000 }
        let job = try harness.launch(script: "echo up; exec sleep 300")
        #expect(harness.spin(until: { harness.logLines(of: job.id).contains { $0.text == "up" } }))
        try harness.manager.kill(job.id)
        #expect(harness.manager.job(job.id)?.status == .stopping)
        #expect(harness.events(of: job.id).contains { if case .status(let j) = $0.payload { j.status == .stopping } else { false } })
        let done = try #require(harness.waitForCompletion(job.id, timeoutMilliseconds: 5_000))
        #expect(done.status == .killed)
        #expect(done.statusLine.hasSuffix("killed (SIGTERM)"))
        #expect(done.result?["isError"]?.boolValue == true)
        #expect(done.result?["endReason"]?.stringValue == "killed")
        #expect(done.result?["errors"]?[0]?.stringValue == "killed on request (SIGTERM)")
    }

    @Test func aKillSaysHowTheAgentEnded() throws {
        let harness = try EngineHarness { $0.killGraceMilliseconds = 10_000 }
        let job = try harness.launch(script: "trap 'exit 143' TERM; echo up; sleep 300 & wait")
        #expect(harness.spin(until: { harness.logLines(of: job.id).contains { $0.text == "up" } }))
        try harness.manager.kill(job.id, reason: .serverStopping)
        let done = try #require(harness.waitForCompletion(job.id, timeoutMilliseconds: 5_000))
        #expect(done.result?["errors"]?[0]?.stringValue == "killed because the server stopped (SIGTERM; exit 143)")
        #expect(harness.logLines(of: job.id).contains { $0.text.hasPrefix("the server is stopping: SIGTERM sent") })
    }

    @Test func streamedTextReachesPartialObserversAndTheStoreKeepsOnlyLines() throws {
        let harness = try EngineHarness()
        var partials: [String] = []
        harness.manager.addPartialObserver { _, _, bytes in
            partials.append((try? JSONParser.parse(bytes))?["text"]?.stringValue ?? "?")
        }
        // A claude-shaped stream: a block start, two deltas a moment apart, the assistant line.
        let start = #"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}"#
        let delta = { (text: String) in #"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\#(text)"}}}"# }
        let assistant = #"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Hello world"}]}}"#
        let script = "echo '\(start)'; echo '\(delta("Hello "))'; sleep 0.3; echo '\(delta("world"))'; sleep 0.3; echo '\(assistant)'"
        let job = try harness.launch(script: script)
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(partials.contains("Hello "))
        #expect(partials.contains("Hello world"))
        #expect(harness.logLines(of: done.id).map(\.text) == ["Hello world"])
        let stored = harness.manager.events(for: done.id)
        #expect(!stored.contains { if case .agentEvent(let raw) = $0.payload { raw.contains("stream_event") } else { false } })
    }
}

/// The in-progress line through the engine: rate-bounded, and sent again after any stored
/// event (viewers drop it then), stderr included.
struct PartialPublishingTests {
    static let start = #"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}"#
    static func delta(_ text: String) -> String {
        #"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\#(text)"}}}"#
    }

    @Test func aLineTypedOneCharacterAtATimeCostsABoundedNumberOfMessages() throws {
        let harness = try EngineHarness()
        var partials: [String] = []
        harness.manager.addPartialObserver { _, _, bytes in partials.append((try? JSONParser.parse(bytes))?["text"]?.stringValue ?? "?") }
        // 150 one-character deltas, 10 ms apart: one read each.
        let script = "echo '\(Self.start)'; i=0; while [ $i -lt 150 ]; do echo '\(Self.delta("x"))'; sleep 0.01; i=$((i+1)); done; sleep 0.3"
        let job = try harness.launch(script: script)
        _ = try #require(harness.waitForCompletion(job.id))
        // At most one per 50 ms (the run takes about 1.5 to 3 s here), and the last state sent.
        #expect(partials.count < 75, "\(partials.count) partial messages")
        #expect(partials.last == String(repeating: "x", count: 150))
    }

    @Test func aStoredEventAfterTheLineMakesItGoOutAgain() throws {
        let harness = try EngineHarness { $0.stderrCoalesceMilliseconds = 10 }
        var messages: [String] = []
        harness.manager.addPartialObserver { _, _, bytes in messages.append("partial:" + ((try? JSONParser.parse(bytes))?["text"]?.stringValue ?? "?")) }
        harness.manager.addObserver { event, _ in if case .log(let line) = event.payload, line.stream == .stderr { messages.append("stderr") } }
        let script = "echo '\(Self.start)'; echo '\(Self.delta("hello wor"))'; sleep 0.3; echo oops >&2; sleep 0.5"
        let job = try harness.launch(script: script)
        _ = try #require(harness.waitForCompletion(job.id))
        #expect(messages.prefix(3) == ["partial:hello wor", "stderr", "partial:hello wor"], "\(messages)")
    }
}
