import Foundation
import Glibc
import TestSupport
import Testing

/// The built `agentgate` binary, run as a user runs it, against fake agents on PATH.
@Suite(.serialized, .timeLimit(.minutes(2)))
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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        var env = ["PATH": agents.searchPath, "HOME": data.path]
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        let stderrData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self))
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
        #expect((value?["providers"] as? [[String: Any]])?.count == 4)
        #expect(value?["available"] as? [String] == ["claude", "codex", "opencode", "goose"])
    }

    /// `agentgate exec <provider> --prompt hi` prints readable lines for every transcript.
    @Test(arguments: Fixtures.transcriptNames.filter { Fixtures.provider(ofTranscript: $0) != nil })
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
            environment: ["FAKE_SCRIPT": "cat > '\(file)'; echo nope >&2; exit 7"])
        #expect(outcome.status == 1)
        #expect(data.read("prompt") == "from stdin\n")
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
        #expect(outcome.stderr == "agentgate: unknown provider 'gemini'; available: claude, codex, opencode, goose\n")
        let custom = try run(["exec", "custom", "--data-dir", data.path, "--", "echo", "hi"])
        #expect(custom.status == 2)
        #expect(custom.stderr.contains("--allow-custom-commands"))
        let allowed = try run(["exec", "custom", "--allow-custom-commands", "--data-dir", data.path, "--", "echo", "hi"])
        #expect(allowed.status == 0)
        #expect(allowed.stdout.contains("\nhi\n"))
    }

    @Test func ctrlCKillsTheJobsGroupAndExits130() throws {
        let pidFile = data.file("grandchild")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["exec", "claude", "--prompt", "hi", "--kill-grace", "0.3", "--data-dir", data.path]
        process.environment = [
            "PATH": agents.searchPath, "HOME": data.path,
            "FAKE_SCRIPT": "trap '' TERM; sleep 300 & echo $! > '\(pidFile)'; echo working; wait",
        ]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var grandchild: Int32?
        for _ in 0..<500 where grandchild == nil {
            usleep(10_000)
            grandchild = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        let pid = try #require(grandchild)
        kill(process.processIdentifier, SIGINT)
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        #expect(printed.contains("killed (signal 9)"))
        usleep(50_000)
        // Gone, or a zombie waiting for init to reap it: not running either way.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        #expect(stat.isEmpty || stat.contains(") Z "), "grandchild still running: \(stat)")
    }
}
