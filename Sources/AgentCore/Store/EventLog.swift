#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// One job's events as an append-only NDJSON file, `events.ndjson`: one encoded event per
/// line, in seq order, and beside it `events.idx`, a sparse index (the seq and byte offset of
/// the first line after each 64 KiB), so reading from any seq costs a seek, not a scan.
///
/// ```
///  events.ndjson  {…seq 1…}\n{…seq 2…}\n … {…seq 913…}\n … {…seq 1838…}\n …
///  events.idx     (1, 0) (913, 65_611) (1838, 131_190) …   16 bytes each, little-endian
/// ```
///
/// Appends are batched by the caller (one `write` per loop turn). A failed append (a full
/// disk) is rolled back to the last whole line and reported: nothing is counted as stored
/// that is not, and no torn line is left mid-file, so every newline-terminated line is a
/// whole event and readers need not parse lines to trust them. A torn last line (the server
/// died mid-write) is cut off when the file is next opened for appending. The index is only
/// a shortcut: it is checked against the file before use, and rebuilt by a scan when it is
/// missing, torn or wrong.
public final class EventLog {
    public let path: String
    private var fd: Int32 = -1
    private var indexFD: Int32 = -1
    /// Bytes of whole lines in the file.
    public private(set) var size = 0
    /// The seq of the last stored event (0: none).
    public private(set) var lastSeq = 0
    private var index = EventIndex()

    public init(path: String) {
        self.path = path
    }

    deinit { close() }

    public var indexPath: String { EventIndex.path(forLog: path) }

    /// Appends already-encoded lines (each ending in "\n", seqs ascending) in one write.
    /// On failure nothing of `bytes` stays in the file.
    public func append(_ bytes: [UInt8]) throws(SystemError) {
        if fd < 0 { try open() }
        let failure = bytes.withUnsafeBytes { buffer -> SystemError? in
            do throws(SystemError) { try FileDescriptor.writeAll(fd, buffer) } catch { return error }
            return nil
        }
        if let failure {
            // Part of the batch may have been written before the disk filled up.
            _ = ftruncate(fd, off_t(size))
            throw failure
        }
        let start = size
        size += bytes.count
        if let seq = EventLineScanner.seqOfLastLine(bytes) { lastSeq = seq }
        let added = index.noteAppended(bytes, at: start)
        if !added.isEmpty { writeIndex(added) }
    }

