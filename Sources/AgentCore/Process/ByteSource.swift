#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Where a job's output bytes come from. Today a pipe read by the event loop; a spool file
/// that outlives the server (so jobs survive a restart) can implement the same shape.
public protocol ByteSource: AnyObject {
    /// Starts delivering: `onBytes` for each chunk read, then `onEnd` once at end of stream or
    /// on a read error. Both run on the loop.
    func start(onBytes: @escaping (UnsafeRawBufferPointer) -> Void, onEnd: @escaping () -> Void) throws(SystemError)
    /// Stops delivering and releases the source; `onEnd` is not called after this.
    func close()
}

/// The read end of a non-blocking pipe, served by the event loop: "fd became readable →
/// feed bytes". Reads at most `maxReadsPerTurn` chunks per wake-up so one chatty job cannot
/// starve the loop's other fds.
public final class PipeByteSource: ByteSource {
    private let loop: EventLoop
    private var fd: Int32
    private var registration: EventLoop.Registration?
    private var onBytes: ((UnsafeRawBufferPointer) -> Void)?
    private var onEnd: (() -> Void)?
    private static let chunkSize = 64 * 1024
    private static let maxReadsPerTurn = 4

    /// Takes ownership of `fd`.
    public init(loop: EventLoop, fd: Int32) {
        self.loop = loop
        self.fd = fd
    }

    deinit { close() }

    public var isOpen: Bool { fd >= 0 }

    public func start(onBytes: @escaping (UnsafeRawBufferPointer) -> Void, onEnd: @escaping () -> Void) throws(SystemError) {
        self.onBytes = onBytes
        self.onEnd = onEnd
        registration = try loop.register(fd: fd, interest: .readable) { [weak self] _ in
            self?.readAvailable()
        }
    }

    private func readAvailable() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 1)
        defer { buffer.deallocate() }
        for _ in 0..<Self.maxReadsPerTurn {
            guard fd >= 0 else { return }
            switch FileDescriptor.read(fd, into: buffer) {
            case .bytes(let count):
                onBytes?(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                if count < Self.chunkSize { return }
            case .wouldBlock:
                return
            case .endOfFile, .failed:
                let end = onEnd
                close()
                end?()
                return
            }
        }
    }

    public func close() {
        if let registration { loop.deregister(registration) }
        registration = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        onBytes = nil
        onEnd = nil
    }
}
