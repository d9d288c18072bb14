import Foundation
import Glibc
import TestSupport
import Testing

/// Agent text that would drive the terminal: an OSC 52 clipboard write, a title change, a
/// carriage return that overwrites the line with a fake one, a C1 CSI (U+009B), backspace
/// and DEL. The CLI shows them escaped; `--raw` passes them through.
enum HostileTranscript {
    static let text = "copy \u{1B}]52;c;ZXZpbA==\u{07} title \u{1B}]0;pwned\u{07} over\rfake line csi \u{9B}31m red\u{08}\u{7F} tab\tend bidi \u{202E}txt.exe\u{2066} mark\u{200F}sep\u{2028}bom\u{FEFF}tag\u{E0041}wj\u{2060} ❤\u{FE0F} ok"
    static let result = "result \u{1B}]0;pwned\u{07}"

    /// Claude stream-json: one assistant message with the text, then the result.
    static var jsonl: String {
        func json(_ value: [String: Any]) -> String {
            String(decoding: try! JSONSerialization.data(withJSONObject: value), as: UTF8.self)
        }
        let assistant = json(["type": "assistant", "message": ["role": "assistant", "content": [["type": "text", "text": text]]]])
        let result = json(["type": "result", "subtype": "success", "is_error": false, "num_turns": 1, "result": result, "session_id": "s1"])
        return assistant + "\n" + result + "\n"
    }

    /// The escaped forms the CLI prints.
    static let escaped = [
        "\\x1b]52;c;ZXZpbA==\\x07", "\\x1b]0;pwned\\x07", "over\\x0dfake line", "csi \\x9b31m", "red\\x08\\x7f tab\tend",
        "bidi \\u202etxt.exe\\u2066 mark\\u200fsep\\u2028bom\\ufefftag\\ue0041wj\\u2060 ❤\u{FE0F} ok",
    ]
    static let rawForms = ["\u{1B}]52;c;ZXZpbA==\u{07}", "\u{1B}]0;pwned\u{07}", "over\rfake line", "csi \u{9B}31m", "red\u{08}\u{7F}"]

    /// Control characters a terminal acts on (all C0 but tab and newline, DEL, C1), and the
    /// invisible characters that reorder or break what is shown (bidi, separators, BOM).
    static func controls(in text: String) -> [UInt32] {
        text.unicodeScalars.map(\.value).filter {
            ($0 < 0x20 && $0 != 0x09 && $0 != 0x0A) || (0x7F...0x9F).contains($0) || (0x202A...0x202E).contains($0)
                || (0x2066...0x2069).contains($0) || [0x200B, 0x200E, 0x200F, 0x061C, 0x2028, 0x2029, 0xFEFF, 0x2060].contains($0)
                || (0xE0000...0xE007F).contains($0)
        }
    }
}

