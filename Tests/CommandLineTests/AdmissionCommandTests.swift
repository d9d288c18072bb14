import Foundation
import Glibc
import TestSupport
import Testing

/// Admission control as a user meets it: `run` says the job is queued and where, then streams
/// it; `jobs` and `show` say where each waits; the queue outlives a restart of the server.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(10)))
struct AdmissionCommandTests {
    func client(_ arguments: [String], _ server: ServerProcess) throws -> (status: Int32, stdout: String, stderr: String) {
        try ClientProcess(arguments, server: server).finish()
    }

    func detached(_ prompt: String, _ server: ServerProcess, _ extra: [String] = []) throws -> String {
        let (status, stdout, stderr) = try client(["run", "claude", prompt, "--detach"] + extra, server)
        #expect(status == 0, "\(stderr)")
        return stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func runSaysQueuedThenStreamsAndTheQueueOutlivesARestart() throws {
        let server = try ServerProcess(surviving: true, extra: ["--max-running", "1"])
        let (_, banner, _) = (0, server.data.read("serve.out") ?? "", "")
        #expect(banner.contains("jobs run at most 1 at once (--max-running)"), "\(banner)")
        let first = try detached("slow", server)
        // A run behind it says where it waits, then streams once it runs.
        let follower = try ClientProcess(["run", "claude", "slow", "--project", "web"], server: server)
        var shown = ""
        // The place comes on a line of its own after the launch line: wait for it, not the word.
        for _ in 0..<500 where !shown.contains("jobs running") {
            usleep(10_000)
            shown = follower.files.read("out") ?? ""
        }
        #expect(shown.contains("queued: claude") && shown.contains("queued (1st): 1 of 1 jobs running"), "\(shown)")
        let listed = try client(["jobs"], server)
        #expect(listed.stdout.contains("web: slow · queued (1st): 1 of 1 jobs running"), "\(listed.stdout)")
        let (status, out, _) = follower.finish()
        #expect(status == 0, "\(out)")
        #expect(out.contains("admitted after waiting") && out.contains("step 40") && out.contains(" done (exit 0)"), "\(out)")
        let firstShown = try client(["show", first], server)
        #expect(firstShown.stdout.contains("status    done"), "\(firstShown.stdout)")

        // A full queue survives a restart: one running, three waiting, the urgent one first.
        let running = try detached("hang", server)
        let waiting = [try detached("slow", server), try detached("slow", server), try detached("slow", server, ["--priority", "2"])]
        let shownWaiting = try client(["show", waiting[2]], server)
        #expect(shownWaiting.stdout.contains("queue     1st: 1 of 1 jobs running"), "\(shownWaiting.stdout)")
        server.stop()
        #expect((server.data.read("serve.err") ?? "").contains("3 queued job(s) keep their places"))
        // One is cancelled while no server runs: the next one ends it killed, never run.
        let offline = try client(["kill", waiting[1]], server)
        #expect(offline.status == 0 && offline.stdout.contains("cancelled \(waiting[1])"), "\(offline.stdout)\(offline.stderr)")
        try server.start()
        #expect((server.data.read("serve.out") ?? "").contains("2 queued job(s) wait again, in their order"))
        let (_, offlineJSON, _) = try client(["show", waiting[1], "--json"], server)
        #expect(offlineJSON.contains("\"status\":\"killed\"") && offlineJSON.contains("\"startedAt\":null"), "\(offlineJSON)")
        #expect(offlineJSON.contains("kill requested while no server ran: it never ran"), "\(offlineJSON)")
        let again = try client(["jobs", "--status", "queued", "--json"], server)
        let order = again.stdout.split(separator: "\n").compactMap { line -> (String, Int)? in
            guard let job = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                let id = job["id"] as? String, let position = job["queuePosition"] as? Int
            else { return nil }
            return (id, position)
        }.sorted { $0.1 < $1.1 }.map(\.0)
        #expect(order == [waiting[2], waiting[0]], "\(again.stdout)")
        // The re-attached job keeps its slot until it is killed; then they run one at a time.
        #expect(try client(["kill", running], server).status == 0)
        for id in [waiting[2], waiting[0]] {
            let (ended, text, _) = try client(["tail", id, "--follow"], server)
            #expect(ended == 0 && text.contains("server restarted: still queued"), "\(text)")
        }
        let starts = try [waiting[2], waiting[0]].map { id -> Int in
            let (_, json, _) = try client(["show", id, "--json"], server)
            let job = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
            return job?["startedAt"] as? Int ?? 0
        }
        #expect(starts[0] < starts[1], "\(starts)")

        // Cancelling a queued job: kill ends it without having run.
        _ = try detached("hang", server)
        let cancelled = try detached("slow", server)
        #expect(try client(["kill", cancelled], server).status == 0)
        let (_, cancelledJSON, _) = try client(["show", cancelled, "--json"], server)
        #expect(cancelledJSON.contains("\"status\":\"killed\"") && cancelledJSON.contains("\"pid\":null"), "\(cancelledJSON)")
        _ = try client(["kill", "--all"], server)
    }

    @Test func aKeyRejectsOrQueuesAndBadValuesAreRefusedAtStart() throws {
        let server = try ServerProcess(extra: ["--max-running", "0"])
        let holder = try detached("hang", server, ["--key", "story-7"])
        let refused = try client(["run", "claude", "slow", "--key", "story-7", "--on-conflict", "reject"], server)
        #expect(refused.status != 0 && refused.stderr.contains("job \(holder) (running) holds key story-7"), "\(refused.stderr)")
        let waits = try detached("slow", server, ["--key", "story-7"])
        let shown = try client(["show", waits], server)
        #expect(shown.stdout.contains("queue     1st: key story-7 is held by job \(holder)"), "\(shown.stdout)")
        let priority = try client(["run", "claude", "x", "--priority", "11"], server)
        #expect(priority.status == 2 && priority.stderr.contains("priority must be from -10 to 10"), "\(priority.stderr)")
        _ = try client(["kill", "--all"], server)

        for bad in [["--max-running", "-1"], ["--max-running-per-provider", "nobody=2"], ["--max-running-per-provider", "claude=0"],
                    ["--max-running-in-project", "../x=1"], ["--max-priority", "5000"]] {
            let data = TemporaryDirectory("agentgate-admission-bad")
            let started = try ChildProcess(
                CommandLineTests.binary, ["serve", "--port", "0", "--data-dir", data.path] + bad,
                environment: ["PATH": "/usr/bin:/bin", "HOME": data.path], stdout: data.file("out"), stderr: data.file("err"))
            let status = started.wait()
            #expect(status != 0 && (data.read("err") ?? "").contains(bad[0]), "\(bad): \(data.read("err") ?? "")")
        }
    }
}

/// A job's timeout holds while no server runs: its supervisor stops the agent at the deadline,
/// and the next server ends the job `failed` with reason timeout.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(5)))
struct BudgetCommandTests {
    @Test func theTimeoutStopsTheAgentWhileTheServerIsDown() throws {
        let server = try ServerProcess(surviving: true)
        let (status, stdout, stderr) = try ClientProcess(["run", "claude", "hang", "--timeout", "2", "--detach"], server: server).finish()
        #expect(status == 0, "\(stderr)")
        let id = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let record = server.data.path + "/jobs/\(id)/agent/agent.json"
        for _ in 0..<300 where !FileManager.default.fileExists(atPath: record) { usleep(10_000) }
        let agent = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: record)))) as? [String: Any]
        let pid = try #require(agent?["pid"] as? Int32)
        server.crash()
        // No server: the supervisor stops the agent at its deadline (2 s, plus the grace).
        var gone = false
        for _ in 0..<600 where !gone {
            usleep(10_000)
            gone = !ClientCommandTests.alive(pid)
        }
        #expect(gone, "the agent outlived its timeout with no server attached")
        // Written last, once the supervisor has cleared the agent's group.
        var exit = ""
        for _ in 0..<1_000 where exit.isEmpty {
            usleep(10_000)
            exit = server.data.read("jobs/\(id)/agent/exit.json") ?? ""
        }
        #expect(exit.contains("\"timedOut\":true"), "\(exit)")
        // Down a while longer: the job ended at its deadline, not when the server came back.
        usleep(1_500_000)
        try server.start()
        let (ended, text, _) = try ClientProcess(["tail", id, "--follow"], server: server).finish()
        #expect(ended == 1, "\(text)")
        #expect(text.contains("failed") && text.contains("stopped: it ran past its timeout of 2 s"), "\(text)")
        let (_, shown, _) = try ClientProcess(["show", id], server: server).finish()
        #expect(shown.contains("ended     timeout") && shown.contains("budget    2 s"), "\(shown)")
        let (_, json, _) = try ClientProcess(["show", id, "--json"], server: server).finish()
        let job = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let ran = (job["endedAt"] as? Int ?? 0) - (job["startedAt"] as? Int ?? 0)
        #expect(ran >= 2_000 && ran < 3_500, "ran \(ran) ms by its record")
    }
}

