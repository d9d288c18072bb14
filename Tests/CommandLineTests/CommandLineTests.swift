import Foundation
import Glibc
import TestSupport
import Testing

/// The built `agentgate` binary, run as a user runs it, against fake agents on PATH.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct CommandLineTests {
    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("agentgate").path
    }

    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    let agents = FakeAgents()
    let data = TemporaryDirectory("agentgate-cli-data")

    func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Outcome {
        var env = ["PATH": agents.searchPath, "HOME": data.path]
        env.merge(environment) { $1 }
        let files = TemporaryDirectory("agentgate-cli-run")
        if let stdin { files.write("stdin", stdin) }
        let process = try ChildProcess(
            Self.binary, arguments, environment: env, stdin: stdin == nil ? "/dev/null" : files.file("stdin"),
            stdout: files.file("stdout"), stderr: files.file("stderr"))
        let status = process.wait()
        return Outcome(status: status, stdout: files.read("stdout") ?? "", stderr: files.read("stderr") ?? "")
    }

    @Test func versionIsPrinted() throws {
        let outcome = try run(["--version"])
        #expect(outcome.status == 0)
        #expect(outcome.stdout == "0.2.0\n")
    }

    /// Lines go out as they come, through a pipe too: the first one long before the job ends.
    @Test func execPrintsLinesAsTheyArriveAndTakesTheLaunchOptions() throws {
        let files = TemporaryDirectory("agentgate-exec-live")
        let process = try ChildProcess(
            Self.binary, [
                "exec", "claude", "--prompt", "hi", "--data-dir", data.path, "--max-turns", "3", "--resume", "abc-123",
                "--env", "MYAPP_NOTE=hello", "--pass-env", "MYAPP_NOTE",
            ],
            environment: ["PATH": agents.searchPath, "HOME": data.path, "FAKE_SCRIPT": #"echo "args=$* note=$MYAPP_NOTE"; sleep 3; echo second"#],
            stdout: files.file("out"), stderr: files.file("err"))
        var printed = ""
        for _ in 0..<200 where !printed.contains("args=") {
            usleep(10_000)
            printed = files.read("out") ?? ""
        }
        #expect(process.isRunning, "the first line came only when the job ended")
        #expect(printed.contains("args=-p --input-format stream-json --output-format stream-json --verbose --include-partial-messages --replay-user-messages --resume=abc-123 --max-turns=3 note=hello"), "\(printed)")
        #expect(!printed.contains("second"))
        #expect(process.wait() == 0)
        #expect(files.read("out")?.contains("second") == true)
    }

    @Test func serveRefusesANonLoopbackAddressThatNamesNoHost() throws {
        let outcome = try run(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", data.path])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("not a loopback address"))
        #expect(outcome.stdout.isEmpty)  // it never started listening
    }

    @Test func probeListsTheFakeAgents() throws {
        let outcome = try run(["probe"])
        #expect(outcome.status == 0)
        #expect(outcome.stdout.contains("✓ claude    Claude Code — 2.1.12 (Claude Code)"))
        #expect(outcome.stdout.contains("· acp"))
        #expect(outcome.stdout.contains("available: claude, codex, opencode, goose"))

        let json = try run(["probe", "--json"])
        let value = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(value?["mode"] as? String == "local")
        // The four CLIs, and the ACP modes of opencode and goose (goose's unavailable here).
        #expect((value?["providers"] as? [[String: Any]])?.count == 6)
        #expect(value?["available"] as? [String] == ["claude", "codex", "opencode", "goose", "opencode-acp"])
    }

    /// `agentgate exec <provider> --prompt hi` prints readable lines for every transcript.
    /// (ACP transcripts are exchanges, both sides: `Tests/acp` runs a real ACP agent instead.)
    @Test(arguments: Fixtures.transcriptNames.filter { Fixtures.provider(ofTranscript: $0) != nil && !$0.hasPrefix("acp-") })
    func execPrintsEveryTranscriptReadably(_ name: String) throws {
        let provider = Fixtures.provider(ofTranscript: name)!
        let outcome = try run(
            ["exec", provider, "--prompt", "hi", "--data-dir", data.path],
            environment: ["FAKE_SCRIPT": FakeAgents.replay(name)])
        let golden = try String(contentsOfFile: Fixtures.goldenDirectory + "/\(name).txt", encoding: .utf8)
        let expected = golden.split(separator: "\n").filter { !$0.hasPrefix("# result:") }.map { line in
            String(line[line.index(after: line.firstIndex(of: "]")!)...].dropFirst())
        }
        let printed = outcome.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(printed.first?.hasPrefix("[agentgate] job ") == true)
        #expect(Array(printed.dropFirst().prefix(expected.count)) == expected)
        let last = printed.last(where: { !$0.isEmpty }) ?? ""
        if last.contains(" done (exit 0)") {
            #expect(outcome.status == 0)
        } else {
            #expect(last.contains(" failed "))
            #expect(outcome.status == 1)
        }
    }

    @Test func execReadsThePromptFromStdinAndFailsWithExitOne() throws {
        let file = data.file("prompt")
        let outcome = try run(
            ["exec", "claude", "--data-dir", data.path], stdin: "from stdin\n",
            environment: ["FAKE_SCRIPT": "head -n 1 > '\(file)'; echo nope >&2; exit 7"])
        #expect(outcome.status == 1)
        // As a stream-json user message: Claude's stdin stays open for follow-ups.
        #expect(FakeAgents.claudeMessageText(data.read("prompt")) == "from stdin\n")
        #expect(outcome.stdout.contains("[stderr] nope"))
        #expect(outcome.stdout.contains("failed (exit 7)"))
    }

    @Test func execJSONPrintsNDJSONEventsInSeqOrder() throws {
        let outcome = try run(
            ["exec", "codex", "--prompt", "hi", "--json", "--data-dir", data.path],
            environment: ["FAKE_SCRIPT": FakeAgents.replay("codex-exec-json-simple-text.jsonl")])
        #expect(outcome.status == 0)
        let events = try outcome.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(events.map { $0["seq"] as? Int } == Array(1...events.count))
        #expect(events.first?["type"] as? String == "job:started")
        #expect(events.last?["type"] as? String == "job:completed")
        #expect(events.last?["status"] as? String == "done")
        #expect((events.last?["result"] as? [String: Any])?["text"] as? String == "pong")
    }

    @Test func execUnknownProviderSaysWhichAreAvailable() throws {
        let outcome = try run(["exec", "gemini", "--prompt", "hi", "--data-dir", data.path])
        #expect(outcome.status == 2)
        #expect(outcome.stderr == "agentgate: unknown provider 'gemini'; available: claude, codex, opencode, goose, opencode-acp\n")
        let custom = try run(["exec", "custom", "--data-dir", data.path, "--", "echo", "hi"])
        #expect(custom.status == 2)
        #expect(custom.stderr.contains("--allow-custom-commands"))
        let allowed = try run(["exec", "custom", "--allow-custom-commands", "--data-dir", data.path, "--", "echo", "hi"])
        #expect(allowed.status == 0)
        #expect(allowed.stdout.contains("\nhi\n"))
    }

    @Test func ctrlCKillsTheJobsGroupAndExits130() throws {
        let pidFile = data.file("grandchild")
        let output = TemporaryDirectory("agentgate-cli-run")
        let process = try ChildProcess(
            Self.binary, ["exec", "claude", "--prompt", "hi", "--kill-grace", "0.3", "--data-dir", data.path],
            environment: [
                "PATH": agents.searchPath, "HOME": data.path,
                "FAKE_SCRIPT": "trap '' TERM; sleep 300 & echo $! > '\(pidFile)'; echo working; wait",
            ],
            stdout: output.file("stdout"), stderr: "/dev/null")
        var grandchild: Int32?
        for _ in 0..<500 where grandchild == nil {
            usleep(10_000)
            grandchild = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        let pid = try #require(grandchild)
        process.signal(SIGINT)
        #expect(process.wait() == 130)
        let printed = output.read("stdout") ?? ""
        #expect(printed.contains("killed (SIGKILL)"))
        usleep(50_000)
        // Gone, or a zombie waiting for init to reap it: not running either way.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        #expect(stat.isEmpty || stat.contains(") Z "), "grandchild still running: \(stat)")
    }
}

/// The echo server under a low fd limit: accepting pauses, existing connections live on.
@Suite(.processExclusive, .timeLimit(.minutes(20)))
struct FileDescriptorExhaustionTests {
    /// `agentgate ARGUMENTS` under `ulimit -n FDS`, its output in `files`, and the port its
    /// banner names.
    static func start(_ arguments: String, fds: Int, in files: TemporaryDirectory, environment: [String: String] = [:]) throws -> (ChildProcess, Int) {
        let process = try ChildProcess(
            "/bin/sh", ["-c", "ulimit -n \(fds); exec '\(CommandLineTests.binary)' \(arguments)"],
            environment: environment, stdout: files.file("out"), stderr: files.file("err"))
        var banner = ""
        for _ in 0..<500 where !banner.contains("\n") {
            usleep(10_000)
            banner = files.read("out") ?? ""
        }
        let address = banner.split(separator: "\n").first?.split(separator: " ").last ?? ""
        guard let port = address.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .init(charactersIn: "/"))) }) else {
            process.signal(SIGKILL)
            throw SocketError(step: "no port in the banner: \(banner) \(files.read("err") ?? "")", errno: 0)
        }
        return (process, port)
    }

    /// The "accept paused" lines: one, however often accepting paused (at most one a minute).
    static func pauses(_ files: TemporaryDirectory) -> [Substring] {
        (files.read("err") ?? "").split(separator: "\n").filter { $0.contains("accept paused") }
    }

    @Test func emfilePausesAcceptingButExistingConnectionsKeepWorking() throws {
        let files = TemporaryDirectory()
        let (process, port) = try Self.start("echo-server --port 0", fds: 24, in: files)
        defer {
            process.signal(SIGKILL)
            process.wait()
        }
        let first = try SocketClient(port: port)
        #expect(first.echo("before the storm") == "before the storm")
        // More connections than the server has fds for.
        let storm = try (0..<40).map { _ in try SocketClient(port: port, handshake: false) }
        for client in storm { client.sendHandshake() }
        usleep(300_000)
        #expect(first.echo("during the storm") == "during the storm")
        storm.forEach { $0.close() }
        usleep(300_000)
        let after = try SocketClient(port: port)
        #expect(after.echo("after the storm") == "after the storm")
        let pauses = Self.pauses(files)
        #expect(pauses.count == 1, "\(files.read("err") ?? "")")
        #expect(pauses.first?.contains("Too many open files") == true)
    }

    @Test func serveUnderEMFILEKeepsAnsweringItsConnectionsAndSaysSoOnce() throws {
        let files = TemporaryDirectory()
        let agents = FakeAgents()
        let (process, port) = try Self.start(
            "serve --port 0 --data-dir '\(files.file("data"))'", fds: 48, in: files,
            environment: ["PATH": agents.searchPath, "HOME": files.path, "AGENTGATE_TOKEN": "fd-test-token-0123456789abcdef0123"])
        defer {
            process.signal(SIGKILL)
            process.wait()
        }
        let existing = try connectLoopback(port: port)
        defer { close(existing) }
        func get(_ path: String, on fd: Int32) -> String {
            sendAndReceive(fd, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer fd-test-token-0123456789abcdef0123\r\n\r\n")
        }
        #expect(get("/healthz", on: existing).hasPrefix("HTTP/1.1 200"))
        var storm: [Int32] = []
        defer { storm.forEach { close($0) } }
        for _ in 0..<80 { storm.append(try connectLoopback(port: port)) }
        usleep(300_000)
        #expect(get("/healthz", on: existing).hasPrefix("HTTP/1.1 200"))
        storm.forEach { close($0) }
        storm = []
        usleep(300_000)
        let after = try connectLoopback(port: port)
        defer { close(after) }
        #expect(get("/healthz", on: after).hasPrefix("HTTP/1.1 200"))
        let pauses = Self.pauses(files)
        #expect(pauses.count == 1, "\(files.read("err") ?? "")")
        #expect(pauses.first?.contains("Too many open files") == true)
        // Every pause is counted for /metrics, however few are logged.
        let metrics = get("/metrics", on: after)
        let counted = metrics.split(separator: "\n").first { $0.hasPrefix("agentgate_accept_pauses_total ") }
        #expect((counted?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 1, "\(metrics)")
    }
}

