#if canImport(Glibc)
import Glibc
#endif

/// Immutable bytes in one heap allocation, shared by reference: a frame encoded once can be
/// queued on thousands of connections without a copy, and `writev` can point at it directly.
public final class OutboundBuffer: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer

    public init(_ source: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: 1)
        source.withUnsafeBytes { storage.copyMemory(from: $0) }
        bytes = UnsafeRawBufferPointer(rebasing: storage[0..<source.count])
    }

    deinit {
        UnsafeMutableRawPointer(mutating: bytes.baseAddress)?.deallocate()
    }

    public var count: Int { bytes.count }

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
