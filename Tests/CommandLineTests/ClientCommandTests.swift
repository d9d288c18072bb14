import Foundation
import Glibc
import TestSupport
import Testing

/// `agentgate serve` as a child process on a fixed port, so a test can stop and restart it.
final class ServerProcess {
    let agents = FakeAgents()
    let data = TemporaryDirectory("agentgate-client")
    let port: Int
    private var process: ChildProcess?
    var pid: pid_t? { process?.pid }

    /// The fake agents act on the prompt they read from stdin (Claude's: one stream-json user
    /// message, its stdin kept open for follow-ups).
    static let script = """
        case "$0" in
          *claude) IFS= read -r message; prompt=$(printf '%s' "$message" | sed 's/.*"text":"\\([^"]*\\)".*/\\1/');;
          *) prompt=$(cat);;
        esac
        case "$prompt" in
          fail*) echo 'it broke' >&2; exit 3;;
          hang*) echo 'waiting'; exec sleep 300;;
          stubborn*) trap 'echo ignoring TERM' TERM; echo 'waiting'; while :; do sleep 0.1; done;;
          stray*) setsid sleep 300 </dev/null >/dev/null 2>&1 & echo 'left a stray'; sleep 1; echo 'leaving';;
          slow*) i=1; while [ $i -le 40 ]; do echo "step $i"; sleep 0.1; i=$((i+1)); done;;
          many*) i=1; while [ $i -le 20000 ]; do echo "line $i of many, written whether or not a server reads it"; [ $((i % 500)) -eq 0 ] && sleep 0.15; i=$((i+1)); done;;
          escapes*) cat "$HOME/escapes.jsonl";;
          env*) echo "note=$MYAPP_NOTE args=$*";;
          converse*)
            echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'; sleep 1
            echo '{"type":"result","subtype":"success","is_error":false,"result":"first","num_turns":1,"session_id":"s1"}'
            while IFS= read -r message; do
              echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'
              echo "you said: $(printf '%s' "$message" | sed 's/.*"text":"\\([^"]*\\)".*/\\1/')"
              echo '{"type":"result","subtype":"success","is_error":false,"result":"second","num_turns":1,"session_id":"s1"}'
            done;;
          stream*)
            echo '{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}'
            for word in Writing the answer; do
              printf '{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"%s "}}}\\n' "$word"
              sleep 0.3
            done
            echo '{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Writing the answer"}]}}';;
          *) cat '\(Fixtures.transcript("claude-stream-json-bash-ls-assembled.jsonl"))';;
        esac
        """

    /// Options `serve` gets besides the usual ones (for its next start).
    var extra: [String]
    /// `AGENTGATE_FAIL_POINT` for the next start: the server crashes itself there.
    var failPoint: String?

    /// Jobs outlive the server (serve's default); otherwise `--kill-jobs-on-exit`.
    let surviving: Bool

    init(surviving: Bool = false, extra: [String] = []) throws {
        let probe = try TCPProbe.freePort()
        port = probe
        self.surviving = surviving
        self.extra = (surviving ? [] : ["--kill-jobs-on-exit"]) + extra
        try start()
    }

    var url: String { "http://127.0.0.1:\(port)" }
    var token: String { data.read("token")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "" }

    func start() throws {
        process = try ChildProcess(
            CommandLineTests.binary, [
                "serve", "--port", String(port), "--data-dir", data.path, "--kill-grace", "0.5",
                // `run` sends the caller's directory (the package's); jobs may run anywhere here.
                "--workspace", "/",
            ] + extra,
            environment: ["PATH": agents.searchPath, "HOME": data.path, "FAKE_SCRIPT": Self.script].merging(
                failPoint.map { ["AGENTGATE_FAIL_POINT": $0] } ?? [:]) { $1 },
            stdout: data.file("serve.out"), stderr: data.file("serve.err"))
        for _ in 0..<500 {
            if (data.read("serve.out") ?? "").contains("listening on") { return }
            usleep(10_000)
        }
        throw SocketError(step: "serve did not start", errno: 0)
    }

    /// SIGTERM: the server stops as an operator stops it.
    func stop() {
        process?.signal(SIGTERM)
        process?.wait()
    }

    /// Waits until it ends by itself (a fail point); false after `seconds`.
    func awaitCrash(seconds: Double) -> Bool {
        guard let process else { return true }
        for _ in 0..<Int(seconds * 100) {
            if !ClientCommandTests.alive(process.pid) {
                process.wait()
                return true
            }
            usleep(10_000)
        }
        return false
    }

    /// SIGKILL: a crash, nobody stops the jobs.
    func crash() {
        process?.signal(SIGKILL)
        process?.wait()
    }

    deinit {
        // Stop the server and whatever jobs it left (their groups are their own sessions);
        // jobs that outlive it are stopped through their supervisors.
        process?.signal(SIGTERM)
        process?.wait()
        guard surviving else { return }
        for job in (try? FileManager.default.contentsOfDirectory(atPath: data.path + "/jobs")) ?? [] {
            let record = data.path + "/jobs/\(job)/agent/agent.json"
            guard let bytes = FileManager.default.contents(atPath: record),
                let agent = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any]
            else { continue }
            if let supervisor = agent["supervisor"] as? Int32, ClientCommandTests.alive(supervisor) { kill(supervisor, SIGTERM) }
        }
    }
}

enum TCPProbe {
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A client command running in the background (to interrupt, or to outlive a restart).
final class ClientProcess {
    let child: ChildProcess
    let files = TemporaryDirectory("agentgate-client-run")

    /// - Parameter direct: run this executable with `arguments` as they are, instead of agentgate.
    init(_ arguments: [String], server: ServerProcess, environment: [String: String] = [:], direct: String? = nil, stdin: String = "/dev/null") throws {
        var all = arguments
        if direct == nil {
            if !arguments.contains("--server") && arguments.first != "token" { all += ["--server", server.url] }
            all += ["--data-dir", server.data.path]
        }
        child = try ChildProcess(
            direct ?? CommandLineTests.binary, all,
            environment: ["PATH": "/usr/bin:/bin", "HOME": server.data.path].merging(environment) { $1 },
            stdin: stdin, stdout: files.file("out"), stderr: files.file("err"))
    }

