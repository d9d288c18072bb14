#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// One socket on the loop: reads go to `onRead`, writes are queued as shared buffers and
/// flushed with one `writev` of up to 1024 buffers per loop turn (a file range in the queue
/// goes out with `sendfile`).
///
/// ```
///  enqueue(buffer) ─▶ [buf][buf][buf]… (references, no copies) ─▶ end of turn: writev ─▶ socket
///                       ▲ headOffset: how much of the first buffer a partial write took
/// ```
///
/// The queue has a byte bound; when a write takes it past the bound, `onQueueOverBound`
/// fires once (the owner decides: pause and catch up later, or close), and `onDrained` fires
/// when the queue empties again. While over the bound the connection itself reads nothing,
/// whatever the owner does: a peer that sends requests (or pings) without reading the answers
/// waits in its own socket buffer instead of growing ours.
///
/// Small writes (pongs, short frames, HTTP answers) are gathered into one buffer until the
/// next shared buffer or flush, so a flood of tiny replies costs its bytes, not an allocation
/// each: the bound counts bytes.
public final class TCPConnection {
    public let loop: EventLoop
    public private(set) var fd: Int32
    public var onRead: ((UnsafeRawBufferPointer) -> Void)?
    /// The peer closed its side (EOF). Writing may still be possible (half-close).
    public var onPeerClosed: (() -> Void)?
    /// Called once when the connection is closed, for any reason. Belongs to whoever owns the
    /// connection now (an HTTP exchange, then a WebSocket session or a stream).
    public var onClose: (() -> Void)?
    /// Called once after `onClose`, whoever owns the connection by then: for bookkeeping
    /// that must outlive a hand-over (the server's connection counts), which a new owner's
    /// `onClose` would otherwise replace.
    public var onFinalClose: (() -> Void)?
    public var onQueueOverBound: (() -> Void)?
    public var onDrained: (() -> Void)?
    /// Everything queued has been written (after a write that emptied the queue).
    public var onFlushed: (() -> Void)?

    /// Bytes that may wait in the queue before `onQueueOverBound` fires, file ranges
    /// included: the bound says how far behind a peer may fall, not only what it costs.
    public var maxQueuedBytes: Int
    /// Everything waiting to be written, file ranges included.
    public private(set) var queuedBytes = 0
    /// What of it is held in memory (file ranges take none).
    public private(set) var queuedMemoryBytes = 0
    private var queue: [OutboundBuffer] = []
    private var queueHead = 0
    private var headOffset = 0
    private var registration: EventLoop.Registration?
    private var wantsWritable = false
    private var flushScheduled = false
    private var closeWhenFlushed = false
    private var lingerWhenFlushed = false
    private var lingerTimer: EventLoop.TimerID?
    private var overBound = false
    private var readingPaused = false
    /// Small writes not yet in `queue` (see `enqueue(_: [UInt8])`).
    private var tail: [UInt8] = []
    private static let maxIOVecs = 1024
    /// Writes up to this size are gathered into `tail`, up to `maxTailBytes` at a time.
    private static let maxGatheredWrite = 2048
    private static let maxTailBytes = 64 * 1024

