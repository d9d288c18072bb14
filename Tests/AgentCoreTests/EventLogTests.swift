import Foundation
import Glibc
import TestSupport
import Testing

@testable import AgentCore

/// The event file and its index, on real files.
@Suite(.timeLimit(.minutes(1)))
struct EventLogTests {
    static func line(_ seq: Int, _ text: String = "some output of the agent") -> [UInt8] {
        JobEvent(jobId: "job-1", seq: seq, time: 1, payload: .log(LogLine(.stdout, .text, "\(text) \(seq)"))).encoded() + [0x0A]
    }

    /// Appends seqs in batches of `batch`, like the engine's one write per loop turn.
    static func write(_ log: EventLog, _ seqs: ClosedRange<Int>, batch: Int = 37) throws {
        var bytes: [UInt8] = []
        for seq in seqs {
            bytes += line(seq)
            if seq % batch == 0 {
                try log.append(bytes)
                bytes = []
            }
        }
        if !bytes.isEmpty { try log.append(bytes) }
    }

    /// The index as `events.idx` holds it, checked against the log.
    static func storedIndex(_ log: EventLog) -> EventIndex {
        let indexFD = open(log.indexPath, O_RDONLY)
        let logFD = open(log.path, O_RDONLY)
        defer {
            close(indexFD)
            close(logFD)
        }
        return EventIndex.load(indexFD: indexFD, logFD: logFD, logSize: log.size)
    }

    @Test func aReadFromAnySeqStartsAtTheNearestIndexEntryNotAtByteZero() throws {
        let directory = TemporaryDirectory()
        let log = EventLog(path: directory.file("events.ndjson"))
        try Self.write(log, 1...100_000)
        #expect(log.lastSeq == 100_000)
        let reader = EventLogReader(path: log.path)
        #expect(reader.lastSeq() == 100_000)
        // The persisted index: about one entry per 64 KiB, each naming the line at its offset.
        let index = Self.storedIndex(log)
        let logFD = open(log.path, O_RDONLY)
        defer { close(logFD) }
        #expect(index.entries.count >= log.size / EventIndex.spacing - 1 && index.entries.count <= log.size / EventIndex.spacing + 1)
        for entry in index.entries.prefix(50) { #expect(EventLineScanner.seqOfLine(fd: logFD, at: entry.offset) == entry.seq) }
        // A seek lands within one spacing (plus a line) before the wanted event.
        for since in [0, 1, 5_000, 70_000, 99_999] {
            let start = index.startOffset(after: since)
            let wanted = index.entries.last { $0.seq <= since + 1 }
            #expect(start == (wanted?.offset ?? 0))
            let slice = reader.slice(after: since, maxBytes: 64 * 1024)
            #expect(slice.lines.first?.seq == since + 1)
            #expect(slice.lines.map(\.seq) == Array((since + 1)...(since + slice.lines.count)))
            #expect(Array(slice.bytes[slice.lines[0].range]) + [0x0A] == Self.line(since + 1))
        }
        #expect(reader.slice(after: 100_000, maxBytes: 1 << 20).reachedEnd)
        #expect(reader.slice(after: 100_000, maxBytes: 1 << 20).lines.isEmpty)
    }

    @Test func slicesStopAtTheirByteBudgetAndEndAtTheLastEvent() throws {
        let directory = TemporaryDirectory()
        let log = EventLog(path: directory.file("events.ndjson"))
        try Self.write(log, 1...5_000)
        let reader = EventLogReader(path: log.path)
        var cursor = 0
        var slices = 0
        while true {
            let slice = reader.slice(after: cursor, maxBytes: 16 * 1024)
            #expect(slice.bytes.count <= 16 * 1024 + 200)
            #expect(slice.gap == nil)
            if let last = slice.lines.last {
                #expect(slice.lines.first?.seq == cursor + 1)
                cursor = last.seq
            }
            slices += 1
            if slice.reachedEnd { break }
        }
        #expect(cursor == 5_000)
        #expect(slices > 10)
        // Appended later: the same reader sees it.
        try log.append(Self.line(5_001))
        #expect(reader.slice(after: 5_000, maxBytes: 1024).lines.map(\.seq) == [5_001])
    }

    @Test func aMissingOrGarbledIndexIsNeverBelievedAndIsRebuilt() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("events.ndjson")
        let log = EventLog(path: path)
        try Self.write(log, 1...20_000)
        log.close()
        // Garbage: entries that point into the middle of lines, with plausible seqs.
        let garbage = EventIndex.encode((1...20).map { EventIndex.Entry(seq: $0 * 900, offset: $0 * 70_001) })
        #expect(FileManager.default.createFile(atPath: EventIndex.path(forLog: path), contents: Data(garbage)))
        #expect(EventLogReader(path: path).slice(after: 9_000, maxBytes: 4096).lines.first?.seq == 9_001)
        try FileManager.default.removeItem(atPath: EventIndex.path(forLog: path))
        #expect(EventLogReader(path: path).slice(after: 15_000, maxBytes: 4096).lines.first?.seq == 15_001)
        // Reopened for appending, the log rebuilds the index and carries on.
        try log.append(Self.line(20_001))
        #expect(log.lastSeq == 20_001)
        #expect(Self.storedIndex(log).entries.count > 10)
    }

