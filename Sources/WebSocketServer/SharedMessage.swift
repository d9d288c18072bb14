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
public struct SharedMessage {
    public let payload: [UInt8]
    public let isText: Bool
    public let plainFrame: OutboundBuffer
    public let compressedFrame: OutboundBuffer?

    /// - Parameter compressor: a server-role compressor with no context takeover, shared by
    ///   the caller across messages; nil to skip the compressed form.
    public init(payload: [UInt8], isText: Bool, compressor: PerMessageDeflate?) {
        self.payload = payload
        self.isText = isText
        let opcode: Opcode = isText ? .text : .binary
        plainFrame = OutboundBuffer(FrameEncoder.encode(opcode: opcode, payload: payload))
        if let compressor, let compressed = try? compressor.compress(payload) {
            compressedFrame = OutboundBuffer(FrameEncoder.encode(rsv1: true, opcode: opcode, payload: compressed))
        } else {
            compressedFrame = nil
        }
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
    /// Queues a shared message: the same bytes as every other session of its kind.
    public func send(_ message: SharedMessage) {
        guard let parameters = deflateParameters else {
            send(sharedFrame: message.plainFrame)
            return
        }
        if parameters.serverNoContextTakeover, parameters.serverMaxWindowBits == 15, let compressed = message.compressedFrame {
            send(sharedFrame: compressed)
        } else {
            send(message.payload, isText: message.isText)
        }
    }
}
