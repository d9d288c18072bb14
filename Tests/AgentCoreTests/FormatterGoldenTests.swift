import Foundation
import TestSupport
import Testing

@testable import AgentCore

/// Every shared transcript, formatted, must equal its golden file. Set
/// AGENTGATE_UPDATE_GOLDEN=1 to rewrite the golden files (then read the diff).
struct FormatterGoldenTests {
    static func format(forTranscript name: String) -> OutputFormat {
        Fixtures.provider(ofTranscript: name).flatMap(AgentProvider.named)?.outputFormat ?? .auto
    }

    /// The transcript as `agentgate exec` prints it: one line per log line.
    static func render(_ name: String) throws -> String {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.transcript(name))))
        var splitter = LineSplitter()
        var interpreter = StdoutInterpreter(format: format(forTranscript: name))
        var lines: [LogLine] = []
        for line in splitter.feed(bytes) { lines += interpreter.interpret(line).lines }
        if let last = splitter.finish() { lines += interpreter.interpret(last).lines }
        lines += interpreter.finish()
        var text = lines.map { "[\($0.kind.rawValue)] \($0.text)" }.joined(separator: "\n") + "\n"
        text += "# result: " + JSONWriter.string(interpreter.report.json) + "\n"
        return text
    }

    @Test func everyTranscriptHasAGoldenFile() {
        #expect(Fixtures.transcriptNames.count >= 25)
    }

    @Test(arguments: Fixtures.transcriptNames)
    func transcriptMatchesGolden(_ name: String) throws {
        let rendered = try Self.render(name)
        let goldenPath = Fixtures.goldenDirectory + "/" + name + ".txt"
        if ProcessInfo.processInfo.environment["AGENTGATE_UPDATE_GOLDEN"] == "1" {
            try rendered.write(toFile: goldenPath, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOfFile: goldenPath, encoding: .utf8)
        #expect(rendered == golden)
    }
}

/// What the formatters learn about a run, on the real transcripts.
struct AgentReportTests {
    static func report(_ name: String) throws -> AgentReport {
        let text = try String(contentsOfFile: Fixtures.transcript(name), encoding: .utf8)
        var interpreter = StdoutInterpreter(format: FormatterGoldenTests.format(forTranscript: name))
        for line in text.split(separator: "\n") { _ = interpreter.interpret(.init(text: String(line), droppedBytes: 0)) }
        _ = interpreter.finish()
        return interpreter.report
    }

    @Test func claudeSuccessRecordsSessionModelCostTurnsAndDuration() throws {
        let report = try Self.report("claude-stream-json-bash-ls-assembled.jsonl")
        #expect(report.sessionId == "40e7b02d-c0f9-4876-9010-f514d4eb0603")
        #expect(report.model == "claude-opus-4-5-20251101")
        #expect(report.resultText == "Here are the files in the current directory.")
        #expect(report.costUSD == 0.24722425)
        #expect(report.numTurns == 2)
        #expect(report.durationMs == 8722)
        #expect(report.isError == false)
    }

    @Test func claudeIsErrorWinsOverSuccessSubtype() throws {
        let report = try Self.report("claude-stream-json-bad-model-result-only.jsonl")
        #expect(report.subtype == "success")
        #expect(report.isError)
    }

    @Test func claudeMaxTurnsCarriesErrorsInsteadOfResult() throws {
        let report = try Self.report("claude-stream-json-max-turns-assembled.jsonl")
        #expect(report.isError)
        #expect(report.resultText == nil)
        #expect(report.errors.first?.contains("maximum number of turns") == true)
    }

    @Test func claudePartialMessagesDoNotPrintTextTwice() throws {
        let rendered = try FormatterGoldenTests.render("claude-stream-json-partial-messages-trimmed.jsonl")
        let textLines = rendered.split(separator: "\n").filter { $0.hasPrefix("[text]") }
        #expect(Set(textLines).count == textLines.count)
    }

    @Test func codexTurnFailedIsAnErrorWithTheAPIMessage() throws {
        let report = try Self.report("codex-exec-json-schema-rejected.jsonl")
        #expect(report.isError)
        #expect(report.errors.first?.hasPrefix("Invalid schema for response_format") == true)
        #expect(report.sessionId == "01a0b708-5106-74d3-87b5-af89429a00ac")
    }

    @Test func codexSuccessKeepsTheLastAgentMessageAndUsage() throws {
        let report = try Self.report("codex-exec-json-simple-text.jsonl")
        #expect(report.isError == false)
        #expect(report.resultText == "pong")
        #expect(report.usage?["output_tokens"] != nil)
    }

    @Test func gooseProviderErrorAsTextIsAnError() throws {
        let report = try Self.report("goose-stream-json-auth-error-elided.jsonl")
        #expect(report.isError)
    }

    @Test func opencodeSumsStepCosts() throws {
        let report = try Self.report("opencode-run-json-bash-echo.jsonl")
        #expect(report.sessionId == "ses_494719016ffe85dkDMj0FPRbHK")
        #expect(report.costUSD != nil)
        #expect(report.numTurns == 2)
    }

    @Test func customCommandsDetectTheFormatFromTheFirstEvent() {
        #expect(DetectingFormatter.detect(["type": "system", "subtype": "init"]) == .claudeStreamJSON)
        #expect(DetectingFormatter.detect(["type": "thread.started"]) == .codexJSON)
        #expect(DetectingFormatter.detect(["id": "1", "msg": ["type": "task_started"]]) == .codexJSON)
        #expect(DetectingFormatter.detect(["type": "complete"]) == .gooseStreamJSON)
        #expect(DetectingFormatter.detect(["type": "step_start", "sessionID": "s"]) == .opencodeJSON)
        #expect(DetectingFormatter.detect(["jsonrpc": "2.0"]) == nil)
    }
}
