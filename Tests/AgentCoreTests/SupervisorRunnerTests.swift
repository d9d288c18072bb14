import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// Jobs run under their own supervisor (`agentgate shim`, the built binary), their output
/// read from spool files: the engine sees the same jobs as with local children.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct SupervisorRunnerTests {
    /// The `agentgate` built beside this test bundle.
    static var supervisor: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("agentgate").path
    }

    static func harness() throws -> EngineHarness {
        try EngineHarness(runner: { loop, data in
            SupervisorRunner(
                loop: loop, supervisorExecutable: Self.supervisor, jobsDirectory: data + "/jobs", graceMilliseconds: 300,
                containment: JobContainment(useCgroups: false))
        })
    }

    @Test func aJobUnderItsSupervisorStreamsItsOutputAndEndsWithItsExitCode() throws {
        let harness = try Self.harness()
        #expect(harness.manager.jobRunner.containmentDescription.hasPrefix("supervisor per job"))
        let job = try harness.launch(script: "echo hello; echo oops >&2; exit 3")
        let finished = try #require(harness.waitForCompletion(job.id))
        #expect(finished.status == .failed)
        #expect(finished.exitCode == 3)
        let texts = harness.logLines(of: job.id).map(\.text)
        #expect(texts.contains("hello"))
        #expect(texts.contains("oops"))
        // The agent wrote into files in the job's directory; the supervisor recorded it.
        let directory = harness.data.path + "/jobs/\(job.id)/agent"
        #expect(try String(contentsOfFile: directory + "/stdout", encoding: .utf8).contains("hello"))
        #expect(try String(contentsOfFile: directory + "/exit.json", encoding: .utf8).contains(#""kind":"exited","code":3"#))
        // The event log says how far the spools were turned into events: to their ends.
        // With the bytes before each offset, for the next server to check the spools against.
        #expect(
            SpoolCursor.last(inLog: harness.data.path + "/jobs/\(job.id)/events.ndjson")
                == SpoolCursor(stdout: 6, stderr: 5, stdoutBefore: Array("hello\n".utf8), stderrBefore: Array("oops\n".utf8)))
        let agent = try #require(AgentRecord.read(directory + "/agent.json"))
        #expect(agent.bootId == ProcessIdentity.bootId() && !agent.bootId.isEmpty)
        #expect(!agent.identityHolds)  // gone: never signalled again
    }

    @Test func aLongOutputArrivesWholeAndInOrder() throws {
        let harness = try Self.harness()
        let job = try harness.launch(script: "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done")
        let finished = try #require(harness.waitForCompletion(job.id))
        #expect(finished.status == .done)
        let lines = harness.logLines(of: job.id).map(\.text).filter { $0.hasPrefix("line ") }
        #expect(lines == (0..<20_000).map { "line \($0)" })
        let spool = try #require(FileManager.default.attributesOfItem(atPath: harness.data.path + "/jobs/\(job.id)/agent/stdout")[.size] as? Int)
        #expect(SpoolCursor.last(inLog: harness.data.path + "/jobs/\(job.id)/events.ndjson")?.stdout == spool)
    }

    /// A job that truncates its own stdout (trial of issue 14: `> /dev/stdout` reopens fd 1
    /// with `O_TRUNC`; the server read on from its old offset and lost the rest): what it
    /// writes after is read from the file's start, and the log says what happened.
    @Test func aJobThatTruncatesItsStdoutLosesNothingItWritesAfter() throws {
        let harness = try Self.harness()
        let go = harness.scratch.path + "/go"
        let waitFor = { (n: Int) in "while [ ! -e \(go)\(n) ]; do sleep 0.02; done" }
        let job = try harness.launch(
            script: "echo one-with-a-long-tail; \(waitFor(1)); echo two > /dev/stdout; echo three; \(waitFor(2)); truncate -s 0 /proc/self/fd/1; echo four; printf 'half'; \(waitFor(3)); truncate -s 0 /proc/self/fd/1; echo five")
        let texts = { harness.logLines(of: job.id).map(\.text) }
        // Each step waits until the server read what came before (the half line: in its splitter).
        let read: [() -> Bool] = [
            { texts().contains("one-with-a-long-tail") }, { texts().contains("three") },
            { texts().contains("four") && harness.manager.running[job.id]?.splitter.unfinishedByteCount == 4 },
        ]
        for (step, done) in read.enumerated() {
            #expect(harness.spin(until: done))
            #expect(FileManager.default.createFile(atPath: go + String(step + 1), contents: nil))
        }
        let finished = try #require(harness.waitForCompletion(job.id))
        #expect(finished.status == .done)
        let said = texts().filter { $0.hasPrefix("the job truncated its stdout") }
        #expect(said.count == 3)
        #expect(texts().filter { !$0.hasPrefix("the job truncated") && ["one", "two", "three", "four", "half", "five"].contains(where: $0.hasPrefix) }
            == ["one-with-a-long-tail", "two", "three", "four", "half", "five"])
        // The cursor names the file as it is now: a restart would read on from its end.
        let spool = try #require(FileManager.default.attributesOfItem(atPath: harness.data.path + "/jobs/\(job.id)/agent/stdout")[.size] as? Int)
        #expect(SpoolCursor.last(inLog: harness.data.path + "/jobs/\(job.id)/events.ndjson")?.stdout == spool)
    }

    /// The same line written again and again with `>` (a status line: attacker trial, 1 of 5
    /// arrived): each rewrite is the same size and bytes, seen by the file's modification time.
    @Test func aLineRewrittenInPlaceArrivesEachTime() throws {
        let harness = try Self.harness()
        let go = harness.scratch.path + "/go"
        let job = try harness.launch(
            script: "for i in 1 2 3; do echo progress > /dev/stdout; while [ ! -e \(go)$i ]; do sleep 0.02; done; done; echo end")
        let progress = { harness.logLines(of: job.id).filter { $0.text == "progress" }.count }
        for step in 1...3 {
            #expect(harness.spin(until: { progress() == step }))
            harness.spin(milliseconds: 20)  // a later modification time for the next rewrite
            #expect(FileManager.default.createFile(atPath: go + String(step), contents: nil))
        }
        #expect(try #require(harness.waitForCompletion(job.id)).status == .done)
        #expect(progress() == 3)
        #expect(harness.logLines(of: job.id).last { $0.stream != .system }?.text == "end")
    }

    /// Runs `script` (which waits for the file `$GO` after its first line) under a first
    /// "server", stops reading it once `firstLine` is in events, lets the job go on until its
    /// stdout spool holds `spool`, then recovers it on a second server and follows it to its
    /// end: the log lines the second one made.
    static func truncatedWhileNoServerRan(script: String, firstLine: String, spool expected: String) throws -> [String] {
        let data = TemporaryDirectory("agentgate-truncated-restart")
        let agents = FakeAgents()
        let engine = {
            try EngineHarness(agents: agents, data: data, runner: { loop, path in
                SupervisorRunner(
                    loop: loop, supervisorExecutable: Self.supervisor, jobsDirectory: path + "/jobs", graceMilliseconds: 300,
                    containment: JobContainment(useCgroups: false))
            })
        }
        let first = try engine()
        let go = first.scratch.path + "/go"
        let job = try first.launch(script: "GO=\(go); " + script)
        #expect(first.spin(until: { first.logLines(of: job.id).map(\.text).contains(firstLine) }))
        first.manager.flushLogs()
        // "The server" is gone (its loop no longer runs); the job truncates meanwhile (waited
        // for without running the first server's loop, which would read it).
        #expect(FileManager.default.createFile(atPath: go, contents: nil))
        let spool = data.path + "/jobs/\(job.id)/agent/stdout"
        for _ in 0..<500 where (try? String(contentsOfFile: spool, encoding: .utf8)) != expected { usleep(10_000) }
        #expect((try? String(contentsOfFile: spool, encoding: .utf8)) == expected)
        let second = try engine()
        _ = try second.manager.recover()
        #expect(second.manager.adopted.map(\.id) == [job.id])
        let finished = try #require(second.waitForCompletion(job.id))
        #expect(finished.status == .done)
        withExtendedLifetime(first) {}
        return second.logLines(of: job.id).map(\.text)
    }

    /// The same while no server runs: the next one finds its cursor past the file's end.
    @Test func aStdoutTruncatedWhileNoServerRanIsReadAgainByTheNext() throws {
        let texts = try Self.truncatedWhileNoServerRan(
            script: "echo a-line-longer-than-what-follows; while [ ! -e $GO ]; do sleep 0.02; done; echo after > /dev/stdout; echo more",
            firstLine: "a-line-longer-than-what-follows", spool: "after\nmore\n")
        #expect(texts.contains { $0.hasPrefix("the job truncated its stdout") })
        #expect(texts.filter { $0 == "after" || $0 == "more" } == ["after", "more"])
    }

    /// Truncated and written past where the last server read, while no server ran: the bytes
    /// the cursor recorded before its offset are not there any more, so the next server reads
    /// the file from its start rather than from the middle of a line.
    @Test func aStdoutTruncatedAndRegrownWhileNoServerRanIsReadAgainByTheNext() throws {
        let texts = try Self.truncatedWhileNoServerRan(
            script: "echo first; while [ ! -e $GO ]; do sleep 0.02; done; echo replaced-by-a-much-longer-line > /dev/stdout; echo last",
            firstLine: "first", spool: "replaced-by-a-much-longer-line\nlast\n")
        #expect(texts.contains { $0.hasPrefix("the job truncated its stdout") })
        #expect(texts.filter { !$0.hasPrefix("the job truncated") && $0 != "first" } == ["replaced-by-a-much-longer-line", "last"])
    }

    @Test func aKillEndsTheAgentsWholeGroupThroughItsSupervisor() throws {
        let harness = try Self.harness()
        let pidFile = harness.scratch.path + "/background.pid"
        let job = try harness.launch(script: "sleep 30 & echo $! > \(pidFile); echo started; sleep 30")
        #expect(harness.spin(until: { readPid(pidFile) != nil }))
        let background = try #require(readPid(pidFile))
        try harness.manager.kill(job.id)
        let finished = try #require(harness.waitForCompletion(job.id))
        #expect(finished.status == .killed)
        #expect(harness.spin(until: { !processIsRunning(background) }, milliseconds: 3_000))
    }

    @Test func anAgentThatCannotStartEndsWithTheReasonSaid() throws {
        let loop = try EventLoop()
        let jobs = TemporaryDirectory()
        let runner = SupervisorRunner(
            loop: loop, supervisorExecutable: Self.supervisor, jobsDirectory: jobs.path, graceMilliseconds: 300,
            containment: JobContainment(useCgroups: false))
        #expect(mkdir(jobs.path + "/j1", 0o700) == 0)
        let process = try runner.process(
            forJob: "j1", spec: SupervisedProcess.Spec(executable: "/nonexistent/agent", arguments: ["agent"], environment: []))
        var stderr: [UInt8] = []
        var notices: [String] = []
        var status: AgentCore.ExitStatus?
        process.onStderr = { stderr += $0 }
        process.onNotice = { notices.append($0) }
        process.onExit = { status = $0 }
        try process.start()
        loop.run(untilMilliseconds: 10_000) { status != nil }
        #expect(status == .exited(127))
        // Said as agentgate's own line, not as the agent's stderr (which is not in the spool).
        #expect(notices.contains { $0.contains("could not be started: No such file or directory") }, "\(notices)")
        #expect(stderr.isEmpty)
    }

    /// Records that name a live process which is not the one recorded — another start time
    /// (a reused pid), or another boot (the host restarted; the start time matches by
    /// chance) — are never acted on: the job is `interrupted` and the process lives.
    @Test func aPidThatFailsTheIdentityCheckIsNeverSignalledAndItsJobIsInterrupted() throws {
        let harness = try Self.harness()
        // A group leader of its own: a kill(-pid) meant for a recorded group would reach it.
        let bystander = try ChildProcess("/usr/bin/setsid", ["/bin/sleep", "30"], environment: [:], stdout: "/dev/null", stderr: "/dev/null")
        defer {
            bystander.signal(SIGKILL)
            _ = bystander.wait()
        }
        for _ in 0..<200 where getpgid(bystander.pid) != bystander.pid { usleep(5_000) }
        #expect(getpgid(bystander.pid) == bystander.pid)
        let start = try #require(ProcessIdentity.startTime(of: bystander.pid))
        let cases: [(recordedStart: UInt64, boot: String)] = [(start + 7, ProcessIdentity.bootId()), (start, "another-boot")]
        for (index, record) in cases.enumerated() {
            var job = Job(id: String(format: "%016x", 0xb0 + index), provider: "claude", prompt: "x", createdAt: 1)
            job.status = .running
            job.pid = bystander.pid
            job.pgid = bystander.pid
            job.processStartTime = record.recordedStart
            try harness.store.events.create(job: job.id)
            try harness.store.save(job)
            let agent = harness.data.path + "/jobs/\(job.id)/agent"
            #expect(mkdir(agent, 0o700) == 0)
            let json = #"{"pid":\#(bystander.pid),"pgid":\#(bystander.pid),"startTime":\#(record.recordedStart),"bootId":"\#(record.boot)","supervisor":\#(bystander.pid)}"#
            try json.write(toFile: agent + "/agent.json", atomically: true, encoding: .utf8)
        }
        let interrupted = try harness.manager.recover()
        #expect(interrupted.map(\.status) == [.interrupted, .interrupted])
        #expect(harness.manager.adopted.isEmpty)
        harness.spin(milliseconds: 200)
        #expect(processIsRunning(bystander.pid))
    }
}
