import Foundation
import TestSupport
import Testing

@testable import AgentCore

/// Assistant text as it streams: complete lines at once, the unfinished one as a partial
/// line, and the same stored lines whether or not the text was streamed.
struct StreamingTextLinesTests {
    @Test func linesComeOutAsTheirNewlineArrivesAndTheRestIsPartial() {
        var text = StreamingTextLines()
        #expect(text.append("Hel").isEmpty)
        #expect(text.partial?.text == "Hel")
        #expect(text.append("lo\nWor").map(\.text) == ["Hello"])
        #expect(text.partial?.text == "Wor")
        #expect(text.complete(with: "Hello\nWorld.").map(\.text) == ["World."])
        #expect(text.partial == nil)
    }

    @Test(arguments: [
        "One.\n\nTwo.", "\n\nLeading blanks.\nEnd.\n\n", "a\r\nb\r\n", "no newline at all", "x\n\n\ny", "",
    ])
    func streamedLinesEqualTheLinesOfTheWholeText(_ whole: String) {
        // Every split of the text into two pieces, and one character at a time.
        let characters = Array(whole)
        var splits = (0...characters.count).map { [String(characters[..<$0]), String(characters[$0...])] }
        splits.append(characters.map { String($0) })
        for pieces in splits {
            var text = StreamingTextLines()
            var lines: [LogLine] = []
            for piece in pieces { lines += text.append(piece) }
            lines += text.complete(with: whole)
            #expect(lines == LogLine.lines(.text, whole), "pieces \(pieces)")
        }
    }

    @Test func aLineWithoutNewlinesIsGivenOutInBoundedPieces() {
        var text = StreamingTextLines()
        var lines: [LogLine] = []
        for _ in 0..<5_000 { lines += text.append("abcd") }
        #expect(!lines.isEmpty)
        #expect(lines.allSatisfy { $0.text.utf8.count <= StreamingTextLines.maxLineBytes + 4 })
        #expect((text.partial?.text.utf8.count ?? 0) <= StreamingTextLines.maxLineBytes)
    }

    @Test func anAnswerCutShortKeepsItsUnfinishedLine() {
        var text = StreamingTextLines(prefix: "  ⋮ ")
        _ = text.append("First.\nSecond, unfin")
        #expect(text.finish().map(\.text) == ["  ⋮ Second, unfin"])
    }
}

/// The Claude formatter on events shaped like the real CLI's (see Tests/claude/fixtures).
struct ClaudeLiveOutputTests {
    static func event(_ json: String) -> JSONValue { try! JSONParser.parse(json) }

    static func delta(_ text: String, message: String = "m1") -> JSONValue {
        .object([
            "type": .string("stream_event"), "api_message_id": .string(message),
            "event": .object(["type": .string("content_block_delta"), "index": .int(0),
                              "delta": .object(["type": .string("text_delta"), "text": .string(text)])]),
        ])
    }

