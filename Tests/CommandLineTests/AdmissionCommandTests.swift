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
        for _ in 0..<300 where !shown.contains("queued") {
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
        try server.start()
        #expect((server.data.read("serve.out") ?? "").contains("3 queued job(s) wait again, in their order"))
        let again = try client(["jobs", "--status", "queued", "--json"], server)
        let order = again.stdout.split(separator: "\n").compactMap { line -> (String, Int)? in
            guard let job = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                let id = job["id"] as? String, let position = job["queuePosition"] as? Int
            else { return nil }
            return (id, position)
        }.sorted { $0.1 < $1.1 }.map(\.0)
        #expect(order == [waiting[2], waiting[0], waiting[1]], "\(again.stdout)")
        // The re-attached job keeps its slot until it is killed; then they run one at a time.
        #expect(try client(["kill", running], server).status == 0)
        for id in waiting {
            let (ended, text, _) = try client(["tail", id, "--follow"], server)
            #expect(ended == 0 && text.contains("server restarted: still queued"), "\(text)")
        }
        let starts = try waiting.map { id -> Int in
            let (_, json, _) = try client(["show", id, "--json"], server)
            let job = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
            return job?["startedAt"] as? Int ?? 0
        }
        #expect(starts[2] < starts[0] && starts[0] < starts[1], "\(starts)")

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
