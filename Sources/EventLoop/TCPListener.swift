#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// A listening socket served by the loop. Accepts until EAGAIN (at most `acceptBatch` per
/// turn, so an accept storm cannot starve established connections). When the process runs
/// out of fds (EMFILE/ENFILE) it stops accepting for `backoffMilliseconds`, keeps serving
/// existing connections, and reports that at most once a minute (a storm against the limit
/// ends and starts an episode with every accept that succeeds in between).
public final class TCPListener {
    public let loop: EventLoop
    public private(set) var fd: Int32
    public let port: Int
    /// Called with each accepted, non-blocking, close-on-exec fd. The callee owns it.
    public var onAccept: ((Int32) -> Void)?
    /// Called with the error when accepting pauses for lack of fds; at most once per
    /// `reportIntervalNanoseconds`, however often it pauses in between.
    public var onAcceptError: ((SystemError) -> Void)?
    public var reportIntervalNanoseconds: UInt64 = 60_000_000_000
    /// Times accepting paused for lack of fds (every one, unlike the reports).
    public private(set) var pauses = 0

    /// 8: a burst of connections is taken over several short turns, each a few ms at most
    /// even when the CPU is contended.
    public var acceptBatch = 8
    public var backoffMilliseconds = 100
    private var registration: EventLoop.Registration?
    private var backingOff = false
    private var lastReport: UInt64?

    public init(loop: EventLoop, host: String, port: Int, backlog: Int32 = 1024) throws(SystemError) {
        self.loop = loop
        var bound: Int32 = 0
        let result = ag_listen_tcp(host, Int32(port), backlog, &bound)
        guard result >= 0 else { throw SystemError("listen \(host):\(port)", errno: -result) }
        fd = result
        self.port = Int(bound)
    }

    deinit { close() }

    /// Registers for readability only: a listener registered for writability would wake the
    /// loop forever (FlyingFox issue #186).
    public func start() throws(SystemError) {
        registration = try loop.register(fd: fd, interest: .readable) { [unowned self] _ in self.acceptReady() }
    }

    private func acceptReady() {
        for _ in 0..<acceptBatch {
            let client = ag_accept(fd)
            if client >= 0 {
                onAccept?(client)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK: return
            case EINTR, ECONNABORTED, EPROTO: continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                let error = SystemError.last("accept")
                pause()
                let now = MonotonicClock.nanoseconds()
                if lastReport.map({ now - $0 >= reportIntervalNanoseconds }) ?? true {
                    lastReport = now
                    onAcceptError?(error)
                }
                return
            default:
                return
            }
        }
    }

    /// Level-triggered epoll would report the pending connection again at once: stop
    /// listening for a while instead of spinning.
    private func pause() {
        guard !backingOff, let registration else { return }
        backingOff = true
        pauses += 1
        loop.deregister(registration)
        self.registration = nil
        loop.schedule(afterMilliseconds: backoffMilliseconds) { [weak self] in
            guard let self, self.fd >= 0 else { return }
            self.backingOff = false
            try? self.start()
        }
    }

    /// Closes the socket once; later calls do nothing (a second close could hit an fd
    /// number another thread has been given since).
    public func close() {
        if let registration { loop.deregister(registration) }
        registration = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
