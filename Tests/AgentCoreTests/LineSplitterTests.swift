import Testing

@testable import AgentCore

struct LineSplitterTests {
    private func split(_ chunks: [[UInt8]], max: Int = LineSplitter.defaultMaxLineBytes) -> [LineSplitter.Line] {
        var splitter = LineSplitter(maxLineBytes: max)
        var lines = chunks.flatMap { splitter.feed($0) }
        if let last = splitter.finish() { lines.append(last) }
        return lines
    }

    @Test func splitsOnLFAndCRLFAndKeepsAFinalLineWithoutNewline() {
        let lines = split([Array("a\r\nb\n\nc".utf8)])
        #expect(lines.map(\.text) == ["a", "b", "", "c"])
    }

    @Test func givesTheSameLinesWhateverTheReadBoundaries() {
        let input = Array("{\"type\":\"x\"}\r\nhéllo wörld 😀\nlast".utf8)
        let whole = split([input])
        for cut in 0...input.count {
            #expect(split([Array(input[..<cut]), Array(input[cut...])]) == whole, "cut at \(cut)")
        }
        #expect(split(input.map { [$0] }) == whole)
    }

    @Test func invalidUTF8BecomesReplacementCharacter() {
        let lines = split([[0x61, 0xFF, 0x62, 0xC3, 0x0A]])
        #expect(lines.map(\.text) == ["a\u{FFFD}b\u{FFFD}"])
    }

    @Test func anOverLongLineIsTruncatedAndTheNextLineSurvives() {
        var splitter = LineSplitter(maxLineBytes: 1 << 20)
        var lines: [LineSplitter.Line] = []
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 64 * 1024)
        for _ in 0..<80 { lines += splitter.feed(chunk) }  // 5 MiB
        #expect(splitter.bufferedByteCount <= 1 << 20)
        lines += splitter.feed(Array("\nnext\n".utf8))
        #expect(lines.count == 2)
        #expect(lines[0].text.utf8.count == 1 << 20)
        #expect(lines[0].droppedBytes == 80 * 64 * 1024 - (1 << 20))
        #expect(lines[1] == .init(text: "next", droppedBytes: 0, byteCount: 5))
        #expect(lines[0].byteCount == 80 * 64 * 1024 + 1)
    }

    @Test func truncationDoesNotSplitACharacter() {
        // "é" is two bytes; a 5-byte cap falls inside the third one.
        let lines = split([Array("ééé\n".utf8)], max: 5)
        #expect(lines[0].text == "éé")
        #expect(lines[0].droppedBytes == 2)
    }

    @Test func multiLineTextSplitsOnLFAndCRLF() {
        #expect(LogLine.lines(.text, "\none\r\ntwo\n\nthree\n").map(\.text) == ["one", "two", "", "three"])
        #expect(Summary.firstLine("first\r\nsecond") == "first (+1 line)")
        #expect(Summary.oneLine("a\r\nb") == "a ⏎ b")
    }

    @Test func interpreterMarksTruncatedLinesAndPassesTextThrough() {
        var interpreter = StdoutInterpreter(format: .claudeStreamJSON)
        let truncated = interpreter.interpret(.init(text: "{\"type\":", droppedBytes: 10))
        #expect(truncated.lines == [LogLine(.stdout, .raw, "{\"type\": … [truncated 10 bytes]")])
        #expect(truncated.rawEvent == nil)
        let banner = interpreter.interpret(.init(text: "  goose is ready", droppedBytes: 0))
        #expect(banner.lines == [LogLine(.stdout, .raw, "  goose is ready")])
        let notObject = interpreter.interpret(.init(text: "{not json", droppedBytes: 0))
        #expect(notObject.lines.map(\.kind) == [.raw])
    }
}