    static let blockStart = event(#"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}"#)

    @Test func deltasShowLiveAndTheAssistantLineAddsOnlyTheRest() {
        var formatter = ClaudeStreamFormatter()
        #expect(formatter.format(event: Self.blockStart).isEmpty)
        // The paragraph break goes out as soon as the next paragraph has begun.
        #expect(formatter.format(event: Self.delta("Para one.\n\nPara")).map(\.text) == ["Para one.", ""])
        #expect(formatter.partialLine?.text == "Para")
        #expect(!formatter.keepsRawEvent(Self.delta("x")))
        let assistant = Self.event(#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Para one.\n\nPara two."}]}}"#)
        #expect(formatter.format(event: assistant).map(\.text) == ["Para two."])
        #expect(formatter.partialLine == nil)
    }

    /// Newcomer trial: an answer cut off by an API error showed its last words after the
    /// run's summary line.
    @Test func textCutOffByAnErrorComesBeforeTheSummary() {
        var formatter = ClaudeStreamFormatter()
        _ = formatter.format(event: Self.blockStart)
        _ = formatter.format(event: Self.delta("Row 4 of a "))
        let result = Self.event(#"{"type":"result","subtype":"success","is_error":true,"terminal_reason":"api_error","result":"API Error: Connection refused (ECONNREFUSED)","num_turns":1}"#)
        #expect(formatter.format(event: result).map(\.text) == ["Row 4 of a ", "✗ API error: Connection refused (ECONNREFUSED) · 1 turn"])
        #expect(formatter.finish().isEmpty)
    }

    @Test func aKilledAnswerKeepsItsPartialLine() {
        var formatter = ClaudeStreamFormatter()
        _ = formatter.format(event: Self.blockStart)
        _ = formatter.format(event: Self.delta("Half a sen"))
        #expect(formatter.finish().map(\.text) == ["Half a sen"])
    }

    @Test func parallelResultsComeInCallOrderNamingTheirCall() {
        var formatter = ClaudeStreamFormatter()
        let calls = [
            #"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"a","name":"Bash","input":{"command":"sleep 1; echo first"}}]}}"#,
            #"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"b","name":"Read","input":{"file_path":"x"}}]}}"#,
        ]
        for call in calls { _ = formatter.format(event: Self.event(call)) }
        let second = Self.event(#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"b","content":"file x"}]}}"#)
        let first = Self.event(#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"a","content":"first"}]}}"#)
        #expect(formatter.format(event: second).isEmpty)  // held until call 1's result
        #expect(formatter.format(event: first).map(\.text) == ["← Bash #1: first", "← Read #2: file x"])
    }

    @Test func toolUseErrorMarkupIsStrippedAndAFailedCommandShowsItsError() {
        let markup = Self.event(#"{"type":"tool_result","tool_use_id":"x","is_error":true,"content":"<tool_use_error>File does not exist.</tool_use_error>"}"#)
        #expect(ClaudeStreamFormatter.toolResultLine(markup, meta: nil, prefix: "").text == "← error: File does not exist.")
        let failed = Self.event(#"{"type":"tool_result","tool_use_id":"x","is_error":true,"content":"Exit code 2\nls: nope"}"#)
        #expect(ClaudeStreamFormatter.toolResultLine(failed, meta: nil, prefix: "").text == "← error (exit code 2): ls: nope")
    }

    @Test func retriesReadAsTheyHappen() {
        let retry = Self.event(#"{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":4000,"error_status":529}"#)
        #expect(ClaudeStreamFormatter.retryLine(retry) == "API overloaded (529), retry 2 of 10 in 4 s")
        let unreachable = Self.event(#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":1200,"error":"connection refused"}"#)
        #expect(ClaudeStreamFormatter.retryLine(unreachable) == "API unreachable (connection refused), retry 1 of 10 in 1.2 s")
    }
}

extension StreamingTextLinesTests {
    @Test func theCompleteTextWinsWhenItDoesNotGoOnFromThePieces() {
        var text = StreamingTextLines()
        #expect(text.append("One.\nTwo, trimmed ").map(\.text) == ["One."])
        #expect(text.complete(with: "One.\nTwo, trimmed").map(\.text) == ["Two, trimmed"])
    }
}

/// Bounds found by the attacker trial of issue 12.
struct ClaudeOutputBoundsTests {
    static func event(_ json: String) -> JSONValue { try! JSONParser.parse(json) }

    @Test func aPartialLineStaysWithinItsBoundWhateverThePieces() {
        var text = StreamingTextLines()
        let lines = text.append("first\n" + String(repeating: "y", count: 500_000))
        #expect(lines.first?.text == "first")
        #expect((text.partial?.text.utf8.count ?? 0) <= StreamingTextLines.maxLineBytes)
    }

    @Test func oneCallThatNeverAnswersHoldsNoMoreThanABoundOfResults() {
        var order = ToolCallOrder()
        for index in 0..<200 { _ = order.call("c\(index)", name: "Bash", message: "m") }
        var out: [String] = []
        for index in 1..<200 { out += order.result("c\(index)", LogLine(.stdout, .toolResult, "← r\(index)")).map(\.text) }
        // Everything but the missing call's result is out long before the run ends.
        #expect(out.count == 199)
        #expect(out.first == "← Bash #2: r1")
        #expect(out == out.sorted { Int($0.split(separator: "r").last!)! < Int($1.split(separator: "r").last!)! })
        // The late one still comes, when it comes.
        #expect(order.result("c0", LogLine(.stdout, .toolResult, "← r0")).map(\.text) == ["← Bash #1: r0"])
    }

    @Test func manyOpenStreamsKeepEachMessagesTextOnceAndInItsOwnMessage() {
        var formatter = ClaudeStreamFormatter()
        var lines: [String] = []
        let count = ClaudeStreamFormatter.maxOpenStreams + 8
        for index in 0..<count {
            let start = #"{"type":"stream_event","api_message_id":"m\#(index)","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}"#
            let delta = #"{"type":"stream_event","api_message_id":"m\#(index)","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"S\#(index) first\nS\#(index) tail"}}}"#
            lines += formatter.format(event: Self.event(start)).map(\.text)
            lines += formatter.format(event: Self.event(delta)).map(\.text)
        }
        for index in 0..<count {
            let assistant = #"{"type":"assistant","message":{"id":"m\#(index)","content":[{"type":"text","text":"S\#(index) first\nS\#(index) tail"}]}}"#
            lines += formatter.format(event: Self.event(assistant)).map(\.text)
        }
        lines += formatter.finish().map(\.text)
        let expected = (0..<count).flatMap { ["S\($0) first", "S\($0) tail"] }
        #expect(lines.sorted() == expected.sorted(), "\(lines)")
    }
}
