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
        #expect(SpoolCursor.last(inLog: harness.data.path + "/jobs/\(job.id)/events.ndjson") == SpoolCursor(stdout: 6, stderr: 5))
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
