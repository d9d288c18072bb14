#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// One process owns a data directory at a time: the one holding an exclusive `flock` on the
/// directory itself. The owner recovers the directory's jobs at start (marking running ones
/// interrupted and stopping their orphans), so a second owner would kill the first one's
/// live jobs. The kernel drops the lock when its process dies, however it dies, so a crash
/// never leaves a stale lock behind. The lock is on the directory, not on a file in it: a
/// file that looks stale can be deleted, and a second owner would then lock a new file
/// beside the first (attacker trial). `<data>/lock` only names the holder for the message
/// others get.
public final class DataDirectoryLock {
    public enum Outcome {
        case acquired(DataDirectoryLock)
        /// Another process holds it; what it wrote about itself ("pid 123, agentgate serve").
        case held(by: String)
    }

    public let path: String
    /// The directory, locked.
    private let directory: Int32
    /// `<data>/lock`, which says who holds it.
    private let descriptor: Int32

    private init(path: String, directory: Int32, descriptor: Int32) {
        self.path = path
        self.directory = directory
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
        close(directory)
    }

    /// Takes the lock of `dataDirectory` (which must exist) without waiting. `owner` says what
    /// this process is ("agentgate serve on http://127.0.0.1:7777").
    public static func acquire(dataDirectory: String, owner: String) throws(JobStore.Error) -> Outcome {
        let path = dataDirectory + "/lock"
        // Close-on-exec: an agent must not inherit the lock and keep it after we exit.
        let directory = open(dataDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else {
            throw JobStore.Error(description: "cannot open \(dataDirectory): \(SystemError("open", errno: errno).message)")
        }
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            let error = errno
            close(directory)
            throw JobStore.Error(description: "cannot open \(path): \(SystemError("open", errno: error).message)")
        }
        if flock(directory, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            defer {
                close(descriptor)
                close(directory)
            }
            guard error == EWOULDBLOCK else {
                throw JobStore.Error(description: "cannot lock \(dataDirectory): \(SystemError("flock", errno: error).message)")
            }
            return .held(by: holder(descriptor))
        }
        let lock = DataDirectoryLock(path: path, directory: directory, descriptor: descriptor)
        lock.describe("pid \(getpid()), \(owner)")
        return .acquired(lock)
    }

    /// What a holder adds to its line once it is stopping.
    public static let stoppingMark = "(stopping)"

    /// As `acquire`, but while the holder the lock file names is gone or says it is stopping,
    /// tries again for up to `milliseconds`: a child the holder forked keeps a copy of the
    /// lock until it execs, so a server SIGKILLed while it started a job holds its data dir a
    /// moment longer, and a server told to stop takes a moment to (attacker trials: a restart
    /// right after a SIGKILL, or a scripted `kill; serve`, was refused).
    public static func acquire(dataDirectory: String, owner: String, waitingForAGoneHolder milliseconds: Int) throws(JobStore.Error) -> Outcome {
        var waited = 0
        while true {
            let outcome = try acquire(dataDirectory: dataDirectory, owner: owner)
            guard case .held(let holder) = outcome, waited < milliseconds, let pid = holderPid(holder),
                holder.hasSuffix(stoppingMark) || ProcessTable.hasEnded(pid)
            else { return outcome }
            usleep(20_000)
            waited += 20
        }
    }

    /// The pid a holder's line starts with ("pid 123, agentgate serve …").
    static func holderPid(_ holder: String) -> pid_t? {
        guard holder.hasPrefix("pid ") else { return nil }
        return pid_t(holder.dropFirst(4).prefix { $0.isNumber })
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