extension CommandLineTests {
    @Test func execShowsControlCharactersEscapedAndRawPassesThem() throws {
        data.write("escapes.jsonl", HostileTranscript.jsonl)
        let script = "cat '\(data.file("escapes.jsonl"))'"
        let shown = try run(["exec", "claude", "--prompt", "hi", "--data-dir", data.path], environment: ["FAKE_SCRIPT": script])
        #expect(shown.status == 0)
        #expect(HostileTranscript.controls(in: shown.stdout).isEmpty, "\(HostileTranscript.controls(in: shown.stdout))")
        for form in HostileTranscript.escaped { #expect(shown.stdout.contains(form), "missing \(form) in \(shown.stdout)") }

        let raw = try run(["exec", "claude", "--prompt", "hi", "--raw", "--data-dir", data.path], environment: ["FAKE_SCRIPT": script])
        #expect(raw.status == 0)
        for form in HostileTranscript.rawForms { #expect(raw.stdout.contains(form)) }

        // --json is JSON: its escapes are JSON's, as before.
        let json = try run(["exec", "claude", "--prompt", "hi", "--json", "--data-dir", data.path], environment: ["FAKE_SCRIPT": script])
        #expect(json.stdout.contains(#"\u001b]52;c;ZXZpbA==\u0007"#))
    }
}

extension ClientCommandTests {
    @Test func runTailAndShowPrintControlCharactersEscaped() throws {
        server.data.write("escapes.jsonl", HostileTranscript.jsonl)
        let run = try client(["run", "claude", "escapes"])
        #expect(run.status == 0)
        #expect(HostileTranscript.controls(in: run.stdout).isEmpty, "\(HostileTranscript.controls(in: run.stdout))")
        for form in HostileTranscript.escaped { #expect(run.stdout.contains(form), "missing \(form) in \(run.stdout)") }

        let id = try #require(try jobID(status: "done"))
        let tail = try client(["tail", id])
        #expect(HostileTranscript.controls(in: tail.stdout).isEmpty)
        #expect(tail.stdout.contains(HostileTranscript.escaped[0]))
        let followed = try client(["tail", id, "--follow"])
        #expect(HostileTranscript.controls(in: followed.stdout).isEmpty)
        let show = try client(["show", id])
        #expect(HostileTranscript.controls(in: show.stdout).isEmpty)
        #expect(show.stdout.contains("result    result \\x1b]0;pwned\\x07"))

        for command in [["run", "claude", "escapes", "--raw"], ["tail", id, "--raw"], ["tail", id, "--follow", "--raw"]] {
            let raw = try client(command)
            for form in HostileTranscript.rawForms { #expect(raw.stdout.contains(form), "\(command): no raw \(form.debugDescription)") }
        }
    }

    /// On a terminal too: our own colour codes, never the agent's sequences.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func onATerminalAgentControlCharactersAreEscaped() throws {
        server.data.write("escapes.jsonl", HostileTranscript.jsonl)
        let command = "'\(CommandLineTests.binary)' run claude escapes --server \(server.url) --data-dir '\(server.data.path)'"
        let terminal = try ClientProcess(["-qec", command, "/dev/null"], server: server, direct: "/usr/bin/script")
        let (status, stdout, _) = terminal.finish()
        #expect(status == 0)
        #expect(stdout.contains("\u{1B}[32m[agentgate] job"))  // our colour
        #expect(!stdout.contains("\u{1B}]"))  // no OSC from the agent
        #expect(!stdout.contains("\u{9B}"))
        #expect(stdout.contains(HostileTranscript.escaped[0]))
        // The history of a finished job draws no "running" status line (newcomer trial).
        let id = try #require(try jobID(status: "done"))
        let history = "'\(CommandLineTests.binary)' tail \(id) --server \(server.url) --data-dir '\(server.data.path)'"
        let tail = try ClientProcess(["-qec", history, "/dev/null"], server: server, direct: "/usr/bin/script").finish()
        #expect(tail.0 == 0 && tail.1.contains("[agentgate] job"))
        #expect(!tail.1.contains("running ·") && !tail.1.contains("⠋"), "\(tail.1)")
    }

    /// The line an agent is still writing is drawn in place on a terminal (run, exec) and
    /// replaced by the finished line; through a pipe only finished lines are written.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func onATerminalTheLineBeingWrittenIsDrawnInPlace() throws {
        let command = "'\(CommandLineTests.binary)' run claude stream --server \(server.url) --data-dir '\(server.data.path)'"
        let (status, stdout, _) = try ClientProcess(["-qec", command, "/dev/null"], server: server, direct: "/usr/bin/script").finish()
        #expect(status == 0)
        // "Writing " drawn, then cleared for "Writing the ": only an in-progress line does that.
        #expect(stdout.contains("Writing \r\u{1B}[2K"), "\(stdout.debugDescription)")
        #expect(stdout.contains("Writing the answer"))

        let exec = "'\(CommandLineTests.binary)' exec claude --prompt stream --data-dir '\(server.data.path)/exec'"
        let local = try ClientProcess(
            ["-qec", exec, "/dev/null"], server: server, environment: ["FAKE_SCRIPT": ServerProcess.script, "PATH": server.agents.searchPath],
            direct: "/usr/bin/script"
        ).finish()
        #expect(local.0 == 0)
        #expect(local.1.contains("Writing \r\u{1B}[KWriting the "), "\(local.1.debugDescription)")
        #expect(local.1.contains("Writing the answer"))

        let piped = try client(["run", "claude", "stream"])
        #expect(piped.status == 0)
        #expect(!piped.stdout.contains("\r") && piped.stdout.contains("\nWriting the answer\n"), "\(piped.stdout.debugDescription)")
    }
}