    /// Opens for appending: cuts a torn last line off, then takes the index from `events.idx`
    /// when it agrees with the file, scanning what it does not cover.
    private func open() throws(SystemError) {
        switch AgentWrittenFile.open(path, flags: O_RDWR | O_CREAT | O_APPEND, mode: 0o600) {
        case .opened(let opened): fd = opened
        case .missing: throw SystemError("open \(path)", errno: ENOENT)
        case .notRegular: throw SystemError("open \(path) (not a regular file)", errno: EINVAL)
        case .failed(let code): throw SystemError("open \(path)", errno: code)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemError.last("fstat \(path)") }
        let whole = EventLineScanner.endOfLastWholeLine(fd: fd, size: Int(info.st_size))
        if whole < Int(info.st_size) {
            guard ftruncate(fd, off_t(whole)) == 0 else { throw SystemError.last("ftruncate \(path)") }
        }
        size = whole
        indexFD = Glibc.open(indexPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        index = EventIndex.load(indexFD: indexFD, logFD: fd, logSize: size)
        // The index file keeps only the entries that held; the rest are found again below.
        if indexFD >= 0 { _ = ftruncate(indexFD, off_t(index.entries.count * EventIndex.recordSize)) }
        let before = index.entries.count
        let scanned = EventLineScanner.scan(fd: fd, from: index.entries.last?.offset ?? 0, to: size, index: &index)
        lastSeq = scanned.lastSeq ?? index.entries.last?.seq ?? 0
        if index.entries.count > before { writeIndex(Array(index.entries[before...])) }
    }

    private func writeIndex(_ entries: [EventIndex.Entry]) {
        guard indexFD >= 0 else { return }
        let bytes = EventIndex.encode(entries)
        let written = bytes.withUnsafeBytes { buffer -> Bool in
            (try? FileDescriptor.writeAll(indexFD, buffer)) != nil
        }
        if !written {
            // An index that misses entries is still right (readers scan past its end); one
            // with a torn record is cut back when next loaded. Stop writing it.
            Glibc.close(indexFD)
            indexFD = -1
        }
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        if indexFD >= 0 { Glibc.close(indexFD) }
        fd = -1
        indexFD = -1
    }

    // MARK: reading (tests, the REST page of events, `exec`)

    /// Events with seq > `since`, at most `limit`.
    public static func read(path: String, since: Int = 0, limit: Int = .max) -> [JobEvent] {
        readWithLines(path: path, since: since, limit: limit).map(\.event)
    }

    /// Events with seq > `since` and the stored line of each (the bytes every viewer gets,
    /// so nothing is re-encoded), at most `limit`, read from the nearest indexed offset.
    public static func readWithLines(path: String, since: Int = 0, limit: Int = .max) -> [(event: JobEvent, line: [UInt8])] {
        readEncoded(path: path, since: since, limit: limit).compactMap { line in
            guard let value = try? JSONParser.parse(line.bytes), let event = JobEvent(json: value) else { return nil }
            return (event, line.bytes)
        }
    }

    /// The raw lines (without newline) of events with seq > `since`, at most `limit`.
    public static func readEncoded(path: String, since: Int = 0, limit: Int = .max) -> [(seq: Int, bytes: [UInt8])] {
        let reader = EventLogReader(path: path)
        var lines: [(seq: Int, bytes: [UInt8])] = []
        var cursor = since
        while lines.count < limit {
            let slice = reader.slice(after: cursor, maxBytes: 1 << 20, maxEvents: limit - lines.count)
            for line in slice.lines { lines.append((line.seq, Array(slice.bytes[line.range]))) }
            if let gap = slice.gap { cursor = gap.upperBound; continue }
            guard let last = slice.lines.last else { break }
            cursor = last.seq
        }
        return lines
    }

    /// The seq of the last whole event, 0 for none.
    public static func lastSeq(path: String) -> Int {
        EventLogReader(path: path).lastSeq()
    }

    /// Our own encoder always writes `"seq":N` right after the job id, so the seq can be
    /// read without parsing the whole line.
    static func seqOf(_ line: [UInt8]) -> Int? {
        line.withUnsafeBytes { EventLineScanner.seqOf(UnsafeRawBufferPointer(rebasing: $0[...])) }
    }
}

/// The sparse seq → offset index of one event file.
struct EventIndex {
    struct Entry: Equatable {
        var seq: Int
        var offset: Int
    }

    /// One entry per 64 KiB of events: a seek lands at most 64 KiB (plus one line) before
    /// the wanted seq, and a 1 GiB log costs 16,384 entries (256 KiB).
    static let spacing = 64 * 1024
    static let recordSize = 16

    private(set) var entries: [Entry] = []
    /// The next entry goes to the first line that starts at or after this offset.
    private(set) var nextOffset = 0

    static func path(forLog path: String) -> String {
        (path.hasSuffix(".ndjson") ? String(path.dropLast(7)) : path) + ".idx"
    }

    /// The offset to start reading at for events after `since`: the last entry whose seq is
    /// at most `since + 1` (0 when none is).
    func startOffset(after since: Int) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].seq <= since + 1 { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? 0 : entries[low - 1].offset
    }

    /// Notes a line with `seq` that starts at `offset`; true when it became an entry.
    @discardableResult
    mutating func noteLine(seq: Int, at offset: Int) -> Bool {
        guard offset >= nextOffset else { return false }
        if let last = entries.last, seq <= last.seq || offset <= last.offset { return false }
        entries.append(Entry(seq: seq, offset: offset))
        nextOffset = offset + Self.spacing
        return true
    }

