#if canImport(Glibc)
import Glibc
#endif

/// Immutable bytes in one heap allocation, shared by reference: a frame encoded once can be
/// queued on thousands of connections without a copy, and `writev` can point at it directly.
/// Or a range of a file that holds ready bytes (a finished job's frames): sent with
/// `sendfile`, never read into memory.
public final class OutboundBuffer: @unchecked Sendable {
    /// The bytes; empty for a file range.
    public let bytes: UnsafeRawBufferPointer
    /// The file a file range is in, and where.
    public let file: SharedFile?
    public let fileOffset: Int
    public let count: Int

    public init(_ source: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: 1)
        source.withUnsafeBytes { storage.copyMemory(from: $0) }
        bytes = UnsafeRawBufferPointer(rebasing: storage[0..<source.count])
        file = nil
        fileOffset = 0
        count = source.count
    }

    /// `count` bytes of `file` from `offset`. The file must not shrink while queued: a
    /// connection whose file range comes up short is closed.
    public init(file: SharedFile, offset: Int, count: Int, label: Label? = nil) {
        bytes = UnsafeRawBufferPointer(start: nil, count: 0)
        self.file = file
        fileOffset = offset
        self.count = count
        self.label = label
    }

    deinit {
        UnsafeMutableRawPointer(mutating: bytes.baseAddress)?.deallocate()
    }

    /// Which events of which stream a buffer holds, so a connection that drops unsent
    /// buffers can say exactly which events it did not deliver. Set before the buffer is
    /// shared.
    public struct Label: Sendable, Equatable {
        public var stream: String
        public var events: ClosedRange<Int>

        public init(stream: String, events: ClosedRange<Int>) {
            self.stream = stream
            self.events = events
        }
    }

    public var label: Label?

    public convenience init(_ source: [UInt8], label: Label?) {
        self.init(source)
        self.label = label
    }
}

/// An open, read-only file descriptor shared by everything that points into the file (the
/// buffers queued on many connections); closed when the last of them lets go.
public final class SharedFile: Sendable {
    public let fd: Int32

    /// Takes ownership of `fd`.
    public init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        Glibc.close(fd)
    }
}
