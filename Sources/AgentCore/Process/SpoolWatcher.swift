#if canImport(Glibc)
import Glibc
#endif
import CSystemShims
import EventLoop

/// One inotify instance for every supervised job's spools, shared by the runner. An instance
/// per job cost a kernel grace period each time one was closed (about 10 ms: a job's end
/// stalled the loop that long, and a server with 100 jobs took a second to exit).
final class SpoolWatcher {
    private let loop: EventLoop
    private var fd: Int32 = -1
    private var registration: EventLoop.Registration?
    /// What each watch descriptor wakes.
    private var wakers: [Int32: () -> Void] = [:]

    init(loop: EventLoop) {
        self.loop = loop
    }

    /// Calls `wake` (on the loop) whenever `path` is written to; nil where inotify is not
    /// available (the caller's poll still reads the file).
    func watch(_ path: String, wake: @escaping () -> Void) -> Int32? {
        if fd < 0 {
            fd = ag_inotify_init()
            guard fd >= 0 else { return nil }
            registration = try? loop.register(fd: fd, interest: .readable) { [unowned self] _ in self.dispatch() }
        }
        let descriptor = ag_inotify_watch_writes(fd, path)
        guard descriptor >= 0 else { return nil }
        wakers[descriptor] = wake
        return descriptor
    }

    func unwatch(_ descriptor: Int32) {
        guard wakers.removeValue(forKey: descriptor) != nil, fd >= 0 else { return }
        _ = inotify_rm_watch(fd, descriptor)
    }

    /// Reads every pending event and wakes each watched file's owner once.
    private func dispatch() {
        var woken = Set<Int32>()
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            var offset = 0
            // struct inotify_event: wd, mask, cookie, len, then `len` bytes of name.
            while offset + 16 <= count {
                let descriptor = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Int32.self) }
                let nameLength = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) }
                woken.insert(descriptor)
                offset += 16 + Int(nameLength)
            }
        }
        for descriptor in woken { wakers[descriptor]?() }
    }
}