    /// Takes ownership of a connected, non-blocking fd.
    public init(loop: EventLoop, fd: Int32, maxQueuedBytes: Int = 4 << 20) {
        self.loop = loop
        self.fd = fd
        self.maxQueuedBytes = maxQueuedBytes
        ag_set_nodelay(fd)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    public var isOpen: Bool { fd >= 0 }

    /// More than `maxQueuedBytes` wait to be written; reading is paused until they are.
    public var isOverBound: Bool { overBound }

    public func start() throws(SystemError) {
        registration = try loop.register(fd: fd, interest: .readable) { [unowned self] readiness in
            self.handle(readiness)
        }
    }

    private func handle(_ readiness: EventLoop.Readiness) {
        if readiness.isWritable { flushNow() }
        guard fd >= 0 else { return }
        if readiness.isReadable || readiness.isHangup || readiness.isError {
            if (readingPaused || overBound) && !readiness.isError {
                return
            }
            // An error is read even while paused: the read reports it and the socket closes.
            readAvailable(once: readingPaused || overBound)
        }
    }

    /// Bytes one connection reads per loop turn. The loop is level-triggered, so what is left
    /// is read next turn, after every other ready connection had its turn: a client that
    /// floods (10,000 pings fit in 64 KiB) cannot hold the loop while others wait.
    static let maxReadsPerTurn = 1
    static let maxReadBytes = 64 * 1024

    private func readAvailable(once: Bool = false) {
        let buffer = UnsafeMutableRawBufferPointer(rebasing: loop.readBuffer[0..<min(loop.readBuffer.count, Self.maxReadBytes)])
        var reads = 0
        // The owner may pause in `onRead`, or its answers may take the queue over its bound.
        while fd >= 0 && (reads == 0 || (!once && !readingPaused && !overBound && reads < Self.maxReadsPerTurn)) {
            reads += 1
            let result = FileDescriptor.read(fd, into: buffer)
            switch result {
            case .bytes(let count):
                onRead?(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                if count < buffer.count { return }
            case .wouldBlock:
                return
            case .endOfFile:
                peerClosed()
                return
            case .failed:
                close()  // ECONNRESET and friends
                return
            }
        }
    }

    private func peerClosed() {
        readingPaused = true
        updateInterest()
        if let onPeerClosed {
            onPeerClosed()
        } else {
            closeAfterFlush()
        }
    }

    /// Stops reading until `resumeReading()` (back-pressure on a fast sender).
    public func pauseReading() {
        guard !readingPaused else { return }
        readingPaused = true
        updateInterest()
    }

    public func resumeReading() {
        guard readingPaused else { return }
        readingPaused = false
        updateInterest()
    }

    // MARK: writing

    /// Queues shared bytes; written at the end of this loop turn.
    public func enqueue(_ buffer: OutboundBuffer) {
        guard fd >= 0, !closeWhenFlushed, buffer.count > 0 else { return }
        sealTail()
        queue.append(buffer)
        queued(buffer.count, inMemory: buffer.file == nil)
    }

    public func enqueue(_ bytes: [UInt8]) {
        guard fd >= 0, !closeWhenFlushed, !bytes.isEmpty else { return }
        guard bytes.count <= Self.maxGatheredWrite else { return enqueue(OutboundBuffer(bytes)) }
        if tail.count + bytes.count > Self.maxTailBytes { sealTail() }
        tail += bytes
        queued(bytes.count, inMemory: true)
    }

    private func queued(_ count: Int, inMemory: Bool) {
        queuedBytes += count
        if inMemory { queuedMemoryBytes += count }
        if !overBound, queuedBytes > maxQueuedBytes {
            overBound = true
            updateInterest()
            onQueueOverBound?()
        }
        scheduleFlush()
    }

    /// Moves the gathered small writes into the queue, behind everything before them.
    private func sealTail() {
        guard !tail.isEmpty else { return }
        queue.append(OutboundBuffer(tail))
        tail = []
    }

    private func scheduleFlush() {
        guard !flushScheduled, !wantsWritable else { return }
        flushScheduled = true
        loop.atEndOfTurn { [weak self] in
            guard let self else { return }
            self.flushScheduled = false
            self.flushNow()
        }
    }

    /// Writes as much of the queue as the socket takes: one writev per 1024 buffers in memory,
    /// one sendfile per file range.
    public func flushNow() {
        sealTail()
        let wroteSomething = queueHead < queue.count
        while fd >= 0 && queueHead < queue.count {
            let written: Int
            if let file = queue[queueHead].file {
                let head = queue[queueHead]
                var offset = Int64(head.fileOffset + headOffset)
                written = ag_sendfile(fd, file.fd, &offset, UInt(head.count - headOffset))
                if written == 0 {
                    // The file is shorter than its range said: what the peer was promised
                    // cannot be sent, so it must not be left waiting for it.
                    close()
                    return
                }
            } else {
                var count = 0
                while count < Self.maxIOVecs, queueHead + count < queue.count, queue[queueHead + count].file == nil { count += 1 }
                var vectors = [iovec](repeating: iovec(), count: count)
                for index in 0..<count {
                    let buffer = queue[queueHead + index].bytes
                    let skip = index == 0 ? headOffset : 0
                    vectors[index] = iovec(
                        iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress! + skip), iov_len: buffer.count - skip)
                }
                written = vectors.withUnsafeBufferPointer { writev(fd, $0.baseAddress, Int32(count)) }
            }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    setWantsWritable(true)
                    return
                }
                close()  // EPIPE, ECONNRESET (SIGPIPE is ignored), or the file could not be read
                return
            }
            consume(written)
        }
        // Everything is written.
        queue.removeAll(keepingCapacity: true)
        queueHead = 0
        headOffset = 0
        setWantsWritable(false)
        if overBound {
            overBound = false
            updateInterest()
            onDrained?()
        }
        if !flushWaiters.isEmpty {
            let waiters = flushWaiters
            flushWaiters = []
            for waiter in waiters { waiter() }
        }
        if closeWhenFlushed {
            lingerWhenFlushed ? linger() : close()
        } else if wroteSomething, fd >= 0, queueHead >= queue.count, tail.isEmpty {
            onFlushed?()
        }
    }

    private func consume(_ written: Int) {
        var remaining = written
        queuedBytes -= written
        while remaining > 0 {
            let available = queue[queueHead].count - headOffset
            if queue[queueHead].file == nil { queuedMemoryBytes -= min(remaining, available) }
            if remaining >= available {
                remaining -= available
                queueHead += 1
                headOffset = 0
            } else {
                headOffset += remaining
                remaining = 0
            }
        }
        if queueHead > 256 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }

    private func setWantsWritable(_ value: Bool) {
        guard wantsWritable != value else { return }
        wantsWritable = value
        updateInterest()
    }

    private func updateInterest() {
        guard let registration else { return }
        var interest: EventLoop.Interest = []
        if !readingPaused && !overBound { interest.insert(.readable) }
        if wantsWritable { interest.insert(.writable) }
        try? loop.modify(registration, interest: interest)
    }

    /// Drops what is queued and not yet being written: every buffer behind the one a partial
    /// write has started (that one is finished, so the peer never sees half a message).
    /// For a viewer that fell too far behind: what it is told next goes out right after the
    /// bytes already on their way. Returns the buffers dropped (small writes gathered into
    /// one are not among them: they carry no label).
    @discardableResult
    public func dropUnsent() -> [OutboundBuffer] {
        guard fd >= 0 else { return [] }
        var droppedBytes = tail.count
        var droppedMemoryBytes = tail.count
        tail = []
        let keep = headOffset > 0 ? queueHead + 1 : queueHead
        var dropped: [OutboundBuffer] = []
        if keep < queue.count {
            dropped = Array(queue[keep...])
            for buffer in dropped {
                droppedBytes += buffer.count
                if buffer.file == nil { droppedMemoryBytes += buffer.count }
            }
            queue.removeSubrange(keep...)
        }
        queuedBytes -= droppedBytes
        queuedMemoryBytes -= droppedMemoryBytes
        return dropped
    }

    /// Runs `body` once everything queued now has been written (at once when nothing is
    /// queued); dropped if the connection closes first.
    public func whenFlushed(_ body: @escaping () -> Void) {
        if queueHead >= queue.count && tail.isEmpty {
            body()
        } else {
            flushWaiters.append(body)
        }
    }

    private var flushWaiters: [() -> Void] = []

    // MARK: closing

    /// Closes once everything queued is written (or the write fails).
    ///
    /// - Parameter linger: for a connection whose peer may still be sending (a refused or
    ///   failed request): after the last byte, send FIN and read and drop the peer's bytes
    ///   until it closes or `lingerMilliseconds` pass. Closing with unread input would send
    ///   RST, and the peer's kernel could discard our answer before the peer reads it.
    public func closeAfterFlush(linger: Bool = false, lingerMilliseconds: Int = 2_000) {
        guard fd >= 0 else { return }
        closeWhenFlushed = true
        lingerWhenFlushed = linger
        self.lingerMilliseconds = lingerMilliseconds
        if queueHead >= queue.count && tail.isEmpty {
            linger ? self.linger() : close()
        } else {
            scheduleFlush()
        }
    }

    private var lingerMilliseconds = 2_000

    private func linger() {
        guard fd >= 0, lingerTimer == nil else { return }
        shutdown(fd, Int32(SHUT_WR))
        onRead = { _ in }
        onPeerClosed = { [unowned self] in self.close() }
        readingPaused = false
        updateInterest()
        lingerTimer = loop.schedule(afterMilliseconds: lingerMilliseconds) { [weak self] in
            self?.lingerTimer = nil
            self?.close()
        }
    }

    /// Closes now; queued bytes are dropped. Calls `onClose` once.
    public func close() {
        guard fd >= 0 else { return }
        if let registration { loop.deregister(registration) }
        registration = nil
        if let lingerTimer { loop.cancel(lingerTimer) }
        lingerTimer = nil
        Glibc.close(fd)
        fd = -1
        queue.removeAll()
        tail = []
        queueHead = 0
        queuedBytes = 0
        queuedMemoryBytes = 0
        flushWaiters = []
        let callback = onClose
        let finalCallback = onFinalClose
        onClose = nil
        onFinalClose = nil
        onRead = nil
        onPeerClosed = nil
        onQueueOverBound = nil
        onDrained = nil
        onFlushed = nil
        callback?()
        finalCallback?()
    }
}
