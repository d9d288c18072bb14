/// Incremental frame parser (RFC 6455 §5.2): bytes in any split, frames out. It checks what
/// one frame's header can tell — masking, reserved opcodes, control-frame rules, lengths —
/// as soon as the header arrives, before buffering any payload, so an oversized frame costs
/// nothing. Message-level rules (fragmentation, RSV bits, UTF-8) are `WebSocketConnection`'s.
public struct FrameParser: Sendable {
    public enum Role: Sendable {
        /// Parses frames a client sent: they must be masked (RFC 6455 §5.1).
        case server
        /// Parses frames a server sent: they must not be masked.
        case client
    }

    public enum Failure: Error, Equatable, Sendable {
        case protocolError(String)
        case tooBig(String)

        public var closeCode: CloseCode {
            switch self {
            case .protocolError: .protocolError
            case .tooBig: .messageTooBig
            }
        }

        public var reason: String {
            switch self {
            case .protocolError(let reason), .tooBig(let reason): reason
            }
        }
    }

    private enum State {
        case header
        case payload
    }

    public let role: Role
    public let maxFramePayload: Int
    private var state = State.header
    private var header: [UInt8] = []
    private var needed = 2
    private var first: UInt8 = 0
    private var payloadLength = 0
    private var mask: [UInt8] = []
    private var payload: [UInt8] = []
    private var failed: Failure?

    public init(role: Role, maxFramePayload: Int) {
        self.role = role
        self.maxFramePayload = maxFramePayload
    }

    /// The frames `bytes` completes, and the failure that stopped parsing, if any. Frames
    /// before a bad one are still returned: they arrived intact and must be acted on
    /// (RFC 6455 processes frames in order). A failure ends parsing for good.
    public mutating func parseFrames(_ bytes: UnsafeRawBufferPointer) -> (frames: [Frame], failure: Failure?) {
        if let failed { return ([], failed) }
        var frames: [Frame] = []
        var index = 0
        while index < bytes.count {
            switch state {
            case .header:
                let take = min(needed - header.count, bytes.count - index)
                header.append(contentsOf: bytes[index..<(index + take)])
                index += take
                if header.count < needed { continue }
                switch headerComplete() {
                case .failure(let failure):
                    failed = failure
                    return (frames, failure)
                case .success(let done):
                    if done {
                        state = .payload
                        payload.removeAll(keepingCapacity: true)
                        payload.reserveCapacity(payloadLength)
                        if payloadLength == 0 { frames.append(finishFrame()) }
                    }
                }
            case .payload:
                let take = min(payloadLength - payload.count, bytes.count - index)
                payload.append(contentsOf: bytes[index..<(index + take)])
                index += take
                if payload.count == payloadLength { frames.append(finishFrame()) }
            }
        }
        return (frames, nil)
    }

    /// All or nothing: the frames, or the failure (frames before it are dropped).
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Result<[Frame], Failure> {
        let (frames, failure) = parseFrames(bytes)
        if let failure { return .failure(failure) }
        return .success(frames)
    }

    public mutating func parse(_ bytes: [UInt8]) -> Result<[Frame], Failure> {
        bytes.withUnsafeBytes { parse($0) }
    }

    /// Returns true when the header is complete, false when more header bytes are needed.
    private mutating func headerComplete() -> Result<Bool, Failure> {
        if header.count == 2 {
            first = header[0]
            let second = header[1]
            guard let opcode = Opcode(rawValue: first & 0x0F) else {
                return .failure(.protocolError("reserved opcode \(first & 0x0F)"))
            }
            let fin = first & 0x80 != 0
            let masked = second & 0x80 != 0
            switch role {
            case .server where !masked: return .failure(.protocolError("client frames must be masked"))
            case .client where masked: return .failure(.protocolError("server frames must not be masked"))
            default: break
            }
            let length7 = Int(second & 0x7F)
            if opcode.isControl {
                // RFC 6455 §5.5: control frames have ≤ 125 bytes and are never fragmented.
                if !fin { return .failure(.protocolError("fragmented control frame")) }
                if length7 > 125 { return .failure(.protocolError("control frame longer than 125 bytes")) }
            }
            let extra = (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + (masked ? 4 : 0)
            if extra > 0 {
                needed = 2 + extra
                return .success(false)
            }
            payloadLength = length7
        }
        // The full header is here.
        let second = header[1]
        let masked = second & 0x80 != 0
        let length7 = Int(second & 0x7F)
        var offset = 2
        if length7 == 126 {
            payloadLength = Int(header[2]) << 8 | Int(header[3])
            offset = 4
        } else if length7 == 127 {
            var length: UInt64 = 0
            for i in 2..<10 { length = length << 8 | UInt64(header[i]) }
            // RFC 6455 §5.2: the most significant bit must be 0.
            if length >> 63 != 0 { return .failure(.protocolError("64-bit length with the high bit set")) }
            guard length <= UInt64(maxFramePayload) else { return .failure(.tooBig("frame of \(length) bytes")) }
            payloadLength = Int(length)
            offset = 10
        } else {
            payloadLength = length7
        }
        if payloadLength > maxFramePayload { return .failure(.tooBig("frame of \(payloadLength) bytes")) }
        mask = masked ? Array(header[offset..<(offset + 4)]) : []
        return .success(true)
    }

    /// While a frame's payload is still arriving: its first header byte (FIN, RSV, opcode)
    /// and how many payload bytes are here. Lets the connection validate a text frame's
    /// UTF-8 before the frame is complete (fail fast, RFC 6455 §8.1).
    public var partialFrame: (firstByte: UInt8, receivedCount: Int)? {
        guard state == .payload, payload.count < payloadLength else { return nil }
        return (first, payload.count)
    }

    /// Unmasked payload bytes `range` of the frame still arriving.
    public func partialPayload(_ range: Range<Int>) -> [UInt8] {
        var bytes = Array(payload[range])
        if !mask.isEmpty { Masking.apply(key: mask, to: &bytes, from: 0, keyOffset: range.lowerBound) }
        return bytes
    }

    private mutating func finishFrame() -> Frame {
        if !mask.isEmpty { Masking.apply(key: mask, to: &payload, from: 0, keyOffset: 0) }
        let frame = Frame(
            fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0,
            opcode: Opcode(rawValue: first & 0x0F)!, payload: payload)
        state = .header
        header.removeAll(keepingCapacity: true)
        needed = 2
        payload = []
        return frame
    }
}