    /// The entries a batch of whole lines appended at `start` adds.
    mutating func noteAppended(_ bytes: [UInt8], at start: Int) -> [Entry] {
        var added: [Entry] = []
        bytes.withUnsafeBytes { buffer in
            while nextOffset < start + buffer.count {
                // The first line that starts at or after nextOffset: the batch's own start, or
                // just after a newline.
                var lineStart = 0
                if nextOffset > start {
                    guard let newline = EventLineScanner.firstNewline(in: buffer, from: nextOffset - start - 1) else { return }
                    lineStart = newline + 1
                }
                guard lineStart < buffer.count else { return }
                guard let seq = EventLineScanner.seqOf(UnsafeRawBufferPointer(rebasing: buffer[lineStart...])) else {
                    nextOffset = start + lineStart + 1
                    continue
                }
                if noteLine(seq: seq, at: start + lineStart) { added.append(entries[entries.count - 1]) } else { return }
            }
        }
        return added
    }

    static func encode(_ entries: [Entry]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * recordSize)
        for entry in entries {
            withUnsafeBytes(of: Int64(entry.seq).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: Int64(entry.offset).littleEndian) { bytes += $0 }
        }
        return bytes
    }

    /// The entries of `events.idx` that agree with the log: increasing, inside its whole
    /// lines, and the last one naming a line that starts at its offset with its seq (checked
    /// backwards until one does). Anything else reads as fewer entries, never wrong ones.
    static func load(indexFD: Int32, logFD: Int32, logSize: Int) -> EventIndex {
        var index = EventIndex()
        guard indexFD >= 0, logSize > 0 else { return index }
        var info = stat()
        guard fstat(indexFD, &info) == 0, info.st_size >= recordSize else { return index }
        let count = min(Int(info.st_size) / recordSize, logSize / 2 + 1)
        var raw = [UInt8](repeating: 0, count: count * recordSize)
        let got = raw.withUnsafeMutableBytes { pread(indexFD, $0.baseAddress, $0.count, 0) }
        guard got == raw.count else { return index }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        raw.withUnsafeBytes { buffer in
            for record in 0..<count {
                let seq = Int(Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: record * recordSize, as: Int64.self)))
                let offset = Int(Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: record * recordSize + 8, as: Int64.self)))
                guard seq > 0, offset >= 0, offset < logSize else { break }
                if let last = entries.last, seq <= last.seq || offset <= last.offset { break }
                entries.append(Entry(seq: seq, offset: offset))
            }
        }
        while let last = entries.last, EventLineScanner.seqOfLine(fd: logFD, at: last.offset) != last.seq {
            entries.removeLast()
        }
        index.entries = entries
        index.nextOffset = (entries.last?.offset).map { $0 + spacing } ?? 0
        return index
    }
}

/// Line-level reading of event files, shared by the appender and the readers.
public enum EventLineScanner {
    static let chunkSize = 256 * 1024