    var pid: pid_t { child.pid }

    /// Waits for the exit; returns (status, stdout, stderr).
    func finish() -> (Int32, String, String) {
        let status = child.wait()
        return (status, files.read("out") ?? "", files.read("err") ?? "")
    }
}

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct ClientCommandTests {
    let server: ServerProcess

    init() throws {
        server = try ServerProcess()
    }

    /// Runs a client command to its end.
    func client(_ arguments: [String], environment: [String: String] = [:], server other: ServerProcess? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        let (status, stdout, stderr) = try ClientProcess(arguments, server: other ?? server, environment: environment).finish()
        return (status, stdout, stderr)
    }

    func jobID(status: String, server other: ServerProcess? = nil) throws -> String? {
        let listed = try client(["jobs", "--status", status, "--json"], server: other)
        return listed.stdout.split(separator: "\n").compactMap { line -> String? in
            ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any])?["id"] as? String
        }.first
    }

    /// The job (`show --json`) once it is done with `messages` follow-ups, nil if it never is.
    func waitForJob(id: String, messages: Int) throws -> [String: Any]? {
        for _ in 0..<200 {
            let shown = try client(["show", id, "--json"])
            if let job = (try? JSONSerialization.jsonObject(with: Data(shown.stdout.utf8))) as? [String: Any],
                job["status"] as? String == "done", job["messages"] as? Int == messages {
                return job
            }
            usleep(50_000)
        }
        return nil
    }

    func waitForJob(status: String) throws -> String {
        for _ in 0..<200 {
            if let id = try jobID(status: status) { return id }
            usleep(25_000)
        }
        throw SocketError(step: "no \(status) job", errno: 0)
    }

    @Test func runStreamsTheLogAndExitsWithTheJobsOutcome() throws {
        let done = try client(["run", "claude", "list the files"])
        #expect(done.status == 0)
        #expect(done.stdout.contains("→ Bash: ls -la"))
        #expect(done.stdout.contains(" done (exit 0)"))
        #expect(!done.stdout.contains("\u{1B}["))  // piped: plain lines, no colour

        let failed = try client(["run", "claude", "fail"])
        #expect(failed.status == 1)
        #expect(failed.stdout.contains("[stderr] it broke"))

        let json = try client(["run", "claude", "list", "--json"])
        #expect(json.status == 0)
        let events = json.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        #expect(events.count == json.stdout.split(separator: "\n").count)
        #expect(events.compactMap { $0["seq"] as? Int } == Array(1...events.count))
        #expect(events.contains { $0["type"] as? String == "job:event" })
        #expect(events.last?["type"] as? String == "job:completed")

        let invalid = try client(["run", "claude", "x", "--cwd", "/no/such/dir"])
        #expect(invalid.status == 2)
        #expect(invalid.stderr.contains("cwd"))
    }

    /// On a terminal (a pty from util-linux `script`): colour and a status line on stderr.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func onATerminalTheLogIsColouredWithAStatusLine() throws {
        let command = "'\(CommandLineTests.binary)' run claude slow --server \(server.url) --data-dir '\(server.data.path)'"
        let terminal = try ClientProcess(["-qec", command, "/dev/null"], server: server, direct: "/usr/bin/script")
        let (status, stdout, _) = terminal.finish()
        #expect(status == 0)
        #expect(stdout.contains("\u{1B}[2m[agentgate] job"))  // system lines dimmed
        #expect(stdout.contains("⠋ running") || stdout.contains("⠙ running"))  // the spinner's status line
        #expect(stdout.contains("\u{1B}[32m[agentgate] job"))  // done in green
    }

    /// `run --interactive`: lines typed while the job runs are follow-ups; `send` does the
    /// same from elsewhere, and is refused once the job has ended.
    @Test func runInteractiveSendsEachLineAsAFollowUp() throws {
        let files = TemporaryDirectory("agentgate-interactive")
        files.write("typed", "\nnow the tests too\n/answer 5\n")
        let run = try ClientProcess(["run", "claude", "converse", "--interactive"], server: server, stdin: files.file("typed"))
        let (status, out, err) = run.finish()
        #expect(status == 0, "\(out)\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        let said = try #require(lines.firstIndex(of: "› now the tests too"), "\(out)")
        let answered = try #require(lines.firstIndex(of: "you said: now the tests too"), "\(out)")
        #expect(said < answered && lines.last?.hasSuffix(" done (exit 0)") == true, "\(out)")
        // The blank line is skipped; a malformed /answer is explained, not sent.
        #expect(err.contains("/answer REQUEST OPTION") && !out.contains("› /answer"), "\(err)")
        let id = try #require(lines.first?.split(separator: " ").dropFirst(2).first.map(String.init))
        // Ended: a message continues it, its session resumed as the job's next run.
        let late = try client(["send", id, "and more"])
        #expect(late.status == 0 && late.stdout.contains("its agent's session resumes as the job's next run"), "\(late)")
        let again = try #require(try waitForJob(id: id, messages: 2))
        #expect((again["command"] as? [String])?.contains("--resume=s1") == true, "\(again)")
        let unknown = try client(["send", "0123456789abcdef", "hi"])
        #expect(unknown.status == 5)
    }

    /// `run --interactive` goes on after the job ended: a line typed then continues it (its
    /// session resumed) and is followed to its new end; the command ends with stdin.
    @Test func runInteractiveContinuesTheJobWithALineTypedAfterItEnded() throws {
        let command = "(echo; sleep 4; echo 'and the docs'; sleep 1) | '\(CommandLineTests.binary)' run claude converse --interactive --server \(server.url) --data-dir '\(server.data.path)'"
        let run = try ClientProcess(["-c", command], server: server, direct: "/bin/sh")
        let (status, out, err) = run.finish()
        #expect(status == 0, "\(out)\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.hasSuffix(" done (exit 0)") }.count == 2, "\(out)")
        let said = try #require(lines.firstIndex(of: "› and the docs"), "\(out)\(err)")
        #expect(said > (lines.firstIndex { $0.hasSuffix(" done (exit 0)") } ?? .max), "\(out)")
        #expect(lines.last?.hasSuffix(" done (exit 0)") == true && err.contains("type a message to continue it"), "\(out)\(err)")
    }

    @Test func aKilledJobExits137AndKillReportsUnknownAndFinishedJobs() throws {
        let running = try ClientProcess(["run", "claude", "hang"], server: server)
        let id = try waitForJob(status: "running")
        let killed = try client(["kill", id])
        #expect(killed.status == 0)
        let (status, stdout, _) = running.finish()
        #expect(status == 137)
        #expect(stdout.contains(" killed"))
        #expect(try client(["kill", id]).status == 7)
        #expect(try client(["kill", "ffffffffffffffff"]).status == 5)
        #expect(try client(["kill"]).status == 64)  // neither an id nor --all
        // What is not an id is refused before any request (`kill '?'` once killed every job).
        for bad in ["?", "", "../jobs", "a/b", "x y"] {
            let refused = try client(["kill", bad])
            #expect(refused.status == 64 && refused.stderr.contains("not a job id"), "\(bad): \(refused)")
            #expect(try client(["show", bad]).status == 64)
            #expect(try client(["tail", bad]).status == 64)
        }

        _ = try ClientProcess(["run", "claude", "hang", "--detach"], server: server).finish()
        _ = try ClientProcess(["run", "claude", "hang", "--detach"], server: server).finish()
        let all = try client(["kill", "--all"])
        #expect(all.status == 0)
        #expect(all.stdout.contains("killed 2 job(s)"))

        // Delete: finished jobs only, and only what is an id.
        let deleted = try client(["delete", id])
        #expect(deleted.status == 0 && deleted.stdout.contains("deleted \(id)"), "\(deleted)")
        #expect(try client(["show", id]).status == 5)
        #expect(try client(["delete", id]).status == 5)
        #expect(try client(["delete", "?"]).status == 64)
        _ = try ClientProcess(["run", "claude", "hang", "--detach"], server: server).finish()
        let live = try waitForJob(status: "running")
        #expect(try client(["delete", live]).status == 7)
        _ = try client(["kill", "--all"])
    }

    @Test func ctrlCDetachesOrKills() throws {
        let detached = try ClientProcess(["run", "claude", "hang"], server: server)
        let id = try waitForJob(status: "running")
        kill(detached.pid, SIGINT)
        let (status, _, stderr) = detached.finish()
        #expect(status == 130)
        #expect(stderr.contains("agentgate tail \(id) --follow"))
        #expect(try jobID(status: "running") == id)  // it keeps running

        _ = try client(["kill", "--all"])
        let killing = try ClientProcess(["run", "claude", "hang", "--kill-on-interrupt"], server: server)
        usleep(300_000)
        _ = try waitForJob(status: "running")
        kill(killing.pid, SIGINT)
        #expect(killing.finish().0 == 137)
    }

    @Test func detachJobsShowTailCapabilitiesAndToken() throws {
        let detached = try client(["run", "claude", "list", "--detach", "--label", "detached"])
        #expect(detached.status == 0)
        let id = detached.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.count == 16)
        var shown = try client(["show", id])
        for _ in 0..<100 where !shown.stdout.contains("status    done") {
            usleep(30_000)
            shown = try client(["show", id])
        }
        #expect(shown.status == 0)
        #expect(shown.stdout.contains("status    done (exit 0)"))
        #expect(shown.stdout.contains("label     detached"))
        #expect(shown.stdout.contains("cost      $0.2472"))
        #expect(shown.stdout.contains("prompt    list"))
        #expect(shown.stdout.firstMatch(of: /started   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/) != nil)
        #expect(try client(["show", "ffffffffffffffff"]).status == 5)

        let jobs = try client(["jobs"])
        #expect(jobs.status == 0)
        #expect(jobs.stdout.contains(id))
        #expect(jobs.stdout.hasPrefix("ID "))
        // Each row: its start time, then the label and the prompt's first line.
        let row = try #require(jobs.stdout.split(separator: "\n").first { $0.hasPrefix(id) })
        #expect(row.firstMatch(of: /\d\d:\d\d:\d\d/) != nil, "\(row)")
        #expect(row.hasSuffix("[detached] list"), "\(row)")
        #expect(try client(["jobs", "--status", "killed"]).stdout.contains("no killed jobs"))
        #expect(try client(["jobs", "--status", "bogus"]).status == 2)
        // Filters and the page size go to the server.
        let labelled = try client(["jobs", "--label", "detached", "--json"]).stdout.split(separator: "\n")
        #expect(labelled.count == 1 && labelled[0].contains(id))
        #expect(try client(["jobs", "--limit", "1", "--json"]).stdout.split(separator: "\n").count == 1)
        #expect(try client(["jobs", "--provider", "codex"]).stdout.contains("no jobs"))

        let tail = try client(["tail", id])
        #expect(tail.status == 0)
        #expect(tail.stdout.contains("→ Bash: ls -la"))
        let later = try client(["tail", id, "--since", "3"])
        #expect(!later.stdout.contains("running: claude"))
        #expect(later.stdout.contains(" done (exit 0)"))
        let followed = try client(["tail", id, "--follow"])
        #expect(followed.status == 0)
        #expect(followed.stdout == tail.stdout)
        #expect(try client(["tail", "ffffffffffffffff", "--follow"]).status == 5)

        let capabilities = try client(["capabilities", "--refresh"])
        #expect(capabilities.status == 0)
        #expect(capabilities.stdout.contains("available: claude, codex, opencode, goose"))

        let token = try client(["token"])
        #expect(token.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == server.token)
        let following = try ClientProcess(["run", "claude", "hang"], server: server)
        _ = try waitForJob(status: "running")
        let rotated = try client(["token", "--rotate"])
        let newToken = rotated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(rotated.status == 0)
        #expect(newToken.count == 64 && newToken != token.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(server.token == newToken)
        // The running server takes the new token within a second and refuses the old one.
        var status: Int32 = -1
        for _ in 0..<30 where status != 0 {
            usleep(100_000)
            status = try client(["jobs"]).status
        }
        #expect(status == 0)
        // A client that was following a job with the old token is told, not left attached.
        let (followStatus, _, followError) = following.finish()
        #expect(followStatus == 4)
        #expect(followError.contains("the token was rotated"))
        let old = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try client(["jobs"], environment: ["AGENTGATE_TOKEN": old]).status == 4)
    }

    /// Found by the newcomer trial: a server started with `--token-file` could not be reached
    /// by the client commands, and `token --rotate` rotated the data dir's file instead,
    /// saying the server would use it.
    @Test func aServerWithATokenFileIsReachedAndRotatedThroughIt() throws {
        let files = TemporaryDirectory("agentgate-token-file")
        let file = files.file("token")
        let first = String(repeating: "7a", count: 32)
        files.write("token", first + "\n", mode: 0o600)
        let other = try ServerProcess(extra: ["--token-file", file])
        let withoutFile = try client(["jobs"], server: other)
        #expect(withoutFile.status == 4 && withoutFile.stderr.contains("--token-file"))
        #expect(try client(["jobs", "--token-file", file], server: other).status == 0)
        let rotated = try client(["token", "--rotate", "--token-file", file], server: other)
        #expect(rotated.status == 0)
        let second = rotated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(second.count == 64 && second != first && files.read("token")?.hasPrefix(second) == true)
        var refused: Int32 = 0
        for _ in 0..<30 where refused != 4 {
            usleep(100_000)
            refused = try client(["jobs"], environment: ["AGENTGATE_TOKEN": first], server: other).status
        }
        #expect(refused == 4)  // the running server took the rotated file
        #expect(try client(["jobs", "--token-file", file], server: other).status == 0)
    }

    /// Found by the newcomer trial: `run` had no way to set maxTurns, resumeSession or env.
    @Test func runSetsEnvMaxTurnsAndResume() throws {
        let other = try ServerProcess(extra: ["--pass-env", "MYAPP_NOTE"])
        let run = try client(["run", "claude", "env", "--env", "MYAPP_NOTE=hello=world", "--max-turns", "3", "--resume", "abc-123"], server: other)
        #expect(run.status == 0)
        #expect(run.stdout.contains("note=hello=world"), "\(run.stdout)")
        #expect(run.stdout.contains("--max-turns=3") && run.stdout.contains("--resume=abc-123"), "\(run.stdout)")
        let session = try client(["run", "claude", "env", "--session", "def-456"], server: other)
        #expect(session.stdout.contains("--resume=def-456"), "\(session.stdout)")
        let refused = try client(["run", "claude", "env", "--env", "OTHER=1"], server: other)
        #expect(refused.status == 2 && refused.stderr.contains("OTHER"))
        #expect(try client(["run", "claude", "env", "--env", "NOEQUALS"], server: other).status == 64)
    }

    @Test func errorsAreOneLineWithADistinctExitCode() throws {
        let refused = try client(["jobs", "--server", "http://127.0.0.1:1"])
        #expect(refused.status == 3)
        #expect(refused.stderr.split(separator: "\n").count == 1)
        #expect(refused.stderr.contains("cannot reach"))
        let wrongToken = try client(["jobs"], environment: ["AGENTGATE_TOKEN": String(repeating: "0", count: 64)])
        #expect(wrongToken.status == 4)
        #expect(wrongToken.stderr.split(separator: "\n").count == 1)
        let unknown = try client(["tail", "ffffffffffffffff"])
        #expect(unknown.status == 5)
        #expect(unknown.stderr.split(separator: "\n").count == 1)

        // The server dies while `run` streams: exit 6 and how to re-attach.
        let running = try ClientProcess(["run", "claude", "hang"], server: server)
        _ = try waitForJob(status: "running")
        server.crash()
        let (status, _, stderr) = running.finish()
        #expect(status == 6)
        #expect(stderr.contains("went away"))
        #expect(!stderr.contains("Fatal error"))
        try server.start()  // stops the job the crash orphaned (it comes back interrupted)
        #expect(try jobID(status: "interrupted") != nil)
    }

    @Test func tailFollowSurvivesAServerRestartWithoutLosingOrRepeatingALine() throws {
        let follower = try ClientProcess(["run", "claude", "slow", "--detach"], server: server)
        let id = follower.finish().1.trimmingCharacters(in: .whitespacesAndNewlines)
        let tail = try ClientProcess(["tail", id, "--follow"], server: server)
        usleep(1_200_000)  // some steps printed
        server.crash()
        usleep(300_000)
        try server.start()  // the job is now interrupted; tail resumes and sees the end
        let (status, stdout, stderr) = tail.finish()
        #expect(status == 1)
        #expect(stderr.contains("reconnecting") || stderr.contains("retrying"))
        let steps = stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init)
        #expect(!steps.isEmpty)
        #expect(steps == (1...max(1, steps.count)).map { "step \($0)" })
        #expect(Set(steps).count == steps.count)
        #expect(stdout.contains(" interrupted"))
        let history = try client(["tail", id])
        #expect(history.stdout == stdout)
    }

    /// A job outlives its server (serve's default): killed three times (SIGKILL) and
    /// stopped once (SIGTERM) while the job runs, each new server takes the job up again;
    /// `tail --follow` sees every step once, in order, and the job ends as its agent did,
    /// not `interrupted`.
    @Test func aJobOutlivesThreeServerCrashesAndAStopWithNoLineLostOrRepeated() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("slow", on: surviving)
        let tail = try ClientProcess(["tail", id, "--follow"], server: surviving)
        for round in 0..<4 {
            usleep(600_000)
            if round == 3 {
                surviving.stop()
                // The stop said that the job works on and who takes it up.
                let said = surviving.data.read("serve.err") ?? ""
                #expect(said.contains("1 running job(s) keep working under their supervisors"), "\(said)")
            } else {
                surviving.crash()
            }
            usleep(300_000)
            try surviving.start()
        }
        let (status, stdout, stderr) = tail.finish()
        #expect(status == 0, "\(stderr)")
        let steps = stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init)
        #expect(steps == (1...40).map { "step \($0)" })
        #expect(!stdout.contains("interrupted"))
        let history = try client(["tail", id], server: surviving)
        #expect(history.stdout == stdout)
        // Each restart said so in the operator's log.
        let log = surviving.data.read("serve.err") ?? ""
        // (The last restart may come after the job ended: then only its end is recorded.)
        #expect(log.contains("re-attached job \(id)") || log.contains("job \(id) ended while no server ran"), "\(log)")
        // `show` says so too.
        let shown = try client(["show", id], server: surviving).stdout
        #expect(shown.contains("re-attached after 4 server restarts") || shown.contains("re-attached after 3 server restarts"), "\(shown)")
    }

    /// A job that ends while no server runs ends as its agent did when the next one starts:
    /// its output read from the spools, its status from the supervisor's exit record.
    @Test func aJobThatEndsWhileNoServerRunsIsFinishedByTheNextOne() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("slow", on: surviving)
        usleep(500_000)
        surviving.crash()
        usleep(4_500_000)  // the 40 steps take 4 s
        try surviving.start()
        let (status, stdout, _) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(status == 0)
        #expect(stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init) == (1...40).map { "step \($0)" })
        #expect(try jobID(status: "done", server: surviving) == id)
    }

    /// The brief's first test: a 20,000-line job, its server SIGKILLed three times and each
    /// time down for a second (more than 64 KiB of output written meanwhile): every line
    /// exactly once, in order, with contiguous seqs, and the agent never held up.
    @Test func aLongJobOutlivesThreeCrashesEachLongerThanAPipeBuffer() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("many", on: surviving)
        let spool = surviving.data.path + "/jobs/\(id)/agent/stdout"
        for _ in 0..<3 {
            usleep(800_000)
            surviving.crash()
            let before = Self.size(spool) ?? 0
            usleep(1_000_000)
            let after = Self.size(spool) ?? 0
            #expect(after - before > 64 * 1024, "the agent wrote \(after - before) bytes while no server ran")
            try surviving.start()
        }
        let (status, stdout, stderr) = try ClientProcess(["tail", id, "--follow", "--json"], server: surviving).finish()
        #expect(status == 0, "\(stderr)")
        let (seqs, lines) = Self.seqsAndManyLines(stdout)
        #expect(!seqs.isEmpty && seqs == Array(1...seqs.count))
        #expect(lines.count == 20_000)
        #expect(lines == (1...20_000).map { "line \($0) of many, written whether or not a server reads it" })
    }

    /// A job taken up by a new server is killed like any other: `agentgate kill` reaches its
    /// agent through the supervisor the server did not start, and nothing of it is left.
    @Test func aJobTakenUpAfterACrashIsKilledWholly() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("hang", on: surviving)
        let agentFile = surviving.data.path + "/jobs/\(id)/agent/agent.json"
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: agentFile) { usleep(10_000) }
        let record = try #require((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: agentFile)))) as? [String: Any])
        let agent = try #require(record["pid"] as? Int32)
        let supervisor = try #require(record["supervisor"] as? Int32)
        surviving.crash()
        try surviving.start()
        #expect(Self.alive(agent))  // still working under its supervisor
        let killed = try client(["kill", id], server: surviving)
        #expect(killed.status == 0, "\(killed.stderr)")
        var gone = false
        for _ in 0..<300 where !gone {
            gone = !Self.alive(agent) && !Self.alive(supervisor)
            if !gone { usleep(10_000) }
        }
        #expect(gone)
        let (_, stdout, _) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(stdout.contains("killed"))
        #expect(try jobID(status: "killed", server: surviving) == id)
    }

    /// An SSE viewer resumes across each restart with `Last-Event-ID`, as browsers do: with
    /// jobs that outlive the server every event of the job arrives once, in seq order, to its end.
    @Test func anSSEViewerResumesAcrossRestartsWithNoEventLostOrRepeated() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("slow", on: surviving)
        let follower = SSEFollower(port: surviving.port, token: surviving.token, job: id)
        let thread = Thread { follower.follow() }
        thread.start()
        for _ in 0..<2 {
            usleep(1_000_000)
            surviving.crash()
            usleep(300_000)
            try surviving.start()
        }
        for _ in 0..<1_500 where !follower.done { usleep(10_000) }
        let (ids, types, connections) = follower.result
        #expect(types.last == "job:completed")
        #expect(!ids.isEmpty && ids == Array(1...ids.count))
        #expect(connections >= 3)
        #expect(types.filter { $0 == "job:log" }.count >= 40)
    }

    /// --orphan-timeout: a job left with no server for longer is stopped by its supervisor,
    /// and the next server ends it saying why.
    @Test func aJobLeftWithNoServerPastTheOrphanTimeoutIsStopped() throws {
        let surviving = try ServerProcess(surviving: true, extra: ["--orphan-timeout", "1"])
        let id = try Self.detached("hang", on: surviving)
        usleep(1_500_000)  // longer than the timeout, with the server attached: still running
        #expect(try jobID(status: "running", server: surviving) == id)
        surviving.crash()
        let exitRecord = surviving.data.path + "/jobs/\(id)/agent/exit.json"
        for _ in 0..<400 where !FileManager.default.fileExists(atPath: exitRecord) { usleep(10_000) }
        #expect(FileManager.default.fileExists(atPath: exitRecord))
        try surviving.start()
        let (status, stdout, _) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(status != 0)
        #expect(stdout.contains("no server was attached for longer than --orphan-timeout"), "\(stdout)")
        // Stopped by a limit, said as such: failed, `endReason` orphan_timeout.
        let shown = try client(["show", id, "--json"], server: surviving).stdout
        let job = try #require((try? JSONSerialization.jsonObject(with: Data(shown.utf8))) as? [String: Any], "\(shown)")
        #expect(job["status"] as? String == "failed")
        let result = job["result"] as? [String: Any]
        #expect(result?["endReason"] as? String == "orphan_timeout", "\(shown)")
        #expect((result?["errors"] as? [String])?.first?.hasPrefix("stopped: no server was attached for longer than --orphan-timeout") == true, "\(shown)")
    }

    /// The brief's supervisor-death test: the supervisor SIGKILLed mid-job, once with the
    /// server attached and once while no server runs. The agent works on, every step arrives
    /// once, and the job ends as the agent did (its status from the kernel, not a record).
    @Test(arguments: [false, true]) func aJobWhoseSupervisorIsKilledIsFollowedToItsEnd(serverDown: Bool) throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("slow", on: surviving)
        let record = try Self.agentRecord(surviving, id)
        let agent = try #require(record["pid"] as? Int32)
        let supervisor = try #require(record["supervisor"] as? Int32)
        usleep(800_000)
        if serverDown { surviving.crash() }
        kill(supervisor, SIGKILL)
        usleep(300_000)
        #expect(Self.alive(agent))
        if serverDown { try surviving.start() }
        let (status, stdout, stderr) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init) == (1...40).map { "step \($0)" })
        #expect(stdout.contains("supervisor ended unexpectedly"), "\(stdout)")
        #expect(Self.processes(ofJob: id).isEmpty)
        if !serverDown {
            // The agent was re-parented to the server (a subreaper), which reaped it.
            #expect(status == 0, "\(stdout) \(stderr)")
            #expect(try jobID(status: "done", server: surviving) == id)
        } else {
            // Re-parented to whoever is init here: its status comes from the kernel once that
            // reaps it (PIDFD_INFO_EXIT); an init that never reaps leaves it unknown, and said.
            #expect(status == 0 || stdout.contains("exit status is unknown"), "\(stdout) \(stderr)")
        }
    }

    /// Both ended while no server ran: the supervisor SIGKILLed, then the agent finished (attacker
    /// trial: the job was `interrupted` with a fraction of its output). Its spools are read to
    /// the end; its exit status is unknown, and said to be.
    @Test func aJobWhoseSupervisorAndAgentEndedWhileNoServerRanKeepsItsOutput() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("slow", on: surviving)
        let record = try Self.agentRecord(surviving, id)
        let agent = try #require(record["pid"] as? Int32)
        let supervisor = try #require(record["supervisor"] as? Int32)
        usleep(500_000)
        surviving.crash()
        kill(supervisor, SIGKILL)
        for _ in 0..<1_500 where Self.alive(agent) { usleep(10_000) }
        #expect(!Self.alive(agent))
        try surviving.start()
        let (_, stdout, _) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init) == (1...40).map { "step \($0)" })
        // (Or, when the next server still finds the supervisor or the agent as a zombie nobody
        // reaped — this test process may be a subreaper — it sees them end as it does live ones.)
        #expect(stdout.contains("the agent's exit status is unknown") || stdout.contains("supervisor ended unexpectedly"), "\(stdout)")
        #expect(!stdout.contains("interrupted"), "\(stdout)")
        // Failed, with no exit code or signal made up for it.
        #expect(!stdout.contains("failed (SIGKILL)") && !stdout.contains("failed (exit"), "\(stdout)")
    }

    /// Jobs working on with no server are the next server's (attacker trial: an `exec` in
    /// between ended them, and so did a `--kill-jobs-on-exit` server): `exec` leaves them alone
    /// and keeps its record apart; a `--kill-jobs-on-exit` server takes them up (and stops
    /// them with it).
    @Test func jobsWorkingOnWithNoServerAreLeftToExecAndTakenUpByEveryServer() throws {
        let surviving = try ServerProcess(surviving: true, extra: ["--allow-custom-commands"])
        let id = try Self.detached("slow", on: surviving)
        let agent = try #require(try Self.agentRecord(surviving, id)["pid"] as? Int32)
        surviving.stop()
        let exec = try ClientProcess(
            ["exec", "custom", "--allow-custom-commands", "--data-dir", surviving.data.path, "--", "/bin/echo", "hello from exec"], server: surviving,
            direct: CommandLineTests.binary)
        let (status, stdout, stderr) = exec.finish()
        #expect(status == 0, "\(stderr)")
        #expect(stdout.contains("hello from exec"))
        #expect(stderr.contains("1 job(s) of the last server work on"), "\(stderr)")
        #expect(Self.alive(agent))
        surviving.extra += ["--kill-jobs-on-exit"]
        try surviving.start()
        let (_, followed, _) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(followed.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init) == (1...40).map { "step \($0)" })
        #expect(try jobID(status: "done", server: surviving) == id)
        #expect(try client(["jobs", "--json"], server: surviving).stdout.split(separator: "\n").count == 1)
    }

    /// An agent that leaves a `setsid` process behind and exits while no server runs: its
    /// supervisor ends the stray too, so nothing of the job outlives it.
    @Test func anAgentThatExitsWhileNoServerRunsLeavesNoProcessBehind() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("stray", on: surviving)
        _ = try Self.agentRecord(surviving, id)
        usleep(300_000)
        #expect(Self.processes(ofJob: id).count >= 2)  // the agent and its stray
        surviving.crash()
        let exitRecord = surviving.data.path + "/jobs/\(id)/agent/exit.json"
        for _ in 0..<400 where !FileManager.default.fileExists(atPath: exitRecord) { usleep(10_000) }
        #expect(FileManager.default.fileExists(atPath: exitRecord))
        #expect(Self.processes(ofJob: id).isEmpty, "\(Self.processes(ofJob: id))")
        try surviving.start()
        #expect(try ClientProcess(["tail", id, "--follow"], server: surviving).finish().0 == 0)
    }

    /// The brief's crash points inside ingestion: the server crashes itself (SIGKILL) right
    /// after appending events but before saving the job's record, halfway through writing a
    /// batch of events (a torn last line), and between the agent's exit and anything of its
    /// end being recorded. After a clean restart every line is there exactly once, the seqs
    /// are contiguous, and the completion hook ran exactly once.
    @Test(arguments: ["events-appended", "events-torn", "agent-exited"])
    func aCrashInsideIngestionLosesAndRepeatsNothing(failPoint: String) throws {
        let hookDirectory = TemporaryDirectory("agentgate-hook")
        let hookRuns = hookDirectory.file("runs")
        let surviving = try ServerProcess(surviving: true, extra: ["--on-complete", "echo run >> '\(hookRuns)'; echo '{}'"])
        let id = try Self.detached("many", on: surviving)
        usleep(700_000)
        surviving.crash()
        surviving.failPoint = failPoint
        try surviving.start()
        #expect(surviving.awaitCrash(seconds: 20), "the server never reached \(failPoint)")
        surviving.failPoint = nil
        try surviving.start()
        let (status, stdout, stderr) = try ClientProcess(["tail", id, "--follow", "--json"], server: surviving).finish()
        #expect(status == 0, "\(stderr)")
        let (seqs, lines) = Self.seqsAndManyLines(stdout)
        #expect(!seqs.isEmpty && seqs == Array(1...seqs.count))
        #expect(lines == (1...20_000).map { "line \($0) of many, written whether or not a server reads it" })
        #expect((try? String(contentsOfFile: hookRuns, encoding: .utf8)) == "run\n")
    }

    /// The brief's restart storm: the server SIGKILLed 20 times, 200 ms apart, while a job
    /// writes thousands of lines a second, and its event log's last line torn by a few bytes
    /// once while it is down. Every line once, seqs contiguous, and the server that stays
    /// holds no more descriptors than one that never restarted.
    @Test func aRestartStormLosesAndRepeatsNothing() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("many", on: surviving)
        let log = surviving.data.path + "/jobs/\(id)/events.ndjson"
        for round in 0..<20 {
            usleep(200_000)
            surviving.crash()
            if round == 10, let size = Self.size(log) {
                #expect(truncate(log, off_t(size - 7)) == 0)  // a torn last line
            }
            try surviving.start()
        }
        let (status, stdout, stderr) = try ClientProcess(["tail", id, "--follow", "--json"], server: surviving).finish()
        #expect(status == 0, "\(stderr)")
        let (seqs, lines) = Self.seqsAndManyLines(stdout)
        #expect(!seqs.isEmpty && seqs == Array(1...seqs.count))
        #expect(lines == (1...20_000).map { "line \($0) of many, written whether or not a server reads it" })
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(try #require(surviving.pid))/fd").count
        #expect(descriptors < 40, "\(descriptors) descriptors open")
        #expect(Self.processes(ofJob: id).isEmpty)
    }

    /// Completion exactly once: the server crashes right after the hook ran and its outcome was
    /// recorded, before the job completed. The next server completes the job with that outcome
    /// and does not run the hook again.
    @Test func theCompletionHookRunsOnceThoughTheServerDiesAfterIt() throws {
        let hookDirectory = TemporaryDirectory("agentgate-hook")
        let hookRuns = hookDirectory.file("runs")
        let surviving = try ServerProcess(surviving: true, extra: ["--on-complete", "echo run >> '\(hookRuns)'; echo '{\"verdict\":\"ok\"}'"])
        surviving.failPoint = "hook-recorded"
        surviving.crash()
        try surviving.start()
        let id = try Self.detached("slow", on: surviving)
        #expect(surviving.awaitCrash(seconds: 20), "the server never reached hook-recorded")
        surviving.failPoint = nil
        try surviving.start()
        let (status, _, stderr) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(status == 0, "\(stderr)")
        #expect((try? String(contentsOfFile: hookRuns, encoding: .utf8)) == "run\n")
        let shown = try client(["show", id, "--json"], server: surviving)
        #expect(shown.stdout.contains("\"verdict\":\"ok\""), "\(shown.stdout)")
    }

    /// `agentgate kill` while no server runs: the supervisor stops the job's whole group, and
    /// the next server records it `killed` (on request), not failed or interrupted.
    @Test func aJobIsKilledWhileNoServerRuns() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("hang", on: surviving)
        let record = try Self.agentRecord(surviving, id)
        let agent = try #require(record["pid"] as? Int32)
        surviving.crash()
        #expect(Self.alive(agent))
        let killed = try client(["kill", id], server: surviving)
        #expect(killed.status == 0, "\(killed.stderr)")
        #expect(killed.stdout.contains("no server is running"))
        var gone = false
        for _ in 0..<300 where !gone {
            gone = Self.processes(ofJob: id).isEmpty
            if !gone { usleep(10_000) }
        }
        #expect(gone)
        // Asked again: it has ended; an id that names nothing: no such job.
        #expect(try client(["kill", id], server: surviving).status == 7)
        #expect(try client(["kill", "0123456789abcdef"], server: surviving).status == 5)
        try surviving.start()
        let (_, stdout, _) = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(stdout.contains("killed"), "\(stdout)")
        #expect(try jobID(status: "killed", server: surviving) == id)
        // With a server running, an unreachable address is not taken for "no server".
        let elsewhere = try client(["kill", id, "--server", "http://127.0.0.1:1"], server: surviving)
        #expect(elsewhere.status == 3)
        #expect(elsewhere.stderr.contains("in use by"), "\(elsewhere.stderr)")
    }

    /// A kill the server did not see through (it crashed within the grace, attacker trial: the
    /// next server ended the job failed, by SIGKILL): the request was written down, and the
    /// next server ends the job `killed`.
    @Test func aKillTheServerDidNotSeeThroughStillEndsTheJobKilled() throws {
        let surviving = try ServerProcess(surviving: true)
        let id = try Self.detached("stubborn", on: surviving)
        _ = try Self.agentRecord(surviving, id)
        usleep(300_000)
        #expect(try client(["kill", id], server: surviving).status == 0)
        surviving.crash()
        let exitRecord = surviving.data.path + "/jobs/\(id)/agent/exit.json"
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: exitRecord) { usleep(10_000) }
        #expect(FileManager.default.fileExists(atPath: exitRecord))
        try surviving.start()
        _ = try ClientProcess(["tail", id, "--follow"], server: surviving).finish()
        #expect(try jobID(status: "killed", server: surviving) == id)
        // It ended while no server ran: not re-attached.
        #expect(!(try client(["show", id], server: surviving).stdout.contains("re-attached")))
    }

    /// `agentgate kill --all` while no server runs: every running job is stopped through its
    /// supervisor, and the next server records each `killed`.
    @Test func everyJobIsKilledWhileNoServerRuns() throws {
        let surviving = try ServerProcess(surviving: true)
        let ids = try (0..<2).map { _ in try Self.detached("hang", on: surviving) }
        for id in ids { _ = try Self.agentRecord(surviving, id) }
        surviving.crash()
        let killed = try client(["kill", "--all"], server: surviving)
        #expect(killed.status == 0, "\(killed.stderr)")
        #expect(killed.stdout.hasPrefix("killed 2 job(s) (no server is running"), "\(killed.stdout)")
        var gone = false
        for _ in 0..<300 where !gone {
            gone = ids.allSatisfy { Self.processes(ofJob: $0).isEmpty }
            if !gone { usleep(10_000) }
        }
        #expect(gone)
        #expect(try client(["kill", "--all"], server: surviving).stdout.hasPrefix("killed 0 job(s)"))
        try surviving.start()
        for id in ids { _ = try ClientProcess(["tail", id, "--follow"], server: surviving).finish() }
        let listed = try client(["jobs", "--status", "killed", "--json"], server: surviving).stdout
        #expect(ids.allSatisfy { listed.contains($0) }, "\(listed)")
    }

    /// From `tail --json` of a `many` job: every event's seq, and the agent's numbered lines.
    static func seqsAndManyLines(_ stdout: String) -> (seqs: [Int], lines: [String]) {
        var seqs: [Int] = []
        var lines: [String] = []
        for line in stdout.split(separator: "\n") {
            guard let event = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any], let seq = event["seq"] as? Int else { continue }
            seqs.append(seq)
            if event["type"] as? String == "job:log", let text = event["text"] as? String, text.hasPrefix("line ") { lines.append(text) }
        }
        return (seqs, lines)
    }

    static func size(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int
    }

    /// Launches a job with `run --detach`; its id.
    static func detached(_ prompt: String, on server: ServerProcess) throws -> String {
        try ClientProcess(["run", "claude", prompt, "--detach"], server: server).finish().1.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The supervisor's agent.json, once it is written.
    static func agentRecord(_ server: ServerProcess, _ id: String) throws -> [String: Any] {
        let agentFile = server.data.path + "/jobs/\(id)/agent/agent.json"
        for _ in 0..<300 where !FileManager.default.fileExists(atPath: agentFile) { usleep(10_000) }
        return try #require((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: agentFile)))) as? [String: Any])
    }

    /// Live processes whose environment carries the job's marker (the agent and all it started).
    static func processes(ofJob id: String) -> [Int32] {
        let marker = Array("AGENTGATE_JOB_ID=\(id)".utf8)
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { name -> Int32? in
            guard let pid = Int32(name), alive(pid),
                let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ")
            else { return nil }
            return environment.split(separator: 0).contains { Array($0) == marker } ? pid : nil
        }
    }

    /// A process that exists and is not a zombie: whoever inherits an orphan (a subreaper in
    /// this test process, or PID 1 of a container) may not reap it at once.
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }
}

