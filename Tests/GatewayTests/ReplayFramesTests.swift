import AgentCore
import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// A finished job's ready frames (`ReplayFrames`), built from real event files.
@Suite(.timeLimit(.minutes(1)))
struct ReplayFramesTests {
    static let job = "00000000000000f1"

    /// Seqs 1…`count`: log lines with a raw agent event every third seq, the last one the
    /// job's `job:completed`.
    static func lines(_ count: Int, completed: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = []
        for seq in 1...count {
            let payload: JobEvent.Payload
            if seq == count && completed {
                var finished = Job(id: job, provider: "claude", prompt: "x", createdAt: 1)
                finished.status = .done
                payload = .completed(finished)
            } else if seq % 3 == 0 {
                payload = .agentEvent(#"{"type":"assistant","n":\#(seq)}"#)
            } else {
                payload = .log(LogLine(.stdout, .text, "line \(seq) " + String(repeating: "x", count: seq % 700)))
            }
            bytes += JobEvent(jobId: job, seq: seq, time: 1, payload: payload).encoded() + [0x0A]
        }
        return bytes
    }

    static func write(_ bytes: [UInt8], in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/events.ndjson"
        try #require(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return path
    }

    /// What a default viewer is sent after `after`, framed the way replay from the log does.
    static func framedFromLog(_ log: [UInt8], after: Int) -> [UInt8] {
        guard let slice = EventSlice.of(lines: log, after: after, maxBytes: .max) else { return [] }
        return EventWire.replay(slice, framing: EventWire.Framing(format: .json), compressor: nil).bytes
    }

    /// Every slice from `after` to the end, chained as a replay chains them.
    static func chained(_ frames: ReplayFrames, after: Int, maxBytes: Int) -> (bytes: [UInt8], frames: Int, slices: Int) {
        var bytes: [UInt8] = []
        var count = 0
        var slices = 0
        var cursor = after
        let fd = frames.file.fd
        while let slice = frames.slice(after: cursor, maxBytes: maxBytes) {
            #expect(slice.seqs.lowerBound == cursor + 1)
            var chunk = [UInt8](repeating: 0, count: slice.bytes.count)
            let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(slice.bytes.lowerBound)) }
            #expect(got == slice.bytes.count)
            bytes += chunk
            count += slice.frames
            slices += 1
            cursor = slice.seqs.upperBound
        }
        #expect(cursor == frames.lastSeq || after >= frames.lastSeq)
        return (bytes, count, slices)
    }

    @Test func theFramesAreExactlyWhatADefaultViewerIsSentFromEveryCursor() throws {
        let directory = TemporaryDirectory()
        let log = Self.lines(300)
        let path = try Self.write(log, in: directory)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 300, minimumBytes: 0, sliceBytes: 4_096) == .built)
        let frames = try #require(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 300))
        for after in 0...300 {
            let expected = Self.framedFromLog(log, after: after)
            let got = Self.chained(frames, after: after, maxBytes: 1_500)
            #expect(got.bytes == expected, "after \(after)")
            // Raw agent events have no frame: 2 of every 3 seqs do, and the last one.
            let framed = ((after + 1)...max(after + 1, 300)).filter { $0 % 3 != 0 || $0 == 300 }.count
            #expect(got.frames == (after < 300 ? framed : 0), "after \(after)")
        }
        #expect(frames.slice(after: 300, maxBytes: 1_000) == nil)
    }

    @Test func aSliceEndsOnAFrameAndAFrameLargerThanTheBudgetGoesWhole() throws {
        let directory = TemporaryDirectory()
        let log = Self.lines(40)
        let path = try Self.write(log, in: directory)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 40, minimumBytes: 0) == .built)
        let frames = try #require(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 40))
        // A budget of one byte: one frame per slice, the raw events before it carried along.
        let oneEach = Self.chained(frames, after: 0, maxBytes: 1)
        #expect(oneEach.bytes == Self.framedFromLog(log, after: 0))
        #expect(oneEach.slices == oneEach.frames)
        let second = try #require(frames.slice(after: 2, maxBytes: 1))
        #expect(second.seqs == 3...4)  // seq 3 is a raw event: carried to the frame of seq 4
        #expect(second.frames == 1)
    }

    @Test func aLogThatIsNotAWholeFinishedJobGetsNoFramesAndLeavesNothingBehind() throws {
        // A gap (seq 5 missing), a log that stops before its job:completed, a torn last line.
        let whole = Self.lines(50)
        let newlines = whole.indices.filter { whole[$0] == 0x0A }
        let withGap = Array(whole[..<(newlines[3] + 1)]) + Array(whole[(newlines[4] + 1)...])
        let cases: [(String, [UInt8], Int)] = [
            ("gap", withGap, 50),
            ("no completed", Self.lines(50, completed: false), 50),
            ("torn", Array(whole.dropLast(10)), 50),
            ("lastSeq beyond the log", whole, 60),
        ]
        for (name, log, lastSeq) in cases {
            let directory = TemporaryDirectory()
            let path = try Self.write(log, in: directory)
            let outcome = ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: lastSeq, minimumBytes: 0)
            guard case .failed = outcome else {
                Issue.record("\(name): \(outcome)")
                continue
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["events.ndjson"], "\(name)")
            #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: lastSeq) == nil, "\(name)")
        }
        // A log under the minimum is skipped: small logs replay fast enough read and framed.
        let directory = TemporaryDirectory()
        let path = try Self.write(whole, in: directory)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 50, minimumBytes: whole.count + 1) == .skipped)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["events.ndjson"])
    }

    @Test func framesThatDoNotMatchTheLogAsItIsNowAreNotOpened() throws {
        let directory = TemporaryDirectory()
        let log = Self.lines(60)
        let path = try Self.write(log, in: directory)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 60, minimumBytes: 0) == .built)
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 60) != nil)
        // Asked for another last seq (the job went on), or the log grew since.
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 61) == nil)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("{}\n".utf8))
        handle.closeFile()
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 60) == nil)
        // Rebuilt for the log as it is, then the frames file cut short, or the index damaged.
        #expect(truncate(path, off_t(log.count)) == 0)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 60, minimumBytes: 0) == .built)
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 60) != nil)
        let framesPath = directory.path + "/" + ReplayFrames.framesName
        let indexPath = directory.path + "/" + ReplayFrames.indexName
        let size = try #require(try FileManager.default.attributesOfItem(atPath: framesPath)[.size] as? Int)
        #expect(truncate(framesPath, off_t(size - 1)) == 0)
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 60) == nil)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 60, minimumBytes: 0) == .built)
        let index = try #require(FileManager.default.contents(atPath: indexPath))
        var damaged = [UInt8](index)
        damaged[0] ^= 0xFF
        try Data(damaged).write(to: URL(fileURLWithPath: indexPath))
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 60) == nil)
    }

    /// A job's directory is writable by its agent: what it leaves at the frames' names must
    /// neither block the server (a FIFO) nor redirect its writes (a symlink).
    @Test func whatAnAgentLeavesAtTheFramesNamesNeitherBlocksNorRedirects() throws {
        let directory = TemporaryDirectory()
        let outside = TemporaryDirectory()
        let log = Self.lines(30)
        let path = try Self.write(log, in: directory)
        let framesPath = directory.path + "/" + ReplayFrames.framesName
        let indexPath = directory.path + "/" + ReplayFrames.indexName
        #expect(mkfifo(framesPath + ".tmp", 0o600) == 0)
        #expect(symlink(outside.path + "/stolen", indexPath + ".tmp") == 0)
        #expect(ReplayFrames.build(directory: directory.path, eventsPath: path, lastSeq: 30, minimumBytes: 0) == .built)
        #expect(!FileManager.default.fileExists(atPath: outside.path + "/stolen"))
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 30) != nil)
        // A FIFO in the frames' place is not opened (opening it for reading would block).
        #expect(unlink(framesPath) == 0)
        #expect(mkfifo(framesPath, 0o600) == 0)
        #expect(ReplayFrames.open(directory: directory.path, eventsPath: path, lastSeq: 30) == nil)
    }
}
