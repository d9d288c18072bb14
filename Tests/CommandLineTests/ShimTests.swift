import Foundation
import Glibc
import TestSupport
import Testing

/// `agentgate shim`, the per-job supervisor (issue 14), run as the server will run it: a real
/// process supervising a real agent, with its files checked afterwards.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct ShimTests {
    let job = TemporaryDirectory("agentgate-shim-job")
    let files = TemporaryDirectory("agentgate-shim-run")

    func start(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(
            CommandLineTests.binary, ["shim"] + arguments, environment: ["PATH": "/usr/bin:/bin", "SHIM_NOTE": "from-env"],
            stdout: files.file("stdout"), stderr: files.file("stderr"))
    }

    func json(_ name: String) -> [String: Any]? {
        guard let text = job.read(name) else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        guard Glibc.kill(pid, 0) == 0 else { return false }
        // A zombie waiting for its reaper is gone for our purpose.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true)
    }

    @Test func theAgentWritesIntoTheSpoolsReadsItsStdinFileAndItsExitIsRecordedLast() throws {
        job.write("stdin", "the prompt\n")
        let shim = try start([job.path, "--", "/bin/sh", "-c", "echo out; echo err >&2; cat; echo \"$SHIM_NOTE\"; exit 3"])
        #expect(shim.wait() == 0)
        #expect(job.read("stdout") == "out\nthe prompt\nfrom-env\n")
        #expect(job.read("stderr") == "err\n")
        let exit = try #require(json("exit.json"))
        #expect(exit["kind"] as? String == "exited")
        #expect(exit["code"] as? Int == 3)
        #expect(exit["stopRequested"] as? Bool == false)
        #expect(exit["stdoutBytes"] as? Int == 24 && exit["stderrBytes"] as? Int == 4)
        let agent = try #require(json("agent.json"))
        let bootID = try String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(agent["bootId"] as? String == bootID)
        #expect((agent["pid"] as? Int ?? 0) > 0 && agent["pgid"] as? Int == agent["pid"] as? Int)
        #expect((agent["startTime"] as? Int ?? 0) > 0)
        #expect(agent["supervisor"] as? Int == Int(shim.pid))
        // Nothing half-written is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: job.path).sorted() == ["agent.json", "exit.json", "stderr", "stdin", "stdout"])
    }

    @Test func whatTheAgentLeftRunningInItsGroupIsStoppedWhenItExits() throws {
        let shim = try start([job.path, "--grace-ms", "200", "--", "/bin/sh", "-c", "sleep 30 & echo $!; exit 0"])
        #expect(shim.wait() == 0)
        let left = try #require(Int32(job.read("stdout")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""))
        #expect(!Self.isAlive(left))
        #expect(json("exit.json")?["code"] as? Int == 0)
    }

    @Test func sigtermToTheSupervisorStopsTheAgentsGroupAndSigkillFollowsTheGrace() throws {
        // The agent ignores SIGTERM, and so does the child it waits for.
        let shim = try start([job.path, "--grace-ms", "300", "--", "/bin/sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait"])
        for _ in 0..<200 where job.read("stdout")?.isEmpty ?? true { usleep(10_000) }
        let child = try #require(Int32(job.read("stdout")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""))
        let asked = Date()
        shim.signal(SIGTERM)
        #expect(shim.wait() == 0)
        #expect(Date().timeIntervalSince(asked) < 5)
        let exit = try #require(json("exit.json"))
        #expect(exit["kind"] as? String == "signaled")
        #expect(exit["signal"] as? Int == Int(SIGKILL))
        #expect(exit["stopRequested"] as? Bool == true)
        #expect(!Self.isAlive(child))
    }

    /// Nothing runs unobserved forever: while the heartbeat is touched the agent works on;
    /// once it is older than the orphan timeout the agent is stopped like on SIGTERM, and the
    /// record says why.
    @Test func anAgentWithNoServerAttachedPastTheOrphanTimeoutIsStopped() throws {
        let heartbeat = job.file("heartbeat")
        #expect(FileManager.default.createFile(atPath: heartbeat, contents: Data()))
        let shim = try start([job.path, "--grace-ms", "200", "--heartbeat", heartbeat, "--orphan-timeout-ms", "400", "--", "/bin/sh", "-c", "echo started; exec sleep 30"])
        // A server touching it every 100 ms: the agent outlives the timeout several times over.
        for _ in 0..<15 {
            usleep(100_000)
            #expect(utimes(heartbeat, nil) == 0)
        }
        #expect(json("exit.json") == nil)
        let stopped = Date()  // the server is gone from here on
        #expect(shim.wait() == 0)
        #expect(Date().timeIntervalSince(stopped) < 3)
        let exit = try #require(json("exit.json"))
        #expect(exit["orphanTimeout"] as? Bool == true)
        #expect(exit["stopRequested"] as? Bool == true)
        #expect(exit["signal"] as? Int == Int(SIGTERM))
    }

    @Test func anAgentThatCannotBeStartedIsRecordedAsSuch() throws {
        let shim = try start([job.path, "--", "/nonexistent/agent"])
        #expect(shim.wait() == 0)
        let exit = try #require(json("exit.json"))
        #expect(exit["kind"] as? String == "spawn_failed")
        #expect(exit["errno"] as? Int == Int(ENOENT))
        #expect(json("agent.json") == nil)
    }

    @Test func badInvocationsAreRefusedWithAReason() throws {
        for arguments in [[job.path], [job.path, "--", "sh"], [job.path, "--grace-ms", "-1", "--", "/bin/true"]] {
            let shim = try start(arguments)
            #expect(shim.wait() == 64, "\(arguments)")
            #expect(files.read("stderr")?.isEmpty == false)
        }
        let missing = try start(["/nonexistent/job", "--", "/bin/true"])
        #expect(missing.wait() == 1)
        #expect(files.read("stderr")?.contains("/nonexistent/job") == true)
    }
}