/// Profiles as an operator and a user meet them: listed by `capabilities`, launched with
/// `run --profile`, read again on SIGHUP (a broken file keeps the old ones); and the
/// operator's budget maxima refuse a launch that asks for more.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(5)))
struct ProfileCommandTests {
    @Test func profilesAreListedLaunchedAndReloadedOnSIGHUP() throws {
        let files = TemporaryDirectory("agentgate-profiles")
        files.write("profiles.json", #"{"profiles": {"review": {"provider": "claude", "model": "opus", "permissionMode": "plan", "description": "Read-only review", "prompt": "Review: {{prompt}}"}, "lint": {"provider": "claude", "prompt": "Run the linter."}}}"#)
        let server = try ServerProcess(extra: [
            "--profiles", files.path + "/profiles.json", "--max-timeout", "60", "--max-running-per-provider", "claude=3", "--max-running-in-project", "web=1",
        ])
        func client(_ arguments: [String]) throws -> (Int32, String, String) { try ClientProcess(arguments, server: server).finish() }

        let (_, listed, _) = try client(["capabilities"])
        #expect(listed.contains("profile review") && listed.contains("model opus") && listed.contains("permission mode plan"), "\(listed)")
        // The server's caps and budget maxima, for clients to offer what it accepts.
        let (_, listedJSON, _) = try client(["capabilities", "--json"])
        let capabilities = try #require(try JSONSerialization.jsonObject(with: Data(listedJSON.utf8)) as? [String: Any])
        let admission = try #require(capabilities["admission"] as? [String: Any])
        #expect(admission["maxTimeoutSeconds"] as? Int == 60 && admission["maxPriority"] as? Int == 10, "\(admission)")
        #expect(admission["defaultTimeoutSeconds"] == nil && admission["maxBudgetUsd"] == nil, "unset: absent \(admission)")
        #expect((admission["maxRunningPerProvider"] as? [String: Int]) == ["claude": 3] && (admission["maxRunningInProject"] as? [String: Int]) == ["web": 1])
        #expect(admission["maxRunningPerWorkspace"] == nil, "unset: absent \(admission)")
        let (status, out, err) = try client(["run", "--profile", "review", "the auth module", "--detach"])
        #expect(status == 0, "\(err)")
        let id = out.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try client(["tail", id, "--follow"])
        let (_, shown, _) = try client(["show", id, "--json"])
        #expect(shown.contains("\"profile\":\"review\"") && shown.contains("--model=opus") && shown.contains("--permission-mode=plan"), "\(shown)")
        #expect(shown.contains("Review: the auth module"), "\(shown)")
        // A profile whose template is the whole prompt launches with none, and refuses one.
        let (fixed, fixedOut, fixedErr) = try client(["run", "--profile", "lint", "--detach"])
        #expect(fixed == 0, "\(fixedErr)")
        let (_, fixedShown, _) = try client(["show", fixedOut.trimmingCharacters(in: .whitespacesAndNewlines), "--json"])
        #expect(fixedShown.contains("\"prompt\":\"Run the linter.\""), "\(fixedShown)")
        let (extra, _, extraErr) = try client(["run", "--profile", "lint", "also this"])
        #expect(extra == 2 && extraErr.contains("profile lint sets the whole prompt"), "\(extraErr)")

        // SIGHUP: a new file is taken; a broken one is refused and the last good one stays.
        files.write("profiles.json", #"{"profiles": {"fast": {"provider": "claude", "effort": "low"}}}"#)
        kill(try #require(server.pid), SIGHUP)
        var now = ""
        for _ in 0..<100 where !now.contains("profile fast") {
            usleep(20_000)
            now = try client(["capabilities"]).1
        }
        #expect(now.contains("profile fast") && !now.contains("profile review"), "\(now)")
        files.write("profiles.json", #"{"profiles": {"broken": {"provider": "claude", "effort": "extreme"}}}"#)
        kill(try #require(server.pid), SIGHUP)
        var log = ""
        for _ in 0..<100 where !log.contains("profiles not reloaded") {
            usleep(20_000)
            log = server.data.read("serve.err") ?? ""
        }
        #expect(log.contains("profiles not reloaded, the old ones stay") && log.contains("effort for claude must be one of"), "\(log)")
        #expect(try client(["capabilities"]).1.contains("profile fast"))
        // A profile past the server's maximum could never launch: refused at load too.
        files.write("profiles.json", #"{"profiles": {"long": {"provider": "claude", "timeoutSeconds": 1800}}}"#)
        kill(try #require(server.pid), SIGHUP)
        for _ in 0..<100 where !log.contains("profile long") {
            usleep(20_000)
            log = server.data.read("serve.err") ?? ""
        }
        #expect(log.contains("profile long: timeoutSeconds must be at most 60 on this server"), "\(log)")
        #expect(try client(["capabilities"]).1.contains("profile fast"))
        let (unknown, _, unknownErr) = try client(["run", "--profile", "review", "x"])
        #expect(unknown == 2 && unknownErr.contains("no profile 'review' on this server; profiles: fast"), "\(unknownErr)")

        // Past the operator's maximum: refused, naming the field and the option.
        let (over, _, overErr) = try client(["run", "claude", "x", "--timeout", "61"])
        #expect(over == 2 && overErr.contains("timeoutSeconds must be at most 60 on this server (serve --max-timeout)"), "\(overErr)")
        // A bad profiles file stops the server at start, naming it.
        files.write("profiles.json", #"{"profiles": {"broken": {"provider": "claude", "effort": "extreme"}}}"#)
        let data = TemporaryDirectory("agentgate-profiles-bad")
        let started = try ChildProcess(
            CommandLineTests.binary, ["serve", "--port", "0", "--data-dir", data.path, "--profiles", files.path + "/profiles.json"],
            environment: ["PATH": "/usr/bin:/bin", "HOME": data.path], stdout: data.file("out"), stderr: data.file("err"))
        #expect(started.wait() != 0 && (data.read("err") ?? "").contains("--profiles"), "\(data.read("err") ?? "")")
    }
}
