#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// A run of stored events read in one go: their lines side by side in one buffer (no
/// allocation per event), in seq order with no gap between them.
public struct EventSlice: Sendable {
    public struct Line: Sendable {
        public var seq: Int
        /// The line in `bytes`, without its newline.
        public var range: Range<Int>
    }

    public var bytes: [UInt8] = []
    public var lines: [Line] = []
    /// Seqs missing from the file right after the cursor (a disk that was full, a damaged
    /// file): the slice stops before a gap, and a slice that starts at one holds no lines.
    public var gap: ClosedRange<Int>?
    /// Nothing after these lines is stored yet.
    public var reachedEnd = false

    public init() {}

    /// The whole lines of `lines` (events, each ending in "\n") after `seq`, up to about
    /// `maxBytes`: events held in memory, read like the file.
    public static func of(lines: [UInt8], after seq: Int, maxBytes: Int, maxEvents: Int = .max) -> EventSlice? {
        var slice = EventSlice()
        var expected = seq + 1
        var start = 0
        var kept = 0..<0
        lines.withUnsafeBytes { raw in
            while let newline = EventLineScanner.firstNewline(in: raw, from: start) {
                defer { start = newline + 1 }
                guard let lineSeq = EventLineScanner.seqOf(UnsafeRawBufferPointer(rebasing: raw[start..<newline])), lineSeq >= expected else {
                    continue
                }
                if lineSeq > expected {
                    if slice.lines.isEmpty { slice.gap = expected...(lineSeq - 1) }
                    return
                }
                if slice.lines.isEmpty { kept = start..<start }
                slice.lines.append(Line(seq: lineSeq, range: (start - kept.lowerBound)..<(newline - kept.lowerBound)))
                kept = kept.lowerBound..<newline
                expected += 1
                if newline - kept.lowerBound >= maxBytes || slice.lines.count >= maxEvents { return }
            }
        }
        guard !slice.lines.isEmpty || slice.gap != nil else { return nil }
        slice.bytes = Array(lines[kept])
        return slice
    }
}

/// Reads one event file from any seq: seeks through the sparse index, then reads whole lines
/// up to a byte budget. Keeps its own copy of the index, extended by scanning what was
/// appended since the last read, so it shares no state with the writer and can run on
/// another thread than the loop. Not thread-safe itself: one thread at a time.
public final class EventLogReader {
    public let path: String
    private var index = EventIndex()
    private var loadedIndexFile = false
    /// Where the whole lines scanned so far end, and the last seq among them.
    private var scannedEnd = 0
    private var scannedLastSeq = 0

    public init(path: String) {
        self.path = path
    }

    /// The last seq stored now (0 when the file is missing or empty).
    public func lastSeq() -> Int {
        guard case .opened(let fd) = AgentWrittenFile.open(path) else { return 0 }
        defer { Glibc.close(fd) }
        refresh(fd)
        return scannedLastSeq
    }

    /// Whole lines after `since`, up to about `maxBytes` (at least one line) and `maxEvents`.
    /// Missing and unreadable files read as empty and ended; anything but a regular file (the
    /// agent can write to its job's directory) too.
    public func slice(after since: Int, maxBytes: Int, maxEvents: Int = .max) -> EventSlice {
        var slice = EventSlice()
        guard case .opened(let fd) = AgentWrittenFile.open(path) else {
            slice.reachedEnd = true
            return slice
        }
        defer { Glibc.close(fd) }
        refresh(fd)
        var position = index.startOffset(after: since)
        let end = scannedEnd
        var expected = since + 1
        var buffer: [UInt8] = []
        /// Where the next line to look at starts in `buffer`.
        var scanFrom = 0
        var chunk = [UInt8](repeating: 0, count: min(EventLineScanner.chunkSize, max(4096, maxBytes)))
        reading: while position < end {
            let want = min(chunk.count, end - position)
            let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { break }
            buffer += chunk[0..<got]
            position += got
            var stop = false
            buffer.withUnsafeBytes { raw in
                while !stop, let newline = EventLineScanner.firstNewline(in: raw, from: scanFrom) {
                    let start = scanFrom
                    scanFrom = newline + 1
                    guard newline > start, let seq = EventLineScanner.seqOf(UnsafeRawBufferPointer(rebasing: raw[start..<newline])) else {
                        continue
                    }
                    if seq < expected { continue }
                    if seq > expected {
                        if slice.lines.isEmpty { slice.gap = expected...(seq - 1) }
                        stop = true
                    } else {
                        slice.lines.append(.init(seq: seq, range: start..<newline))
                        expected += 1
                        stop = slice.lines.count >= maxEvents || newline + 1 >= maxBytes
                    }
                }
            }
            if stop { break reading }
            // Nothing kept yet: drop the lines looked at (those at or before `since`).
            if slice.lines.isEmpty {
                buffer.removeFirst(scanFrom)
                scanFrom = 0
            }
        }
        if slice.gap == nil, slice.lines.last.map({ $0.seq >= scannedLastSeq }) ?? (since >= scannedLastSeq) {
            slice.reachedEnd = true
        } else if slice.lines.isEmpty, slice.gap == nil {
            // Nothing at or after `expected` in the file, though lines end later: they were
            // all lower (a damaged file). Treat as the end.
            slice.reachedEnd = true
        }
        let used = slice.lines.last.map { $0.range.upperBound } ?? 0
        if used < buffer.count { buffer.removeLast(buffer.count - used) }
        slice.bytes = buffer
        return slice
    }

    /// Loads `events.idx` once, then scans what was appended since the last look.
    private func refresh(_ fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        let size = Int(info.st_size)
        if !loadedIndexFile {
            loadedIndexFile = true
            let indexFD = Glibc.open(EventIndex.path(forLog: path), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            index = EventIndex.load(indexFD: indexFD, logFD: fd, logSize: size)
            if indexFD >= 0 { Glibc.close(indexFD) }
            scannedEnd = index.entries.last?.offset ?? 0
        }
        if size < scannedEnd {
            // Cut back (a rolled-back append, a replaced file): start over.
            index = EventIndex()
            scannedEnd = 0
            scannedLastSeq = 0
        }
        guard size > scannedEnd else { return }
        let scanned = EventLineScanner.scan(fd: fd, from: scannedEnd, to: size, index: &index)
        if let seq = scanned.lastSeq { scannedLastSeq = seq }
        scannedEnd = scanned.end
    }
}