/// Just enough of a WebSocket client to echo text through a server (unmasked frames are
/// built by hand here so this target needs nothing but the binary).
final class SocketClient {
    let fd: Int32

    init(port: Int, handshake: Bool = true) throws {
        fd = try connectLoopback(port: port, receiveTimeoutSeconds: 3)
        if handshake {
            sendHandshake()
            var head = ""
            while !head.contains("\r\n\r\n") {
                guard let bytes = read(), !bytes.isEmpty else { throw SocketError(step: "handshake", errno: errno) }
                head += String(decoding: bytes, as: UTF8.self)
            }
        }
    }

    deinit { Glibc.close(fd) }

    func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    func sendHandshake() {
        write(Array("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
    }

    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func read() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? Array(buffer[0..<count]) : nil
    }

    /// Sends a short masked text frame (zero key) and reads the echo.
    func echo(_ text: String) -> String? {
        let payload = Array(text.utf8)
        write([0x81, 0x80 | UInt8(payload.count), 0, 0, 0, 0] + payload)
        guard let reply = read(), reply.count >= 2 else { return nil }
        return String(decoding: reply[2...], as: UTF8.self)
    }
}

/// `agentgate serve`: the README's start command.
@Suite(.processExclusive, .timeLimit(.minutes(20)))
struct ServeCommandTests {
    @Test func serveLogsStartLaunchesKillsExitsAndRefusalsOnStderr() throws {
        let server = try ServedGateway()
        let (data, url) = (server.data, server.url)
        #expect(try server.call("GET", "/api/agents/jobs", auth: false).hasPrefix("HTTP/1.1 401"))
        _ = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","cwd":"/no/such/dir"}"#)
        // An agent's stderr cannot write log lines of its own (attacker trial).
        let forging = #"printf 'boom\\n2026-01-01T00:00:00+0000 critical agentgate: FORGED\\n' >&2; exit 3"#
        _ = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"\#(forging)"}}"#)
        for _ in 0..<20 {
            _ = try server.call("GET", "/api/agents/jobs", auth: false)
        }
        let quick = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"echo hi"}}"#)
        let slow = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"exec sleep 300"}}"#)
        let quickID = try #require(quick.firstMatch(of: /"id":"([0-9a-f]{16})"/)?.1)
        let slowID = try #require(slow.firstMatch(of: /"id":"([0-9a-f]{16})"/)?.1)
        usleep(300_000)
        #expect(try server.call("DELETE", "/api/agents/jobs/\(slowID)").hasPrefix("HTTP/1.1 200"))
        var log = ""
        for _ in 0..<300 where !log.contains("job \(slowID) killed") {
            usleep(10_000)
            log = data.read("err") ?? ""
        }
        #expect(log.contains("info agentgate: listening on \(url)"))
        #expect(log.contains("job \(quickID) started: claude pid "))
        #expect(log.contains("job \(quickID) done (exit 0)"))
        #expect(log.contains("job \(slowID) stopping: kill requested"))
        #expect(log.contains("job \(slowID) killed (SIGTERM)"))
        #expect(log.contains("warning agentgate: refused GET /api/agents/jobs: 401 missing or wrong token"))
        #expect(log.contains("refused POST /api/agents/jobs: 400 invalid_cwd"), "\(log)")
        // Client commands reach a server on another port with --port.
        let jobs = try CommandLineTests().run(["jobs", "--port", String(server.port), "--data-dir", data.path])
        #expect(jobs.status == 0 && jobs.stdout.contains(quickID), "\(jobs.stderr)")
        #expect(log.contains("failed (exit 3)") && log.contains(": boom\\n2026-01-01T00:00:00+0000 critical agentgate: FORGED"), "\(log)")
        #expect(!log.split(separator: "\n").contains { $0.hasPrefix("2026-01-01") })
        // 22 refusals: 10 logged one by one, the other 12 counted when their 10 s window ends.
        #expect(log.components(separatedBy: "refused ").count - 1 == 10)
        for _ in 0..<1_200 where !log.contains("12 more refusals") {
            usleep(10_000)
            log = data.read("err") ?? ""
        }
        #expect(log.contains("warning agentgate: 12 more refusals in the last 10 s were not logged one by one"))
    }

    /// README "Installing on PATH": the binary in <prefix>/bin, the dashboard in
    /// <prefix>/share/agentgate/web-client, run by name from a directory that has no web-client.
    @Test func aBinaryInstalledOnPathServesTheDashboard() throws {
        let prefix = TemporaryDirectory("agentgate-prefix")
        let elsewhere = TemporaryDirectory("agentgate-elsewhere")
        let files = FileManager.default
        try files.createDirectory(atPath: prefix.file("bin"), withIntermediateDirectories: true)
        try files.createDirectory(atPath: prefix.file("share/agentgate"), withIntermediateDirectories: true)
        try files.copyItem(atPath: CommandLineTests.binary, toPath: prefix.file("bin/agentgate"))
        try files.copyItem(atPath: Fixtures.packageRoot + "/web-client", toPath: prefix.file("share/agentgate/web-client"))
        let (process, banner) = try Self.serveByName(bin: prefix.file("bin"), in: elsewhere.path, data: elsewhere.file("data"), output: elsewhere.file("out"))
        defer {
            process.signal(SIGKILL)
            process.wait()
        }
        let port = try #require(banner.split(separator: "\n").first?.split(separator: ":").last.flatMap { Int($0) })
        let page = try exchange(port: port, "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n")
        #expect(page.hasPrefix("HTTP/1.1 200 OK"))
        #expect(page.contains("<title>agentgate</title>"))
        #expect(!banner.contains("were not found"))

        // Without the dashboard's files the server says so at start.
        let bare = TemporaryDirectory("agentgate-bare")
        try files.createDirectory(atPath: bare.file("bin"), withIntermediateDirectories: true)
        try files.copyItem(atPath: CommandLineTests.binary, toPath: bare.file("bin/agentgate"))
        let (alone, warned) = try Self.serveByName(bin: bare.file("bin"), in: elsewhere.path, data: bare.file("data"), output: bare.file("out"))
        defer {
            alone.signal(SIGKILL)
            alone.wait()
        }
        #expect(warned.contains("the dashboard's files were not found"), "\(warned)")
    }

    /// A stderr nobody reads (a full pipe) costs log lines, never the server: the loop does
    /// not wait on it.
    @Test func aStderrNobodyReadsDoesNotStallTheServer() throws {
        let fifo = TemporaryDirectory("agentgate-stderr")
        let path = fifo.file("stderr")
        #expect(mkfifo(path, 0o600) == 0)
        let reader = open(path, O_RDONLY | O_NONBLOCK)  // held open, never read
        defer { close(reader) }
        // debug logs every event: 20,000 lines of output fill the 64 KiB pipe many times over.
        let server = try ServedGateway(["--log-level", "debug"], stderr: path)
        let created = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"seq 1 20000"}}"#)
        let id = try #require(created.firstMatch(of: /"id":"([0-9a-f]{16})"/)?.1)
        var job = ""
        for _ in 0..<500 where !job.contains("\"status\":\"done\"") {
            usleep(20_000)
            job = try server.call("GET", "/api/agents/jobs/\(id)")
        }
        #expect(job.contains("\"status\":\"done\""), "the job did not finish while stderr was full")
        #expect(try server.call("GET", "/healthz", auth: false).hasPrefix("HTTP/1.1 200 OK"))
    }

    @Test func retainJobsKeepsTheNewestFinishedJobsAsJobsEnd() throws {
        let server = try ServedGateway(["--retain-jobs", "2"])
        var ids: [String] = []
        for index in 0..<4 {
            let created = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"echo \#(index)"}}"#)
            ids.append(String(try #require(created.firstMatch(of: /"id":"([0-9a-f]{16})"/)?.1)))
            usleep(50_000)  // created one after the other
        }
        var listed = ""
        for _ in 0..<300 {
            usleep(20_000)
            listed = try server.call("GET", "/api/agents/jobs")
            if !listed.contains(ids[0]), !listed.contains(ids[1]), !listed.contains("running") { break }
        }
        #expect(!listed.contains(ids[0]) && !listed.contains(ids[1]), "\(listed)")
        #expect(listed.contains(ids[2]) && listed.contains(ids[3]))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: server.data.file("jobs")))?.filter { !$0.hasPrefix(".") }.sorted() == ids.suffix(2).sorted())
    }

    /// `agentgate serve` found on PATH by name (argv[0] is then no path) and started in `directory`;
    /// returns the process and its banner.
    static func serveByName(bin: String, in directory: String, data: String, output: String) throws -> (ChildProcess, String) {
        let process = try ChildProcess(
            "/bin/sh", ["-c", "cd '\(directory)' && exec agentgate serve --port 0 --data-dir '\(data)'"],
            environment: ["PATH": bin + ":/usr/bin:/bin", "HOME": directory], stdout: output, stderr: "/dev/null")
        var banner = ""
        for _ in 0..<500 where !banner.contains("contained") {
            usleep(10_000)
            banner = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        }
        return (process, banner)
    }

    @Test func anUnknownLogLevelIsRefused() throws {
        let outcome = try CommandLineTests().run(["serve", "--port", "0", "--log-level", "loud"])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("--log-level loud: one of trace, debug, info, notice, warning, error, critical"))
    }

    @Test func serveAnswersWithTheTokenAndWithKillJobsOnExitStopsItsJobsOnSIGTERM() throws {
        let server = try ServedGateway(["--kill-jobs-on-exit"])
        let (data, process, url) = (server.data, server.process, server.url)
        #expect(try server.call("GET", "/healthz", auth: false).hasPrefix("HTTP/1.1 200 OK"))
        #expect(try server.call("GET", "/api/agents/jobs", auth: false).hasPrefix("HTTP/1.1 401 "))
        let created = try server.call("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"exec sleep 300"}}"#)
        #expect(created.hasPrefix("HTTP/1.1 201 Created"))

        // One owner per data dir: a second server refuses it and names the first; exec runs
        // its job in a private dir and leaves the server's running job alone.
        let tool = CommandLineTests()
        let second = try tool.run(["serve", "--port", "0", "--data-dir", data.path])
        #expect(second.status == 2)
        #expect(second.stderr.contains("is in use by another agentgate (pid \(process.pid), agentgate serve on \(url))"))
        let exec = try tool.run(["exec", "claude", "--prompt", "hi", "--data-dir", data.path], environment: ["FAKE_SCRIPT": "echo private"])
        #expect(exec.status == 0)
        #expect(exec.stdout.contains("private"))
        #expect(exec.stderr.contains("its jobs are left alone"))
        let list = try server.call("GET", "/api/agents/jobs")
        #expect(list.contains("\"status\":\"running\""))
        #expect(!list.contains("interrupted"))
        // Deleting the lock file (it looks stale) lets no second owner in.
        #expect(unlink(data.file("lock")) == 0)
        #expect(try tool.run(["serve", "--port", "0", "--data-dir", data.path]).status == 2)

        // An exec killed with SIGKILL leaves its private directory and its agent: the next
        // exec finds both (the directory's lock is free), stops the agent, removes the directory.
        // Without a cgroup: an agent in the dead exec's cgroup tree would be killed by whichever
        // agentgate starts next on this machine (another test's, at any moment), before the sweep.
        let pidFile = data.file("orphan.pid")
        let killed = try ChildProcess(
            CommandLineTests.binary, ["exec", "claude", "--prompt", "hi", "--data-dir", data.path, "--no-cgroup"],
            environment: ["PATH": tool.agents.searchPath, "HOME": data.path, "FAKE_SCRIPT": "echo $$ > '\(pidFile)'; exec sleep 300"],
            stdout: "/dev/null", stderr: "/dev/null")
        var orphan: Int32?
        for _ in 0..<300 where orphan == nil {
            usleep(10_000)
            orphan = data.read("orphan.pid").flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        killed.signal(SIGKILL)
        killed.wait()
        let runs = try FileManager.default.contentsOfDirectory(atPath: data.file("exec"))
        #expect(runs.count == 1)
        let orphanPID = try #require(orphan)
        #expect(kill(orphanPID, 0) == 0)
        // At once (attacker trial: it used to be left alone for 10 s after it was made): a
        // `run-…` directory was locked before it had that name.
        #expect(runs[0].hasPrefix("run-"))
        let next = try tool.run(["exec", "claude", "--prompt", "hi", "--data-dir", data.path], environment: ["FAKE_SCRIPT": "echo ok"])
        #expect(next.status == 0)
        #expect(next.stderr.contains("stopped 1 job(s) left running by an exec that died"), "\(next.stderr)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.file("exec")))?.isEmpty == true)
        var gone = false
        for _ in 0..<300 where !gone {
            usleep(10_000)
            let stat = (try? String(contentsOfFile: "/proc/\(orphanPID)/stat", encoding: .utf8)) ?? ""
            gone = stat.isEmpty || stat.contains(") Z ")
        }
        #expect(gone, "the dead exec's agent still runs")

        process.signal(SIGTERM)
        for _ in 0..<300 where process.isRunning { usleep(10_000) }
        let stopped = !process.isRunning
        #expect(stopped)
        if stopped { #expect(process.wait() == 0) }
        // The job was killed on the way out, not left running or "interrupted".
        let events = try FileManager.default.contentsOfDirectory(atPath: data.file("jobs"))
        let log = data.read("jobs/\(events.first ?? "")/events.ndjson") ?? ""
        #expect(log.contains("\"type\":\"job:completed\",\"job\""))
        #expect(log.contains("\"status\":\"killed\""))
        #expect(log.contains("killed because the server stopped"))
    }
}

/// An `agentgate serve` on a free port with fake agents, stderr kept, and raw HTTP calls.
final class ServedGateway {
    let agents = FakeAgents()
    let data = TemporaryDirectory("agentgate-serve")
    let process: ChildProcess
    let url: String
    let port: Int
    let token: String

    init(_ extra: [String] = [], stderr: String? = nil) throws {
        process = try ChildProcess(
            CommandLineTests.binary, ["serve", "--port", "0", "--data-dir", data.path, "--kill-grace", "0.3", "--pass-env", "FAKE_SCRIPT"] + extra,
            environment: ["PATH": agents.searchPath, "HOME": data.path], stdout: data.file("out"), stderr: stderr ?? data.file("err"))
        var banner = ""
        for _ in 0..<500 where !banner.contains("dashboard:") {
            usleep(10_000)
            banner = data.read("out") ?? ""
        }
        url = try #require(banner.split(separator: "\n").first?.split(separator: " ").last.map(String.init))
        port = try #require(url.split(separator: ":").last.flatMap { Int($0) })
        token = try #require(data.read("token")?.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(banner.contains("/#token=\(token)"))  // in the fragment, never a query string
        #expect(!banner.contains("?token"))
    }

    deinit {
        // Jobs outlive the server (serve's default): end them first.
        _ = try? call("DELETE", "/api/agents/jobs")
        process.signal(SIGKILL)
        process.wait()
    }

    func call(_ method: String, _ path: String, body: String = "", auth: Bool = true) throws -> String {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n"
        if !body.isEmpty { text += "Content-Type: application/json\r\n" }
        if auth { text += "Authorization: Bearer \(token)\r\n" }
        return try exchange(port: port, text + "\r\n" + body)
    }
}
