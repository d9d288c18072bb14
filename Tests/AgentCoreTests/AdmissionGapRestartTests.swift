import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// The server stopped after a job's supervisor was spawned and before the supervisor was
/// recorded (attacker trial of issue 16: a SIGKILL while a queued job started left its agent
/// running, counted by nobody, and the job marked failed). The job is recorded admitted before
/// its agent can exist, and the next server finds the supervisor through the agent's record.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct AdmissionGapRestartTests {
    /// A job whose agent wrote "before" and waits for the file `go` (in the first engine's
    /// scratch) to write "after", its record rewritten as the server left it when it died
    /// right after spawning the supervisor: admitted, no supervisor recorded. Returns the
    /// first engine (keep it alive: it still owns the job's process), the job and its supervisor.
    static func launchUnrecorded(script: (_ gate: String) -> String, agents: FakeAgents, data: TemporaryDirectory) throws -> (EngineHarness, Job, Int32) {
        let first = try ConversationEngineTests.engine(supervised: true, agents: agents, data: data)
        let job = try first.launch("claude", script: script(first.scratch.file("go")))
        let agentRecord = data.path + "/jobs/\(job.id)/agent/agent.json"
        #expect(first.spin(until: { FileManager.default.fileExists(atPath: agentRecord) && first.logLines(of: job.id).contains { $0.text == "before" } }))
        first.manager.flushLogs()
        let supervisor = try #require(first.manager.job(job.id)?.pid)
        var unrecorded = try #require(first.manager.job(job.id))
        unrecorded.status = .starting
        unrecorded.pid = nil
        unrecorded.pgid = nil
        unrecorded.processStartTime = nil
        try first.store.save(unrecorded)
        return (first, job, supervisor)
    }

    @Test func aSupervisorTheLastServerDidNotRecordIsFoundThroughItsAgentsRecord() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-admission-gap")
        let (first, job, supervisor) = try Self.launchUnrecorded(
            script: { #"read -r line; echo before; while [ ! -e '\#($0)' ]; do sleep 0.02; done; echo after; while read -r more; do :; done"# },
            agents: agents, data: data)
        defer { withExtendedLifetime(first) {} }

        let second = try ConversationEngineTests.engine(supervised: true, agents: agents, data: data)
        _ = try second.manager.recover()
        #expect(second.manager.adopted.map(\.id) == [job.id])
        #expect(second.manager.job(job.id)?.pid == supervisor && second.manager.job(job.id)?.status == .running)
        #expect(second.manager.job(job.id)?.acceptsMessages == true, "its supervisor holds its stdin: messages still reach it")
        first.scratch.write("go", "")
        // Its stdin is closed when it answered (here: killed, as the fake never answers).
        #expect(second.spin(until: { second.logLines(of: job.id).contains { $0.text == "after" } }))
        try second.manager.kill(job.id)
        let done = try #require(second.waitForCompletion(job.id))
        #expect(done.status == .killed)
        #expect(!processIsRunning(supervisor))
    }

    /// Earlier still: the supervisor runs but has not written the agent's record (a SIGKILL
    /// within moments of a launch, attacker trial of issue 14: the job ran to its end and was
    /// recorded as never started). It is found by its command line and the job's marker.
    @Test func aSupervisorWhoseAgentsRecordIsNotWrittenYetIsFoundByItsCommandLine() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-admission-gap")
        let (first, job, supervisor) = try Self.launchUnrecorded(
            script: { #"read -r line; echo before; while [ ! -e '\#($0)' ]; do sleep 0.02; done; echo after"# }, agents: agents, data: data)
        defer { withExtendedLifetime(first) {} }
        // As if the supervisor had not written it yet.
        try FileManager.default.removeItem(atPath: data.path + "/jobs/\(job.id)/agent/agent.json")

        let second = try ConversationEngineTests.engine(supervised: true, agents: agents, data: data)
        _ = try second.manager.recover()
        #expect(second.manager.adopted.map(\.id) == [job.id])
        #expect(second.manager.job(job.id)?.pid == supervisor && second.manager.job(job.id)?.status == .running)
        first.scratch.write("go", "")
        let done = try #require(second.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(second.logLines(of: job.id).contains { $0.text == "after" })
    }
}
