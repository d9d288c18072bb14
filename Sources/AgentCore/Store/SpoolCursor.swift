#if canImport(Glibc)
import Glibc
#endif

/// How far a supervised job's spool files (the agent's stdout and stderr, issue 14) were
/// turned into events: kept in the job's event log right behind the events made from those
/// bytes, in the same append, so the two cannot disagree. A server that starts again reads
/// the spools on from here: no event lost, none made twice.
///
/// ```
///  events.ndjson  {…seq 41…}\n{…seq 42…}\n{"spool":{"stdout":5120,"stderr":88}}\n{…seq 43…}\n …
/// ```
///
/// The line has no seq: every reader of events skips it.
public struct SpoolCursor: Equatable, Sendable {
    public var stdout: Int
    public var stderr: Int
    /// The spools' last bytes before each offset (at most `checkBytes`, fewer when not known):
    /// a server that reads on from here first checks they are still there, so a spool the job
    /// truncated and wrote again while no server ran is noticed (`SpoolTail`).
    public var stdoutBefore: [UInt8]
    public var stderrBefore: [UInt8]

    public static let checkBytes = 16

    public init(stdout: Int, stderr: Int, stdoutBefore: [UInt8] = [], stderrBefore: [UInt8] = []) {
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutBefore = stdoutBefore
        self.stderrBefore = stderrBefore
    }

    private static let prefix = Array(#"{"spool":{"stdout":"#.utf8)
    private static let middle = Array(#","stderr":"#.utf8)
    private static let checks = Array(#","before":[""#.utf8)
    private static let checksMiddle = Array(#"",""#.utf8)
    private static let checksEnd = Array(#""]"#.utf8)
    private static let suffix = Array("}}".utf8)

    /// `{"spool":{"stdout":N,"stderr":M}}\n`, with `,"before":["<hex>","<hex>"]` before the
    /// braces when either spool's bytes before its offset are known.
    public var line: [UInt8] {
        var line = Self.prefix + Array(String(stdout).utf8) + Self.middle + Array(String(stderr).utf8)
        if !stdoutBefore.isEmpty || !stderrBefore.isEmpty {
            line += Self.checks + Self.hex(stdoutBefore) + Self.checksMiddle + Self.hex(stderrBefore) + Self.checksEnd
        }
        return line + Self.suffix + [0x0A]
    }

    /// The cursor a line holds (without its newline), nil for any other line.
    public init?(line: ArraySlice<UInt8>) {
        guard line.starts(with: Self.prefix), line.reversed().starts(with: Self.suffix.reversed()) else { return nil }
        var body = line.dropFirst(Self.prefix.count).dropLast(Self.suffix.count)
        var stdoutBefore: [UInt8] = [], stderrBefore: [UInt8] = []
        if let checks = Self.find(Self.checks, in: body) {
            let hex = body[(checks + Self.checks.count)...]
            guard hex.reversed().starts(with: Self.checksEnd.reversed()), let split = Self.find(Self.checksMiddle, in: hex),
                let out = Self.bytes(hex: hex[hex.startIndex..<split]),
                let err = Self.bytes(hex: hex[(split + Self.checksMiddle.count)..<(hex.endIndex - Self.checksEnd.count)])
            else { return nil }
            (stdoutBefore, stderrBefore) = (out, err)
            body = body[body.startIndex..<checks]
        }
        guard let split = Self.find(Self.middle, in: body) else { return nil }
        let out = body[body.startIndex..<split]
        let err = body[(split + Self.middle.count)...]
        guard let stdout = Self.number(out), let stderr = Self.number(err) else { return nil }
        self.init(stdout: stdout, stderr: stderr, stdoutBefore: stdoutBefore, stderrBefore: stderrBefore)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func hex(_ bytes: [UInt8]) -> [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes { text += [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0F)]] }
        return text
    }

    private static func bytes(hex: ArraySlice<UInt8>) -> [UInt8]? {
        guard hex.count % 2 == 0, hex.count <= checkBytes * 2 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case 0x30...0x39: digit - 0x30
            case 0x61...0x66: digit - 0x61 + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            guard let high = value(hex[index]), let low = value(hex[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var index = haystack.startIndex
        while index + needle.count <= haystack.endIndex {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    private static func number(_ digits: ArraySlice<UInt8>) -> Int? {
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    /// The last cursor in the event log at `path`, searched back from its end through at most
    /// `maxScanBytes` (a cursor follows every append of a supervised job, so it is near the
    /// end); nil when there is none.
    public static func last(inLog path: String, maxScanBytes: Int = 16 << 20) -> SpoolCursor? {
        lastWithEnd(inLog: path, maxScanBytes: maxScanBytes)?.cursor
    }

    /// The last cursor and the offset just past its line: events after it (a batch the
    /// server died while writing) are made again from the spools.
    public static func lastWithEnd(inLog path: String, maxScanBytes: Int = 16 << 20) -> (cursor: SpoolCursor, end: Int)? {
        guard case .opened(let fd) = AgentWrittenFile.open(path) else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let size = Int(info.st_size)
        var end = size
        // The start of a line cut by the previous read (its end is known, its start not yet).
        var carry: [UInt8] = []
        while end > 0, size - end < maxScanBytes {
            let start = max(0, end - 64 * 1024)
            var bytes = [UInt8](repeating: 0, count: end - start)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
            guard got == bytes.count else { return nil }
            bytes += carry
            var lineEnd = bytes.count
            // A line counts only with its newline (a torn last line is not a cursor); the
            // newline of the line that runs into `carry` is the one that ended `carry`.
            func terminated(_ lineEnd: Int) -> Bool { lineEnd < bytes.count || end < size }
            while let newline = bytes[..<lineEnd].lastIndex(of: 0x0A) {
                if terminated(lineEnd), let cursor = SpoolCursor(line: bytes[(newline + 1)..<lineEnd]) {
                    return (cursor, start + lineEnd + 1)
                }
                lineEnd = newline
            }
            // What is left starts a line: the file's first one, or one that began earlier.
            if start == 0 { return terminated(lineEnd) ? SpoolCursor(line: bytes[..<lineEnd]).map { ($0, lineEnd + 1) } : nil }
            carry = Array(bytes[..<lineEnd])
            end = start
        }
        return nil
    }
}
