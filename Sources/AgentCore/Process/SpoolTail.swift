#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Follows a spool file an agent writes straight into (`O_APPEND`, through its supervisor),
/// like `tail -f`: each read takes what was appended since the last one, from an offset of
/// its own, so a reader that stops (a server restart) loses nothing and the writer never
/// notices (no pipe to break).
final class SpoolTail {
    let path: String
    /// Where the next read starts: every byte before it was handed on.
    private(set) var offset: Int
    private var fd: Int32 = -1
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    init(path: String, from offset: Int = 0) {
        self.path = path
        self.offset = offset
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Hands on up to `maxBytes` appended since the last read, in chunks; returns whether the
    /// file may hold more (the budget ran out before its end).
    func read(maxBytes: Int, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        if fd < 0 {
            guard case .opened(let opened) = AgentWrittenFile.open(path) else { return false }
            fd = opened
        }
        var taken = 0
        while taken < maxBytes {
            let want = min(buffer.count, maxBytes - taken)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { return false }
            offset += got
            taken += got
            buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
            // A short read reached the end (of a regular file): no second read to learn it.
            // What the agent appends next wakes us again (inotify, or the poll).
            if got < want { return false }
        }
        return true
    }
}