/// Follows one job's SSE stream, reconnecting with `Last-Event-ID` whenever it drops.
final class SSEFollower: @unchecked Sendable {
    let port: Int
    let token: String
    let job: String
    private let lock = NSLock()
    private var ids: [Int] = []
    private var types: [String] = []
    private var connections = 0
    private var ended = false

    init(port: Int, token: String, job: String) {
        self.port = port
        self.token = token
        self.job = job
    }

    var done: Bool { lock.withLock { ended } }
    var result: (ids: [Int], types: [String], connections: Int) { lock.withLock { (ids, types, connections) } }

    func follow() {
        let deadline = Date().addingTimeInterval(30)
        var last = 0
        while !done, Date() < deadline {
            guard let fd = try? connectLoopback(port: port, receiveTimeoutSeconds: 10) else {
                usleep(50_000)
                continue
            }
            lock.withLock { connections += 1 }
            sendText(fd, "GET /api/agents/jobs/\(job)/stream HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer \(token)\r\n"
                + (last > 0 ? "Last-Event-ID: \(last)\r\n" : "") + "\r\n")
            var text = ""
            var headerDone = false
            var buffer = [UInt8](repeating: 0, count: 65536)
            reading: while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                guard count > 0 else { break }
                text += String(decoding: buffer[0..<count], as: UTF8.self)
                if !headerDone {
                    guard let head = text.range(of: "\r\n\r\n") else { continue }
                    text = String(text[head.upperBound...])
                    headerDone = true
                }
                while let end = text.range(of: "\n\n") {
                    let block = text[..<end.lowerBound]
                    text = String(text[end.upperBound...])
                    var id: Int?
                    var type: String?
                    for line in block.split(separator: "\n") {
                        if line.hasPrefix("id: ") { id = Int(line.dropFirst(4)) }
                        if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
                    }
                    guard let id, let type else { continue }  // comments, job:partial
                    last = id
                    lock.withLock {
                        ids.append(id)
                        types.append(type)
                        if type == "job:completed" { ended = true }
                    }
                    if type == "job:completed" { break reading }
                }
            }
            close(fd)
        }
    }
}
