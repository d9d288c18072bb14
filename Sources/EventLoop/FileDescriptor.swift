#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSystemShims

/// Small helpers over raw fds used by every layer above the loop.
public enum FileDescriptor {
    /// A pipe whose both ends are close-on-exec; `nonBlockingRead` makes the read end
    /// non-blocking (the end our loop owns).
    public static func pipe(nonBlockingRead: Bool = true, nonBlockingWrite: Bool = false) throws(SystemError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard ag_pipe_cloexec(&fds) == 0 else { throw SystemError.last("pipe2") }
        if nonBlockingRead { setNonBlocking(fds[0]) }
        if nonBlockingWrite { setNonBlocking(fds[1]) }
        return (fds[0], fds[1])
    }

    /// Brings a range of a file into the page cache (blocking until it is read), so sending
    /// it later from the loop does not wait for the disk. Best effort.
    public static func readAhead(_ fd: Int32, range: Range<Int>) {
        _ = ag_readahead(fd, Int64(range.lowerBound), UInt(range.count))
    }

    public static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Result of one non-blocking read.
    public enum ReadResult: Equatable {
        case bytes(Int)
        case wouldBlock
        case endOfFile
        case failed(SystemError)
    }

    /// `read` retried on EINTR, with EAGAIN reported as `.wouldBlock`.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .endOfFile }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(.last("read"))
            }
        }
    }

    /// Writes as much as the fd takes without blocking; returns bytes written, 0 on EAGAIN.
    public static func writeSome(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Result<Int, SystemError> {
        while true {
            let n = Glibc.write(fd, bytes.baseAddress, bytes.count)
            if n >= 0 { return .success(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .success(0)
            default: return .failure(.last("write"))
            }
        }
    }

    /// Writes every byte to a blocking fd (files), retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("write")
            }
            offset += n
        }
    }

    /// Open fds of this process that are pipes or pidfds (what running a process costs),
    /// from /proc/self/fd; for leak tests.
    public static func processDescriptorCount() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        var target = [CChar](repeating: 0, count: 256)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard Int(name) != nil else { continue }
            let length = readlink("/proc/self/fd/" + name, &target, target.count - 1)
            guard length > 0 else { continue }
            let link = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if link.hasPrefix("pipe:") || link == "anon_inode:[pidfd]" { count += 1 }
        }
        return count
    }

    /// Count of open fds of this process (Linux /proc), for leak tests.
    public static func openCount() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while readdir(dir) != nil { count += 1 }
        return count - 3  // ".", ".." and the directory's own fd
    }
}
