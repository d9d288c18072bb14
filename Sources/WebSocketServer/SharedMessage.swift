import EventLoop
import WebSocketCore
import WebSocketDeflate

/// One message framed once for many connections (the fan-out path):
///
/// ```
///  payload ─▶ plain frame ──────────────────────────▶ every session without compression
///          └▶ deflate once (no context takeover) ─▶ frame ─▶ every session that negotiated
///                                                   server_no_context_takeover, 15-bit window
/// ```
///
/// Sessions that negotiated deflate with context takeover (or a smaller window) need their
/// own compressor state, so they get a per-connection encoding instead.
///
/// Both forms are made on first use, so an event nobody reads compressed is never deflated
/// (zlib costs more than everything else on the path), and one every viewer reads
/// compressed is never framed plain. Loop-confined, like the sessions it is queued on.
public final class SharedMessage {
    public let payload: [UInt8]
    public let isText: Bool
    private let compressor: PerMessageDeflate?
    private var plain: OutboundBuffer?
    /// nil: not tried yet; .some(nil): compression failed or is not offered.
    private var compressed: OutboundBuffer??

    /// - Parameter compressor: a server-role compressor with no context takeover, shared by
    ///   the caller across messages; nil to skip the compressed form.
    /// Which events the message holds, given to every buffer made of it.
    public let label: OutboundBuffer.Label?

    public init(payload: [UInt8], isText: Bool, compressor: PerMessageDeflate?, label: OutboundBuffer.Label? = nil) {
        self.payload = payload
        self.isText = isText
        self.compressor = compressor
        self.label = label
    }

    private var opcode: Opcode { isText ? .text : .binary }

    /// The message as one unmasked frame.
    public var plainFrame: OutboundBuffer {
        if let plain { return plain }
        let frame = OutboundBuffer(FrameEncoder.encode(opcode: opcode, payload: payload), label: label)
        plain = frame
        return frame
    }

    /// The message deflated once and framed with RSV1 (nil without a compressor).
    public var compressedFrame: OutboundBuffer? {
        if let compressed { return compressed }
        var frame: OutboundBuffer?
        if let compressor, let bytes = try? compressor.compress(payload) {
            frame = OutboundBuffer(FrameEncoder.encode(rsv1: true, opcode: opcode, payload: bytes), label: label)
        }
        compressed = .some(frame)
        return frame
    }

    /// A compressor whose output any client that negotiated server_no_context_takeover can
    /// read.
    public static func makeSharedCompressor() -> PerMessageDeflate? {
        var parameters = DeflateParameters()
        parameters.serverNoContextTakeover = true
        return try? PerMessageDeflate(parameters: parameters, role: .server)
    }
}

extension WebSocketSession {
    /// Queues a shared message: the same bytes as every other session of its kind. Returns
    /// the bytes queued (about the payload's for a per-connection encoding).
    @discardableResult
    public func send(_ message: SharedMessage) -> Int {
        guard let parameters = deflateParameters else {
            let frame = message.plainFrame
            send(sharedFrame: frame)
            return frame.count
        }
        if parameters.serverNoContextTakeover, parameters.serverMaxWindowBits == 15, let compressed = message.compressedFrame {
            send(sharedFrame: compressed)
            return compressed.count
        }
        send(message.payload, isText: message.isText, label: message.label)
        return message.payload.count
    }
}
