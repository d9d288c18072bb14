import Foundation
import Glibc
import TestSupport
import Testing

@testable import AgentCore

/// The spool cursor of a supervised job (issue 14): which bytes of its stdout and stderr are
/// in events, kept in the event log, found again from its end.
@Suite(.timeLimit(.minutes(1)))
struct SpoolCursorTests {
    @Test func aLineCountsTheBytesItTookAndTheUnfinishedLineIsNotCounted() {
        var splitter = LineSplitter(maxLineBytes: 8)
        let lines = splitter.feed(Array("ab\r\ncdefghijklmn\nxy".utf8))
        #expect(lines.map(\.byteCount) == [4, 13])  // CRLF and an over-long line's dropped bytes count
        #expect(splitter.unfinishedByteCount == 2)
        _ = splitter.feed(Array("0123456789".utf8))  // held: 8, dropped: 4
        #expect(splitter.unfinishedByteCount == 12)
        #expect(splitter.finish()?.byteCount == 12)  // no newline
        #expect(splitter.unfinishedByteCount == 0)
    }

    @Test func stderrIsConsumedOnlyOnceItsLinesAreHandedOut() {
        var collector = StderrCollector()
        Array("one\n\ntwo\nthr".utf8).withUnsafeBytes { collector.feed($0) }
        // "one" and "two" wait to be handed out, and the blank line between them with them:
        // a reader resuming here must not skip "one".
        #expect(collector.consumedBytes == 0)
        #expect(collector.takePending().map(\.text) == ["one", "two"])
        #expect(collector.consumedBytes == 9)
        #expect(collector.finish().map(\.text) == ["thr"])
        #expect(collector.consumedBytes == 12)
    }

    @Test func aCursorLineReadsBackAndNoOtherLineDoes() {
        let cursor = SpoolCursor(stdout: 5_120, stderr: 0)
        let line = cursor.line
        #expect(String(decoding: line, as: UTF8.self) == #"{"spool":{"stdout":5120,"stderr":0}}"# + "\n")
        #expect(SpoolCursor(line: line.dropLast()[...]) == cursor)
        for other in [#"{"spool":{"stdout":1,"stderr":x}}"#, #"{"spool":{"stdout":,"stderr":2}}"#, #"{"jobId":"a","seq":1}"#,
                      #"{"spool":{"stdout":1,"stderr":2}} "#, #"{"spool":{"stdout":1234567890123456789,"stderr":2}}"#] {
            #expect(SpoolCursor(line: Array(other.utf8)[...]) == nil, "\(other)")
        }
    }

    @Test func theBytesBeforeEachOffsetReadBackAndBadOnesMakeNoCursor() {
        let cursor = SpoolCursor(stdout: 6, stderr: 5, stdoutBefore: Array("hello\n".utf8), stderrBefore: [])
        let line = cursor.line
        #expect(String(decoding: line, as: UTF8.self) == #"{"spool":{"stdout":6,"stderr":5,"before":["68656c6c6f0a",""]}}"# + "\n")
        #expect(SpoolCursor(line: line.dropLast()[...]) == cursor)
        let tooMany = String(repeating: "ab", count: SpoolCursor.checkBytes + 1)
        for other in [#"{"spool":{"stdout":6,"stderr":5,"before":["6","0a"]}}"#, #"{"spool":{"stdout":6,"stderr":5,"before":["zz",""]}}"#,
                      #"{"spool":{"stdout":6,"stderr":5,"before":["0a"]}}"#, #"{"spool":{"stdout":6,"stderr":5,"before":["\#(tooMany)",""]}}"#,
                      #"{"spool":{"stdout":6,"stderr":5,"before":["0A",""]}}"#] {
            #expect(SpoolCursor(line: Array(other.utf8)[...]) == nil, "\(other)")
        }
    }

    @Test func theLastCursorIsFoundBackFromTheEndOfTheLogAcrossReads() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/events.ndjson"
        func event(_ seq: Int, _ size: Int) -> [UInt8] {
            JobEvent(jobId: "j", seq: seq, time: 1, payload: .log(LogLine(.stdout, .text, String(repeating: "x", count: size)))).encoded() + [0x0A]
        }
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        #expect(SpoolCursor.last(inLog: path) == nil)
        // The only line: the file's first.
        try Data(SpoolCursor(stdout: 1, stderr: 2).line).write(to: URL(fileURLWithPath: path))
        #expect(SpoolCursor.last(inLog: path) == SpoolCursor(stdout: 1, stderr: 2))
        // Then events, a cursor, and 200 KiB of events after it (three reads back).
        var bytes = SpoolCursor(stdout: 1, stderr: 2).line + event(1, 100) + SpoolCursor(stdout: 70, stderr: 9).line
        for seq in 2...5 { bytes += event(seq, 50_000) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(SpoolCursor.last(inLog: path) == SpoolCursor(stdout: 70, stderr: 9))
        #expect(SpoolCursor.last(inLog: path, maxScanBytes: 64 * 1024) == nil)  // not within the scan
        #expect(SpoolCursor.last(inLog: directory.path + "/missing") == nil)
    }

    /// Where the last cursor's line ends (what is after it is cut at adoption): exact when the
    /// line straddles two reads back, and a torn cursor (no newline) is not a cursor.
    @Test func theLastCursorSaysWhereItsLineEnds() throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/events.ndjson"
        let cursor = SpoolCursor(stdout: 12_345, stderr: 6)
        func event(_ seq: Int, _ size: Int) -> [UInt8] {
            JobEvent(jobId: "j", seq: seq, time: 1, payload: .log(LogLine(.stdout, .text, String(repeating: "x", count: size)))).encoded() + [0x0A]
        }
        // Every split of the cursor line across the 64 KiB read boundary.
        for shift in 0...cursor.line.count {
            let before = event(1, 20_000) + event(2, 20_000)
            var bytes = before
            bytes += [UInt8](repeating: 0x20, count: max(0, 64 * 1024 - before.count - 1000 + shift)) + [0x0A]
            bytes += cursor.line
            let end = bytes.count
            let after = event(3, 64 * 1024 - 1000 - 60)
            bytes += after + Array(SpoolCursor(stdout: 99, stderr: 9).line.dropLast())  // torn
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let found = SpoolCursor.lastWithEnd(inLog: path)
            #expect(found?.cursor == cursor)
            #expect(found?.end == end, "shift \(shift)")
        }
    }

    @Test func aBatchEndingWithACursorStillSaysItsLastSeq() throws {
        let directory = TemporaryDirectory()
        let log = EventLog(path: directory.path + "/events.ndjson")
        try log.append(EventLogTests.line(1) + EventLogTests.line(2) + SpoolCursor(stdout: 9, stderr: 0).line)
        #expect(log.lastSeq == 2)
        try log.append(EventLogTests.line(3) + SpoolCursor(stdout: 12, stderr: 0).line)
        #expect(log.lastSeq == 3)
        let reader = EventLogReader(path: log.path)
        #expect(reader.lastSeq() == 3)
        #expect(reader.slice(after: 0, maxBytes: 1 << 20).lines.map(\.seq) == [1, 2, 3])
        log.close()
    }
}
