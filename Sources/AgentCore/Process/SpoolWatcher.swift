#if canImport(Glibc)
import Glibc
#endif
import CSystemShims
import EventLoop
import Dispatch
import Synchronization

/// Wakes one supervised job when its spool files are written to: an inotify instance of its
/// own. One instance per job, not one shared: the kernel merges a write's event with the last
/// one queued only when they are alike, so a job's instance holds one event however fast its
/// agent writes, while a shared one queued an event per write of every job (100 jobs at
/// 1,000 lines a second overflowed its queue and left the server behind).
///
/// Closing an instance waits for the kernel's notification marks to be reaped, which takes
/// milliseconds while agents write: instances are closed on a thread of their own, never on
/// the loop, and a server that exits closes all that are left at once (`closeAllOpen`).
public final class SpoolWatcher {
    private let loop: EventLoop
    private var fd: Int32 = -1
    private var registration: EventLoop.Registration?
    private var wake: ((_ written: [Bool]) -> Void)?
    /// The watch descriptor of each path, in the order given.
    private var descriptors: [Int32] = []
    /// Where events are read: kept, as a busy job wakes up to a few hundred times a second.
    private var buffer = [UInt8](repeating: 0, count: 4096)

    /// Every instance open in this process, for `closeAllOpen`.
    private static let open = Mutex(Set<Int32>())

    init(loop: EventLoop) {
        self.loop = loop
    }

    deinit { stop() }

    /// Calls `wake` (on the loop) whenever `paths` are written to, saying which were; false
    /// where inotify is not available (the caller's poll still reads the files).
    func watch(_ paths: [String], wake: @escaping (_ written: [Bool]) -> Void) -> Bool {
        fd = ag_inotify_init()
        guard fd >= 0 else { return false }
        descriptors = paths.map { ag_inotify_watch_writes(fd, $0) }
        self.wake = wake
        registration = try? loop.register(fd: fd, interest: .readable) { [unowned self] _ in self.drain() }
        guard registration != nil else {
            close(fd)
            fd = -1
            return false
        }
        _ = Self.open.withLock { $0.insert(fd) }
        return true
    }

    /// Stops watching; the instance is closed off the loop.
    func stop() {
        wake = nil
        if let registration { loop.deregister(registration) }
        registration = nil
        guard fd >= 0 else { return }
        let closing = fd
        fd = -1
        guard Self.open.withLock({ $0.remove(closing) }) != nil else { return }
        DispatchQueue.global(qos: .utility).async { close(closing) }
    }

    /// Closes every instance still open, all at once (their waits overlap): for a server that
    /// exits and leaves its jobs running.
    public static func closeAllOpen() {
        let all = open.withLock { fds -> [Int32] in
            defer { fds.removeAll() }
            return Array(fds)
        }
        all.withUnsafeBufferPointer { ag_close_in_parallel($0.baseAddress, Int32($0.count)) }
    }

    private func drain() {
        var written = [Bool](repeating: false, count: descriptors.count)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            // struct inotify_event: wd, mask, cookie, len, then `len` bytes of name.
            var offset = 0
            while offset + 16 <= count {
                let descriptor = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Int32.self) }
                let mask = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) }
                let nameLength = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) }
                if mask & 0x4000 != 0 {  // IN_Q_OVERFLOW: events were dropped
                    written = written.map { _ in true }
                } else if let index = descriptors.firstIndex(of: descriptor) {
                    written[index] = true
                }
                offset += 16 + Int(nameLength)
            }
        }
        wake?(written)
    }
}
