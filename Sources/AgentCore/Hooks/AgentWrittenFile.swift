#if canImport(Glibc)
import Glibc
#endif

/// Opening a file an agent could have replaced (its output file, its job's event log).
///
/// The agent runs as the server's user and can put anything at those paths: a FIFO (a
/// blocking open or read would hang the event loop, and every client with it), a symlink
/// (to make the server read or append to another file), a device. So the file is opened
/// without following a symlink and without blocking, and used only if it is a regular file,
/// whose reads never block.
public enum AgentWrittenFile {
    public enum Opened: Equatable {
        case opened(Int32)
        case missing
        /// A symlink, FIFO, socket, device or directory.
        case notRegular
        case failed(Int32)
    }

    /// O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC, then fstat: the fd only when it is a regular file.
    public static func open(_ path: String, flags: Int32 = O_RDONLY, mode: mode_t = 0) -> Opened {
        let fd = Glibc.open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else {
            switch errno {
            case ENOENT: return .missing
            case ELOOP, ENXIO, EISDIR: return .notRegular  // symlink; socket; directory
            case let code: return .failed(code)
            }
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            return .failed(code)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return .notRegular
        }
        return .opened(fd)
    }
}
