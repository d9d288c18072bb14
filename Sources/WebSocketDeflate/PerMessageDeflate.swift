import CZlib
import WebSocketCore

/// Negotiated permessage-deflate parameters (RFC 7692 §7.1).
public struct DeflateParameters: Sendable, Equatable {
    public var serverNoContextTakeover = false
    public var clientNoContextTakeover = false
    /// LZ77 window of the server's compressor, 9…15 (8 is declined: zlib's raw deflate
    /// cannot honour it, see `PerMessageDeflateNegotiation`).
    public var serverMaxWindowBits = 15
    public var clientMaxWindowBits = 15

    public init() {}

    /// The `Sec-WebSocket-Extensions` response value.
    public var responseHeaderValue: String {
        var parts = ["permessage-deflate"]
        if serverNoContextTakeover { parts.append("server_no_context_takeover") }
        if clientNoContextTakeover { parts.append("client_no_context_takeover") }
        if serverMaxWindowBits != 15 { parts.append("server_max_window_bits=\(serverMaxWindowBits)") }
        if clientMaxWindowBits != 15 { parts.append("client_max_window_bits=\(clientMaxWindowBits)") }
        return parts.joined(separator: "; ")
    }
}

/// permessage-deflate over zlib raw DEFLATE for one connection: the server's compressor and
/// the client's decompressor (or the reverse for the client role).
///
/// Outgoing: deflate with Z_SYNC_FLUSH and strip the trailing 00 00 ff ff (RFC 7692 §7.2.1);
/// reset after each message when there is no context takeover — then every message is
/// compressed independently, and one compressed frame can be shared by every connection
/// that negotiated the same parameters.
/// Incoming: inflate fragment by fragment, append 00 00 ff ff at the end (§7.2.2), and stop
/// at the size limit so a small zip bomb cannot allocate gigabytes.
public final class PerMessageDeflate: MessageCompressor {
    private let deflateStream: UnsafeMutablePointer<z_stream>
    private let inflateStream: UnsafeMutablePointer<z_stream>
    private let resetDeflaterPerMessage: Bool
    private let resetInflaterPerMessage: Bool
    private var inflatedThisMessage = 0
    private var deflateReady = false
    private var inflateReady = false
    private var outputBuffer = [UInt8](repeating: 0, count: 64 * 1024)

    public enum Role: Sendable { case server, client }

    /// `level` defaults to zlib's fastest, 1: agent output is mostly small JSON lines, where
    /// level 6 shrinks them about 1% more (measured on the fixture transcripts), while on large
    /// messages it costs several times the CPU and the latency that goes with it.
    public init(parameters: DeflateParameters, role: Role, level: Int32 = 1) throws(CompressionFailure) {
        deflateStream = .allocate(capacity: 1)
        deflateStream.initialize(to: z_stream())
        inflateStream = .allocate(capacity: 1)
        inflateStream.initialize(to: z_stream())
        let ownBits = role == .server ? parameters.serverMaxWindowBits : parameters.clientMaxWindowBits
        resetDeflaterPerMessage = role == .server ? parameters.serverNoContextTakeover : parameters.clientNoContextTakeover
        resetInflaterPerMessage = role == .server ? parameters.clientNoContextTakeover : parameters.serverNoContextTakeover
        guard czlib_deflate_init2(deflateStream, level, Z_DEFLATED, -Int32(max(9, ownBits)), 8, Z_DEFAULT_STRATEGY) == Z_OK else {
            throw .internalError("deflateInit2 failed")
        }
        deflateReady = true
        // Our inflater always uses the largest window: it can read anything the peer's
        // smaller window produces.
        guard czlib_inflate_init2(inflateStream, -15) == Z_OK else { throw .internalError("inflateInit2 failed") }
        inflateReady = true
    }

    deinit {
        if deflateReady { deflateEnd(deflateStream) }
        if inflateReady { inflateEnd(inflateStream) }
        deflateStream.deallocate()
        inflateStream.deallocate()
    }

    public func compress(_ message: [UInt8]) throws(CompressionFailure) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(message.count / 2 + 16)
        var status: Int32 = Z_OK
        message.withUnsafeBufferPointer { input in
            deflateStream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            deflateStream.pointee.avail_in = UInt32(input.count)
            repeat {
                outputBuffer.withUnsafeMutableBufferPointer { out in
                    deflateStream.pointee.next_out = out.baseAddress
                    deflateStream.pointee.avail_out = UInt32(out.count)
                    status = deflate(deflateStream, Z_SYNC_FLUSH)
                    output.append(contentsOf: out[0..<(out.count - Int(deflateStream.pointee.avail_out))])
                }
            } while status == Z_OK && deflateStream.pointee.avail_out == 0
        }
        deflateStream.pointee.next_in = nil
        guard status == Z_OK || status == Z_BUF_ERROR else { throw .internalError("deflate failed (\(status))") }
        if output.count >= 4, output.suffix(4) == [0x00, 0x00, 0xFF, 0xFF] { output.removeLast(4) }
        if output.isEmpty { output = [0x00] }
        if resetDeflaterPerMessage { deflateReset(deflateStream) }
        return output
    }

    public func decompress(_ fragment: [UInt8], isFinal: Bool, limit: Int) throws(CompressionFailure) -> [UInt8] {
        var output: [UInt8] = []
        try inflate(fragment, into: &output, limit: limit)
        if isFinal {
            try inflate([0x00, 0x00, 0xFF, 0xFF], into: &output, limit: limit)
            inflatedThisMessage = 0
            if resetInflaterPerMessage { inflateReset(inflateStream) }
        }
        return output
    }

    private func inflate(_ input: [UInt8], into output: inout [UInt8], limit: Int) throws(CompressionFailure) {
        var failure: CompressionFailure?
        input.withUnsafeBufferPointer { inputBuffer in
            inflateStream.pointee.next_in = UnsafeMutablePointer(mutating: inputBuffer.baseAddress)
            inflateStream.pointee.avail_in = UInt32(inputBuffer.count)
            while failure == nil {
                var produced = 0
                var status: Int32 = Z_OK
                outputBuffer.withUnsafeMutableBufferPointer { out in
                    inflateStream.pointee.next_out = out.baseAddress
                    inflateStream.pointee.avail_out = UInt32(out.count)
                    status = CZlib.inflate(inflateStream, Z_SYNC_FLUSH)
                    produced = out.count - Int(inflateStream.pointee.avail_out)
                    if produced > 0 { output.append(contentsOf: out[0..<produced]) }
                }
                inflatedThisMessage += produced
                if inflatedThisMessage > limit {
                    failure = .tooBig
                    break
                }
                switch status {
                case Z_OK:
                    if inflateStream.pointee.avail_in == 0 && inflateStream.pointee.avail_out != 0 { return }
                case Z_BUF_ERROR:
                    return  // no progress possible: all input consumed
                case Z_STREAM_END:
                    // A final block (BFINAL) ends the stream; the next message starts a new one.
                    inflateReset(inflateStream)
                    if inflateStream.pointee.avail_in == 0 { return }
                default:
                    let message = inflateStream.pointee.msg.map { String(cString: $0) } ?? "error \(status)"
                    failure = .invalidData("invalid compressed data: \(message)")
                }
            }
        }
        inflateStream.pointee.next_in = nil
        if let failure {
            inflatedThisMessage = 0
            inflateReset(inflateStream)
            throw failure
        }
    }
}
