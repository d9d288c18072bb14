import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// Reading a spool like `tail -f`, and what happens when the job truncates it underneath
/// (`> /dev/stdout` reopens fd 1 with `O_TRUNC`): found, said, and read again from the start.
struct SpoolTailTests {
    /// What one `read` handed on, and the truncations it reported (offset, line ended).
    struct Reading {
        var text = ""
        var truncations: [(Int, Bool)] = []
        var more = false
    }

    static func read(_ tail: SpoolTail, maxBytes: Int = 1 << 20) -> Reading {
        var reading = Reading()
        reading.more = tail.read(maxBytes: maxBytes, truncated: { reading.truncations.append(($0, $1)) }) {
            reading.text += String(decoding: $0, as: UTF8.self)
        }
        return reading
    }

    /// Writes as a job's second opener of its fd 1 does: truncated, from offset 0.
    static func rewrite(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        #expect(Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == text.utf8.count)
        close(fd)
    }

    static func append(_ path: String, _ text: String) {
        let handle = FileHandle(forWritingAtPath: path)!
        handle.seekToEndOfFile()
        handle.write(Data(text.utf8))
        handle.closeFile()
    }

    @Test func appendedBytesArriveOnceInOrderWithinTheBudget() {
        let directory = TemporaryDirectory()
        let path = directory.file("stdout")
        Self.rewrite(path, "one\ntwo\n")
        let tail = SpoolTail(path: path)
        #expect(Self.read(tail).text == "one\ntwo\n")
        #expect(Self.read(tail).text == "")
        Self.append(path, String(repeating: "x", count: 300) + "\n")
        let first = Self.read(tail, maxBytes: 100)
        #expect(first.text.count == 100 && first.more)
        #expect(Self.read(tail).text.count == 201)
        #expect(tail.offset == 8 + 301)
    }

    @Test func aTruncatedAndRewrittenFileIsReadAgainFromItsStart() {
        let directory = TemporaryDirectory()
        let path = directory.file("stdout")
        Self.rewrite(path, "one\n")
        let tail = SpoolTail(path: path)
        #expect(Self.read(tail).text == "one\n")
        // Shorter than where the reading was: the size gives it away.
        Self.rewrite(path, "2\n")
        var reading = Self.read(tail)
        #expect(reading.truncations.map(\.0) == [4] && reading.truncations.map(\.1) == [true])
        #expect(reading.text == "2\n")
        // As long as before, then longer: the bytes before the offset differ.
        Self.rewrite(path, "two\nthree\n")
        reading = Self.read(tail)
        #expect(reading.truncations.map(\.0) == [2])
        #expect(reading.text == "two\nthree\n")
        // Appended to, not truncated: no false alarm.
        Self.append(path, "four\n")
        reading = Self.read(tail)
        #expect(reading.truncations.isEmpty && reading.text == "four\n")
    }

    @Test func theSameBytesWrittenAgainInPlaceAreReadAgain() {
        let directory = TemporaryDirectory()
        let path = directory.file("stdout")
        Self.rewrite(path, "progress\n")
        let tail = SpoolTail(path: path)
        #expect(Self.read(tail).text == "progress\n")
        // Nothing written: nothing read, no alarm.
        #expect(Self.read(tail).truncations.isEmpty)
        // `echo progress > /dev/stdout` again, a moment later: same size, same bytes, a later time.
        usleep(30_000)
        Self.rewrite(path, "progress\n")
        var reading = Self.read(tail)
        #expect(reading.truncations.map(\.0) == [9] && reading.text == "progress\n")
        // Appended to: read on as usual.
        usleep(30_000)
        Self.append(path, "end\n")
        reading = Self.read(tail)
        #expect(reading.truncations.isEmpty && reading.text == "end\n")
    }

    @Test func aTruncationInTheMiddleOfALineSaysTheLineWasNotEnded() {
        let directory = TemporaryDirectory()
        let path = directory.file("stdout")
        Self.rewrite(path, "half a li")
        let tail = SpoolTail(path: path)
        #expect(Self.read(tail).text == "half a li")
        Self.rewrite(path, "")
        var reading = Self.read(tail)
        #expect(reading.truncations.map(\.1) == [false] && reading.text == "")
        // Nothing more is reported until it is truncated again.
        Self.append(path, "new\n")
        reading = Self.read(tail)
        #expect(reading.truncations.isEmpty && reading.text == "new\n")
    }

    @Test func aCursorPastTheEndOfTheFileIsFoundOnTheFirstRead() {
        let directory = TemporaryDirectory()
        let path = directory.file("stdout")
        Self.rewrite(path, "after\n")
        // A re-adopted job's cursor, from before the file was truncated while no server ran.
        let tail = SpoolTail(path: path, from: 40)
        let reading = Self.read(tail)
        #expect(reading.truncations.map(\.0) == [40] && reading.text == "after\n")
        // A cursor inside the file is taken at its word.
        Self.append(path, "more\n")
        let resumed = SpoolTail(path: path, from: 6)
        #expect(Self.read(resumed).text == "more\n")
    }

    @Test func aCursorsRecordedBytesAreCheckedBeforeReadingOn() {
        let directory = TemporaryDirectory()
        let path = directory.file("stdout")
        Self.rewrite(path, "one\ntwo\n")
        let tail = SpoolTail(path: path)
        _ = Self.read(tail)
        // What a cursor at 4 records, and at 8: the bytes right before each, as read.
        #expect(tail.bytes(before: 4, count: 16) == Array("one\n".utf8))
        #expect(tail.bytes(before: 8, count: 3) == Array("wo\n".utf8))
        #expect(tail.bytes(before: 9, count: 16).isEmpty && tail.bytes(before: 0, count: 16).isEmpty)
        // The same bytes: read on from the cursor.
        Self.append(path, "three\n")
        var reading = Self.read(SpoolTail(path: path, from: 4, before: Array("one\n".utf8)))
        #expect(reading.truncations.isEmpty && reading.text == "two\nthree\n")
        // Written again past the cursor (no longer shorter): read from the start.
        Self.rewrite(path, "a different, longer text\n")
        reading = Self.read(SpoolTail(path: path, from: 4, before: Array("one\n".utf8)))
        #expect(reading.truncations.map(\.0) == [4] && reading.text == "a different, longer text\n")
    }
}
