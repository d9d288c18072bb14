import Foundation
import Glibc
import TestSupport
import Testing

/// `serve` and the client commands refuse a token others could read or swap, and a short
/// one; the data dir is made private.
@Suite(.processExclusive, .timeLimit(.minutes(20)))
struct TokenHygieneTests {
    let agents = FakeAgents()
    let home = TemporaryDirectory("agentgate-token-home")

    struct Outcome {
        /// nil: still running after the wait (it was killed).
        var status: Int32?
        var stdout: String
        var stderr: String
    }

    /// Runs agentgate; a serve that starts anyway is killed after `seconds` (status nil).
    func run(_ arguments: [String], environment: [String: String] = [:], seconds: Double = 5) throws -> Outcome {
        let files = TemporaryDirectory("agentgate-token-run")
        let process = try ChildProcess(
            CommandLineTests.binary, arguments,
            environment: ["PATH": agents.searchPath, "HOME": home.path].merging(environment) { $1 },
            stdout: files.file("stdout"), stderr: files.file("stderr"))
        var waited = 0.0
        while process.isRunning && waited < seconds {
            usleep(20_000)
            waited += 0.02
        }
        let running = process.isRunning
        if running { process.signal(SIGKILL) }
        let status = process.wait()
        return Outcome(status: running ? nil : status, stdout: files.read("stdout") ?? "", stderr: files.read("stderr") ?? "")
    }

    /// serve on a free port with the data dir `data`.
    func serve(_ data: String, _ extra: [String] = [], environment: [String: String] = [:]) throws -> Outcome {
        try run(["serve", "--port", "0", "--data-dir", data] + extra, environment: environment, seconds: 3)
    }

    /// A client command that would need the token (it is refused before any connection).
    func client(_ data: String, environment: [String: String] = [:]) throws -> Outcome {
        try run(["jobs", "--server", "http://127.0.0.1:1", "--data-dir", data], environment: environment)
    }

    static let token = String(repeating: "5e", count: 32)

    func writeToken(_ directory: TemporaryDirectory, _ name: String = "token", mode: mode_t) -> String {
        directory.write(name, Self.token + "\n")
        chmod(directory.file(name), mode)
        return directory.file(name)
    }

    @Test func aTokenFileOthersCanReadIsRefusedWithTheFix() throws {
        let data = TemporaryDirectory("agentgate-token-data")
        let file = writeToken(data, "supplied", mode: 0o644)
        let supplied = try serve(data.path, ["--token-file", file])
        #expect(supplied.status == 2)
        #expect(supplied.stderr == "agentgate: token file \(file) has mode 0644, so other users can read or change it; refusing it (fix: chmod 600 \(file))\n")
        #expect(supplied.stdout.isEmpty)  // it never listened

        let own = writeToken(data, mode: 0o644)
        let fromDataDir = try serve(data.path)
        #expect(fromDataDir.status == 2)
        #expect(fromDataDir.stderr.contains("chmod 600 \(own)"))
        #expect(data.read("token") == Self.token + "\n")  // left as it was, not replaced

        let refused = try client(data.path)
        #expect(refused.status == 4)
        #expect(refused.stderr == "agentgate: token file \(own) has mode 0644, so other users can read or change it; refusing it (fix: chmod 600 \(own))\n")
        let token = try run(["token", "--data-dir", data.path])
        #expect(token.status == 4)
        #expect(!token.stdout.contains(Self.token))

        chmod(own, 0o600)
        #expect(try run(["token", "--data-dir", data.path]).stdout == Self.token + "\n")
    }

    @Test func aSymlinkedTokenFileIsRefused() throws {
        let data = TemporaryDirectory("agentgate-token-data")
        let elsewhere = TemporaryDirectory("agentgate-token-elsewhere")
        let target = writeToken(elsewhere, mode: 0o600)
        #expect(symlink(target, data.file("token")) == 0)
        let served = try serve(data.path)
        #expect(served.status == 2)
        #expect(served.stderr.contains("token file \(data.file("token")) is a symbolic link"))
        #expect(served.stderr.split(separator: "\n").count == 1)
        let supplied = try serve(elsewhere.path, ["--token-file", data.file("token")])
        #expect(supplied.status == 2)
        #expect(supplied.stderr.contains("is a symbolic link"))
        let refused = try client(data.path)
        #expect(refused.status == 4)
        #expect(refused.stderr.contains("is a symbolic link"))
    }

    @Test func aShortSuppliedTokenIsRefused() throws {
        let data = TemporaryDirectory("agentgate-token-data")
        let served = try serve(data.path, environment: ["AGENTGATE_TOKEN": "hunter2"])
        #expect(served.status == 2)
        #expect(served.stderr == "agentgate: AGENTGATE_TOKEN has 7 characters; a token needs at least 32 (make one with: openssl rand -hex 32)\n")
        let client = try client(data.path, environment: ["AGENTGATE_TOKEN": "hunter2"])
        #expect(client.status == 4)
        #expect(client.stderr.contains("AGENTGATE_TOKEN has 7 characters"))
        let file = data.file("short")
        data.write("short", "0123456789\n")
        chmod(file, 0o600)
        let shortFile = try serve(data.path, ["--token-file", file])
        #expect(shortFile.status == 2)
        #expect(shortFile.stderr.contains("the token in \(file) has 10 characters"))
    }

    @Test func anExistingDataDirIsMadePrivate() throws {
        let parent = TemporaryDirectory("agentgate-token-data")
        let data = parent.file("data")
        for command in [["exec", "claude", "--prompt", "hi", "--data-dir", data], ["serve", "--port", "0", "--data-dir", data]] {
            mkdir(data, 0o755)
            chmod(data, 0o755)
            let outcome = try run(command, environment: ["FAKE_SCRIPT": "true"], seconds: 2)
            #expect(outcome.status == 0 || outcome.stdout.contains("listening on"), "\(outcome.stderr)")
            var info = stat()
            #expect(stat(data, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o700, "\(command[0]) left mode \(String(info.st_mode & 0o777, radix: 8))")
        }
    }
}
