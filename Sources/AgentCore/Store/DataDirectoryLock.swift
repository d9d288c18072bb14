#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// One process owns a data directory at a time: the one holding an exclusive `flock` on
/// `<data>/lock`. The owner recovers the directory's jobs at start (marking running ones
/// interrupted and stopping their orphans), so a second owner would kill the first one's
/// live jobs. The kernel drops the lock when its process dies, however it dies, so a crash
/// never leaves a stale lock behind. The file names its holder for the message others get.
public final class DataDirectoryLock {
    public enum Outcome {
        case acquired(DataDirectoryLock)
        /// Another process holds it; what it wrote about itself ("pid 123, agentgate serve").
        case held(by: String)
    }

    public let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Takes the lock of `dataDirectory` (which must exist) without waiting. `owner` says what
    /// this process is ("agentgate serve on http://127.0.0.1:7777").
    public static func acquire(dataDirectory: String, owner: String) throws(JobStore.Error) -> Outcome {
        let path = dataDirectory + "/lock"
        // Close-on-exec: an agent must not inherit the lock and keep it after we exit.
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw JobStore.Error(description: "cannot open \(path): \(SystemError("open", errno: errno).message)")
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            defer { close(descriptor) }
            guard error == EWOULDBLOCK else {
                throw JobStore.Error(description: "cannot lock \(path): \(SystemError("flock", errno: error).message)")
            }
            return .held(by: holder(descriptor))
        }
        let lock = DataDirectoryLock(path: path, descriptor: descriptor)
        lock.describe("pid \(getpid()), \(owner)")
        return .acquired(lock)
    }

    /// Rewrites what the file says about its holder (the address is known after listening).
    public func describe(_ text: String) {
        _ = ftruncate(descriptor, 0)
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
    }

    private static func holder(_ descriptor: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        let text = count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
        let line = text.split(separator: "\n").first.map(String.init) ?? ""
        return line.isEmpty ? "another agentgate process" : line
    }
}