    /// `"seq":N` within the first 512 bytes of a line (our encoder writes it right after the
    /// job id).
    public static func seqOf(_ line: UnsafeRawBufferPointer) -> Int? {
        // `,"seq":` starting within the line's first 512 bytes, before any newline. Found by
        // hopping from comma to comma (memchr): this runs once per stored line on every read.
        let markerCount = 7
        guard line.count > markerCount, let base = line.baseAddress else { return nil }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let window = min(line.count - markerCount, 512) + 1
        var index = 0
        while index < window, let found = memchr(bytes + index, 0x2C, window - index) {
            let at = base.distance(to: UnsafeRawPointer(found))
            if bytes[at + 1] == 0x22, bytes[at + 2] == 0x73, bytes[at + 3] == 0x65, bytes[at + 4] == 0x71, bytes[at + 5] == 0x22,
                bytes[at + 6] == 0x3A
            {
                if memchr(base, 0x0A, at) != nil { return nil }
                var value = 0
                var cursor = at + markerCount
                var digits = 0
                while cursor < line.count, bytes[cursor] >= 48, bytes[cursor] <= 57, digits < 18 {
                    value = value * 10 + Int(bytes[cursor] - 48)
                    cursor += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            index = at + 1
        }
        return nil
    }

    /// The `type` of a stored line (`{"type":"job:log",…`), without parsing it or copying.
    public static func typeOf(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        // `{"type":"`
        let prefixCount = 9
        guard line.count > prefixCount + 1, line[0] == 0x7B, line[1] == 0x22, line[2] == 0x74, line[3] == 0x79,
            line[4] == 0x70, line[5] == 0x65, line[6] == 0x22, line[7] == 0x3A, line[8] == 0x22
        else { return nil }
        var end = prefixCount
        while end < min(line.count, 64), line[end] != 0x22 { end += 1 }
        guard end < line.count else { return nil }
        return UnsafeRawBufferPointer(rebasing: line[prefixCount..<end])
    }

    /// Whether a `typeOf` answer is `type`.
    public static func type(_ bytes: UnsafeRawBufferPointer, is type: StaticString) -> Bool {
        bytes.count == type.utf8CodeUnitCount && memcmp(bytes.baseAddress!, type.utf8Start, bytes.count) == 0
    }

    static func firstNewline(in buffer: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < buffer.count, let base = buffer.baseAddress else { return nil }
        guard let found = memchr(base + max(0, start), 0x0A, buffer.count - max(0, start)) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// The seq of the last line of a batch of whole lines.
    /// The seq of the last line that has one (a batch may end with a line that is not an
    /// event: a supervised job's spool cursor).
    public static func seqOfLastLine(_ bytes: [UInt8]) -> Int? {
        bytes.withUnsafeBytes { buffer in
            var end = buffer.count - 1  // the last line's newline
            while end > 0 {
                var start = end - 1
                while start >= 0, buffer[start] != 0x0A { start -= 1 }
                if let seq = seqOf(UnsafeRawBufferPointer(rebasing: buffer[(start + 1)..<end])) { return seq }
                end = start
            }
            return nil
        }
    }

    /// The seq of the line that starts at `offset`, or nil when no event line starts there.
    static func seqOfLine(fd: Int32, at offset: Int) -> Int? {
        var head = [UInt8](repeating: 0, count: 600)
        let got = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard got > 0 else { return nil }
        if offset > 0 {
            var before: UInt8 = 0
            guard pread(fd, &before, 1, off_t(offset - 1)) == 1, before == 0x0A else { return nil }
        }
        return head.withUnsafeBytes { seqOf(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
    }

    /// The end of the last newline-terminated line: anything after it was torn by a crash.
    static func endOfLastWholeLine(fd: Int32, size: Int) -> Int {
        var end = size
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while end > 0 {
            let start = max(0, end - chunk.count)
            let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, end - start, off_t(start)) }
            guard got == end - start else { return size }
            if let newline = chunk[0..<got].lastIndex(of: 0x0A) { return start + newline + 1 }
            end = start
        }
        return 0
    }

    /// Reads whole lines from `from` to `to`, noting index entries; returns the seq of the
    /// last line and where the last whole line ends.
    @discardableResult
    static func scan(fd: Int32, from: Int, to: Int, index: inout EventIndex) -> (lastSeq: Int?, end: Int) {
        var lastSeq: Int?
        var position = from
        var end = from
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        while position < to {
            let want = min(chunk.count, to - position)
            let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { break }
            let lineBase = position - pending.count
            pending += chunk[0..<got]
            position += got
            var start = 0
            pending.withUnsafeBytes { buffer in
                while let newline = firstNewline(in: buffer, from: start) {
                    if newline > start, let seq = seqOf(UnsafeRawBufferPointer(rebasing: buffer[start..<newline])) {
                        index.noteLine(seq: seq, at: lineBase + start)
                        lastSeq = seq
                    }
                    start = newline + 1
                    end = lineBase + start
                }
            }
            pending.removeFirst(start)
        }
        return (lastSeq, end)
    }
}
