import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// `agentgate kill` with no server: only a process of this job is ever signalled, whatever
/// its records say.
struct StopWithoutServerTests {
    /// agent.json is a file an agent can rewrite. One that names another process of the same
    /// user, with that process's true start time and boot id, is not acted on: the process
    /// does not carry the job's marker.
    @Test func aRecordNamingAnotherProcessOfTheUserIsNotActedOn() throws {
        let jobs = TemporaryDirectory()
        let agentDirectory = jobs.path + "/0123456789abcdef/agent"
        #expect(mkdir(jobs.path + "/0123456789abcdef", 0o700) == 0 && mkdir(agentDirectory, 0o700) == 0)
        let bystander = try ChildProcess("/bin/sleep", ["30"], environment: ["PATH": "/usr/bin:/bin"], stdout: "/dev/null", stderr: "/dev/null")
        defer {
            bystander.signal(SIGKILL)
            bystander.wait()
        }
        let startTime = try #require(ProcessIdentity.startTime(of: bystander.pid))
        let forged = #"{"pid":\#(bystander.pid),"pgid":\#(bystander.pid),"startTime":\#(startTime),"bootId":"\#(ProcessIdentity.bootId())","supervisor":\#(getpid())}"#
        try Data(forged.utf8).write(to: URL(fileURLWithPath: agentDirectory + "/agent.json"))
        #expect(StopWithoutServer.stop(jobDirectory: jobs.path + "/0123456789abcdef", graceMilliseconds: 100) == .notRunning)
        AgentRecord.killGroup(in: agentDirectory)
        usleep(100_000)
        #expect(kill(bystander.pid, 0) == 0)
        #expect(access(agentDirectory + "/" + StopWithoutServer.requestFile, F_OK) != 0)
    }
}
