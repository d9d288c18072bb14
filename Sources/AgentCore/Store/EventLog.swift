#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// One job's events as an append-only NDJSON file: one encoded event per line, in seq order.
/// Appends are batched by the caller (one `write` per loop turn), so the file costs one
/// syscall per burst of output, not one per line. Replay reads from any seq; a torn last line
/// (the server died mid-write) is skipped.
public final class EventLog {
    public let path: String
    private var fd: Int32 = -1

    public init(path: String) {
        self.path = path
    }

    deinit { close() }

    /// Appends already-encoded lines (each ending in "\n") in one write.
    public func append(_ bytes: [UInt8]) throws(SystemError) {
        if fd < 0 {
            switch AgentWrittenFile.open(path, flags: O_RDWR | O_CREAT | O_APPEND, mode: 0o600) {
            case .opened(let opened): fd = opened
            case .missing: throw SystemError("open \(path)", errno: ENOENT)
            case .notRegular: throw SystemError("open \(path) (not a regular file)", errno: EINVAL)
            case .failed(let code): throw SystemError("open \(path)", errno: code)
            }
            try terminateTornLine()
        }
        let failure = bytes.withUnsafeBytes { buffer -> SystemError? in
            do throws(SystemError) { try FileDescriptor.writeAll(fd, buffer) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    /// A crash may have left a last line without its newline; end it so the next event
    /// starts a line of its own (the torn line is then skipped on replay).
    private func terminateTornLine() throws(SystemError) {
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return }
        var last: UInt8 = 0
        guard pread(fd, &last, 1, size - 1) == 1 else { throw SystemError.last("pread \(path)") }
        if last != 0x0A {
            var newline: UInt8 = 0x0A
            guard Glibc.write(fd, &newline, 1) == 1 else { throw SystemError.last("write \(path)") }
        }
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Events with seq > `since`, at most `limit`.
    public static func read(path: String, since: Int = 0, limit: Int = .max) -> [JobEvent] {
        readWithLines(path: path, since: since, limit: limit).map(\.event)
    }

    /// Events with seq > `since` and the stored line of each (the bytes every viewer gets,
    /// so replay never re-encodes). Lines at or below `since` are skipped by their seq alone,
    /// without parsing, so resuming near the end of a long history stays cheap.
    public static func readWithLines(path: String, since: Int = 0, limit: Int = .max) -> [(event: JobEvent, line: [UInt8])] {
        var events: [(event: JobEvent, line: [UInt8])] = []
        forEachLine(path: path) { line in
            if let seq = seqOf(line), seq <= since { return true }
            guard let value = try? JSONParser.parse(line), let event = JobEvent(json: value), event.seq > since else { return true }
            events.append((event, line))
            return events.count < limit
        }
        return events
    }

    /// The raw lines (without newline) of events with seq > `since`: replay without re-encoding.
    public static func readEncoded(path: String, since: Int = 0, limit: Int = .max) -> [(seq: Int, bytes: [UInt8])] {
        var lines: [(seq: Int, bytes: [UInt8])] = []
        forEachLine(path: path) { line in
            guard let seq = seqOf(line), seq > since, (try? JSONParser.parse(line)) != nil else { return true }
            lines.append((seq, line))
            return lines.count < limit
        }
        return lines
    }

    /// The seq of the last complete event, 0 for none.
    public static func lastSeq(path: String) -> Int {
        var last = 0
        forEachLine(path: path) { line in
            if let seq = seqOf(line), (try? JSONParser.parse(line)) != nil { last = seq }
            return true
        }
        return last
    }

    /// Our own encoder always writes `"seq":N` right after the job id, so the seq can be
    /// read without parsing the whole line.
    static func seqOf(_ line: [UInt8]) -> Int? {
        let marker = Array(",\"seq\":".utf8)
        guard line.count > marker.count else { return nil }
        var index = 0
        let limit = min(line.count - marker.count, 512)
        while index <= limit {
            if line[index] == marker[0], Array(line[index..<(index + marker.count)]) == marker {
                var value = 0
                var cursor = index + marker.count
                var digits = 0
                while cursor < line.count, line[cursor] >= 48, line[cursor] <= 57, digits < 18 {
                    value = value * 10 + Int(line[cursor] - 48)
                    cursor += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            index += 1
        }
        return nil
    }

    /// Calls `body` for each complete line; stops when it returns false. The job's agent can
    /// write to its job directory, so anything but a regular file there (a FIFO that would
    /// block the loop, a symlink to elsewhere) reads as no events.
    private static func forEachLine(path: String, _ body: ([UInt8]) -> Bool) {
        guard case .opened(let fd) = AgentWrittenFile.open(path) else { return }
        defer { Glibc.close(fd) }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            pending.append(contentsOf: chunk[0..<count])
            var start = 0
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                if newline > start, !body(Array(pending[start..<newline])) { return }
                start = newline + 1
            }
            pending.removeFirst(start)
        }
        // A last line without a newline was torn by a crash: tolerated, not replayed.
    }
}
