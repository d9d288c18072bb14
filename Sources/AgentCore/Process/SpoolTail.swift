#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Follows a spool file an agent writes straight into (`O_APPEND`, through its supervisor),
/// like `tail -f`: each read takes what was appended since the last one, from an offset of
/// its own, so a reader that stops (a server restart) loses nothing and the writer never
/// notices (no pipe to break).
///
/// A regular file can be truncated under its reader: a job's `cmd > /dev/stdout` reopens its
/// fd 1 with `O_TRUNC` (and writes from 0), as does `truncate -s 0 /proc/self/fd/1`. Each read
/// starts a few bytes early and compares them with the bytes last handed on; a file shorter
/// than the offset, or different there, was truncated, and is read again from its start.
/// (What it held that was not yet read is gone; the caller says so.) A tail started from a
/// cursor checks the bytes the cursor recorded before its offset (`SpoolCursor`), so this
/// holds across a restart too.
final class SpoolTail {
    let path: String
    /// Where the next read starts: every byte before it was handed on.
    private(set) var offset: Int
    private var fd: Int32 = -1
    private var buffer = [UInt8](repeating: 0, count: SpoolTail.checkedBytes + 64 * 1024)
    /// The last bytes handed on (at most `checkedBytes`), expected right before `offset`.
    private var handedTail: [UInt8] = []
    /// Started from a cursor with no bytes recorded before it: only the file's size is
    /// checked, once.
    private var sizeUnchecked: Bool
    /// The file's modification time when a read found it ended at `offset`. A file the same
    /// size with a later time was written again in place: the same bytes rewritten (a job's
    /// `echo progress > /dev/stdout` in a loop), which no comparison of bytes can see.
    private var quietSince: timespec?

    /// How many bytes before the offset each read compares (and are kept, for the engine's
    /// cursor to record some of): enough that a rewrite of the file is rarely mistaken for
    /// what was there, few enough to cost nothing.
    static let checkedBytes = 256

    /// - Parameter before: the file's bytes right before `offset`, as last read (the cursor's).
    init(path: String, from offset: Int = 0, before: [UInt8] = []) {
        self.path = path
        self.offset = offset
        handedTail = Array(before.suffix(min(offset, Self.checkedBytes)))
        sizeUnchecked = offset > 0 && handedTail.isEmpty
    }

    /// Up to `count` bytes of the file right before `position` (at or before `offset`), from
    /// those read last; fewer, or none, when they were read too long ago.
    func bytes(before position: Int, count: Int) -> [UInt8] {
        let windowStart = offset - handedTail.count
        guard position <= offset, position > windowStart else { return [] }
        let end = handedTail.count - (offset - position)
        return Array(handedTail[max(0, end - count)..<end])
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Hands on up to `maxBytes` appended since the last read, in chunks; returns whether the
    /// file may hold more (the budget ran out before its end). `truncated` is told, before
    /// the file is read again from its start, where the reading was and whether what was
    /// handed on ended a line.
    func read(maxBytes: Int, truncated: (_ at: Int, _ endedLine: Bool) -> Void, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        if fd < 0 {
            guard case .opened(let opened) = AgentWrittenFile.open(path) else { return false }
            fd = opened
        }
        if sizeUnchecked {
            sizeUnchecked = false
            var info = stat()
            if fstat(fd, &info) == 0, Int(info.st_size) < offset { restart(truncated) }
        }
        if let since = quietSince {
            quietSince = nil
            var info = stat()
            if fstat(fd, &info) == 0, Int(info.st_size) == offset, info.st_mtim.tv_sec != since.tv_sec || info.st_mtim.tv_nsec != since.tv_nsec {
                restart(truncated)
            }
        }
        var taken = 0
        while taken < maxBytes {
            let check = handedTail.count
            let want = min(buffer.count - check, maxBytes - taken)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, check + want, off_t(offset - check)) }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { return false }
            guard got >= check, buffer[0..<check].elementsEqual(handedTail) else {
                restart(truncated)
                continue
            }
            let fresh = got - check
            guard fresh > 0 else {
                noteQuiet()
                return false
            }
            offset += fresh
            taken += fresh
            remember(buffer[check..<got])
            buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[check..<got])) }
            // A short read reached the end (of a regular file): no second read to learn it.
            // What the agent appends next wakes us again (inotify, or the poll).
            if fresh < want {
                noteQuiet()
                return false
            }
        }
        return true
    }

    /// At the file's end: its time, if nothing was appended since (else the next read sees
    /// what was, and checks its bytes as usual).
    private func noteQuiet() {
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == offset else { return }
        quietSince = info.st_mtim
    }

    private func restart(_ truncated: (_ at: Int, _ endedLine: Bool) -> Void) {
        let at = offset
        let endedLine = handedTail.last.map { $0 == 0x0A } ?? true
        offset = 0
        handedTail = []
        truncated(at, endedLine)
    }

    private func remember(_ bytes: ArraySlice<UInt8>) {
        if bytes.count >= Self.checkedBytes {
            handedTail = Array(bytes.suffix(Self.checkedBytes))
        } else {
            handedTail.append(contentsOf: bytes)
            if handedTail.count > Self.checkedBytes { handedTail.removeFirst(handedTail.count - Self.checkedBytes) }
        }
    }
}