    @Test func aTornLastLineIsCutOffWhenTheLogIsReopenedSoNoHalfEventIsEverServed() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("events.ndjson")
        let log = EventLog(path: path)
        try Self.write(log, 1...10)
        log.close()
        // The server died in the middle of a write.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(Self.line(11).prefix(30)))
        handle.closeFile()
        #expect(EventLogReader(path: path).lastSeq() == 10)
        #expect(EventLog.readEncoded(path: path).map(\.seq) == Array(1...10))
        let reopened = EventLog(path: path)
        try reopened.append(Self.line(11))
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 11)
        for text in lines { #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil) }
        #expect(reopened.lastSeq == 11)
    }

    @Test func missingSeqsAreReportedAsAGapNotSkippedSilently() throws {
        let directory = TemporaryDirectory()
        let log = EventLog(path: directory.file("events.ndjson"))
        try log.append([1, 2, 3, 7, 8].flatMap { Self.line($0) })
        let reader = EventLogReader(path: log.path)
        let first = reader.slice(after: 0, maxBytes: 1 << 20)
        #expect(first.lines.map(\.seq) == [1, 2, 3])
        #expect(first.gap == nil && !first.reachedEnd)
        let gap = reader.slice(after: 3, maxBytes: 1 << 20)
        #expect(gap.lines.isEmpty)
        #expect(gap.gap == 4...6)
        let rest = reader.slice(after: 6, maxBytes: 1 << 20)
        #expect(rest.lines.map(\.seq) == [7, 8])
        #expect(rest.reachedEnd)
    }

    @Test func aMissingFileReadsAsEndedAndEmpty() {
        let slice = EventLogReader(path: "/nonexistent/agentgate/events.ndjson").slice(after: 0, maxBytes: 1024)
        #expect(slice.reachedEnd && slice.lines.isEmpty && slice.gap == nil)
    }

    @Test func theScannerFindsSeqAndTypeWithoutParsingAndRefusesWhatIsNotALine() {
        func seq(_ text: String) -> Int? { Array(text.utf8).withUnsafeBytes { EventLineScanner.seqOf($0) } }
        func type(_ text: String) -> String? {
            Array(text.utf8).withUnsafeBytes { EventLineScanner.typeOf($0).map { String(decoding: $0, as: UTF8.self) } }
        }
        #expect(seq(#"{"type":"job:log","job":"a,b","seq":42,"time":1}"#) == 42)
        #expect(seq(#"{"type":"job:log","seq":"#) == nil)
        #expect(seq(#"{"type":"job:log","seq":x}"#) == nil)
        // A marker after a newline belongs to the next line.
        #expect(seq(#"{"type":"job:log"}"# + "\n" + #","seq":7}"#) == nil)
        // Only within a line's first 512 bytes.
        let padding = String(repeating: "x", count: 600)
        #expect(seq(#"{"pad":"\#(padding)","seq":9}"#) == nil)
        #expect(seq(#"{"pad":"\#(String(repeating: "x", count: 400))","seq":9}"#) == 9)
        #expect(seq(String(repeating: ",", count: 600)) == nil)
        #expect(seq(#","seq":123456789012345678901}"#) == 123_456_789_012_345_678)
        #expect(type(#"{"type":"job:completed","seq":3}"#) == "job:completed")
        #expect(type(#"{"seq":3,"type":"job:log"}"#) == nil)
        #expect(type(#"{"type":"unterminated"#) == nil)
        let completed = Array("job:completed".utf8)
        completed.withUnsafeBytes { #expect(EventLineScanner.type($0, is: "job:completed") && !EventLineScanner.type($0, is: "job:event")) }
    }
}
