/// Splits a byte stream into lines across arbitrary read boundaries.
///
/// LF and CRLF end a line; a final line without a newline comes out of `finish()`. Invalid
/// UTF-8 becomes U+FFFD. A line longer than `maxLineBytes` keeps its first `maxLineBytes`
/// bytes (cut at a character boundary) plus a marker saying how much was dropped, and the
/// splitter never holds more than `maxLineBytes` of one line in memory.
public struct LineSplitter: Sendable {
    public struct Line: Equatable, Sendable {
        public var text: String
        /// Bytes dropped from the end of an over-long line (0 for a whole line).
        public var droppedBytes: Int
        /// Bytes of the stream the line took, its newline included: where a reader that
        /// stops after it resumes (a spool file's cursor).
        public var byteCount = 0
    }

    /// 1 MiB: far above any real agent event line, small enough to buffer per job.
    public static let defaultMaxLineBytes = 1 << 20

    public let maxLineBytes: Int
    private var buffer: [UInt8] = []
    private var dropped = 0

    public init(maxLineBytes: Int = LineSplitter.defaultMaxLineBytes) {
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes currently held for an unfinished line.
    public var bufferedByteCount: Int { buffer.count }
    /// Bytes of the stream fed since the last whole line (held, or dropped from an over-long
    /// one): what is not in any line yet.
    public var unfinishedByteCount: Int { buffer.count + dropped }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> [Line] {
        var lines: [Line] = []
        var start = 0
        let count = bytes.count
        while start < count {
            // memchr is much faster than a Swift loop on long lines.
            let base = bytes.baseAddress! + start
            if let found = memchr(base, 0x0A, count - start) {
                let end = base.distance(to: UnsafeRawPointer(found)) + start
                append(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
                lines.append(takeLine(newline: true))
                start = end + 1
            } else {
                append(UnsafeRawBufferPointer(rebasing: bytes[start..<count]))
                start = count
            }
        }
        return lines
    }

    public mutating func feed(_ bytes: [UInt8]) -> [Line] {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The last line if the stream ended without a newline.
    public mutating func finish() -> Line? {
        guard !buffer.isEmpty || dropped > 0 else { return nil }
        return takeLine(newline: false)
    }

    private mutating func append(_ chunk: UnsafeRawBufferPointer) {
        let room = maxLineBytes - buffer.count
        if chunk.count <= room {
            buffer.append(contentsOf: chunk)
        } else {
            buffer.append(contentsOf: chunk[0..<max(0, room)])
            dropped += chunk.count - max(0, room)
        }
    }

    private mutating func takeLine(newline: Bool) -> Line {
        let byteCount = buffer.count + dropped + (newline ? 1 : 0)
        var end = buffer.count
        if dropped == 0, end > 0, buffer[end - 1] == 0x0D { end -= 1 }
        var droppedHere = dropped
        if dropped > 0 {
            // Back off to a character boundary so the cut does not leave a broken sequence.
            var cut = end
            while cut > 0, cut > end - 4, buffer[cut - 1] & 0xC0 == 0x80 { cut -= 1 }
            if cut > 0, buffer[cut - 1] >= 0xC0 {
                let lead = buffer[cut - 1]
                let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
                if end - (cut - 1) < length {
                    droppedHere += end - (cut - 1)
                    end = cut - 1
                }
            }
        }
        let text = String(decoding: buffer[0..<end], as: UTF8.self)
        buffer.removeAll(keepingCapacity: buffer.count <= 64 * 1024)
        dropped = 0
        return Line(text: text, droppedBytes: droppedHere, byteCount: byteCount)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
