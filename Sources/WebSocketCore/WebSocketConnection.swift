/// The RFC 6455 protocol for one connection, with no I/O: bytes in, actions out. The same
/// core serves the server role (the gateway) and the client role (the CLI).
///
/// ```
///  receive(bytes) ─▶ FrameParser ─▶ frames ─▶ message assembly (fragments, RSV, inflate,
///                                             UTF-8, size) ─▶ [.deliver, .send(pong/close), .closeTransport …]
///  send(message)  ─▶ (deflate) ─▶ FrameEncoder ─▶ bytes
/// ```
public struct WebSocketConnection {
    public struct Configuration: Sendable {
        /// 16 MiB: a whole agent transcript line fits many times over; a peer cannot make
        /// us buffer more than this for one message (RFC 6455 §10.4).
        public var maxMessageSize = 16 << 20

        public init(maxMessageSize: Int = 16 << 20) {
            self.maxMessageSize = maxMessageSize
        }
    }

    public enum Role: Sendable { case server, client }

    /// A complete message.
    public struct Message: Equatable, Sendable {
        public var isText: Bool
        public var payload: [UInt8]

        public init(isText: Bool, payload: [UInt8]) {
            self.isText = isText
            self.payload = payload
        }

        public var text: String? { isText ? String(decoding: payload, as: UTF8.self) : nil }
    }

    public enum Action: Equatable, Sendable {
        case deliver(Message)
        /// Bytes to write, in order.
        case send([UInt8])
        /// A pong arrived (the heartbeat's proof of life).
        case pongReceived([UInt8])
        /// The peer's close arrived (code nil when it carried none).
        case peerClosed(CloseCode?, String)
        /// We sent a close and wait for the peer's: close the transport if none comes in time.
        case startCloseTimer
        /// Close the TCP connection once queued bytes are written.
        case closeTransport
    }

    public enum State: Sendable, Equatable {
        case open
        /// We sent a close frame and wait for the peer's.
        case closeSent
        case closed
    }

    public let role: Role
    public let configuration: Configuration
    public private(set) var state = State.open
    private var parser: FrameParser
    private let compressor: MessageCompressor?
    private var messageOpcode: Opcode?
    private var messageCompressed = false
    private var messageBuffer: [UInt8] = []
    private var validator = UTF8Validator()
    /// Validation of a text frame still arriving: (validator state, bytes checked).
    private var partialValidation: (validator: UTF8Validator, checked: Int)?
    private var randomness = SystemRandomNumberGenerator()

    public init(role: Role, configuration: Configuration = Configuration(), compressor: MessageCompressor? = nil) {
        self.role = role
        self.configuration = configuration
        self.compressor = compressor
        parser = FrameParser(role: role == .server ? .server : .client, maxFramePayload: configuration.maxMessageSize)
    }

    public var isCompressionEnabled: Bool { compressor != nil }

    // MARK: receiving

    public mutating func receive(_ bytes: UnsafeRawBufferPointer) -> [Action] {
        guard state != .closed else { return [] }
        let (frames, failure) = parser.parseFrames(bytes)
        var actions: [Action] = []
        for frame in frames {
            partialValidation = nil
            actions += handle(frame)
            if state == .closed { return actions }
        }
        if let failure {
            // The byte stream is out of step now: send our close and hang up.
            actions += failConnection(failure.closeCode, failure.reason)
            if !actions.contains(.closeTransport) { actions.append(.closeTransport) }
        } else if state == .open, !validatePartialTextFrame() {
            actions += failConnection(.invalidFramePayloadData, "invalid UTF-8 in a text message")
        }
        return actions
    }

    /// Checks the UTF-8 of an uncompressed text frame whose payload is still arriving, so a
    /// bad byte fails the connection at once rather than after the whole frame.
    private mutating func validatePartialTextFrame() -> Bool {
        guard let (firstByte, received) = parser.partialFrame else { return true }
        let opcode = Opcode(rawValue: firstByte & 0x0F)
        let rsv1 = firstByte & 0x40 != 0
        let isText: Bool
        switch opcode {
        case .text?: isText = messageOpcode == nil && !rsv1
        case .continuation?: isText = messageOpcode == .text && !messageCompressed
        default: isText = false
        }
        guard isText else { return true }
        var (partial, checked) = partialValidation ?? (opcode == .text ? UTF8Validator() : validator, 0)
        guard received > checked else { return true }
        let ok = partial.feed(parser.partialPayload(checked..<received))
        partialValidation = (partial, received)
        return ok
    }

    public mutating func receive(_ bytes: [UInt8]) -> [Action] {
        bytes.withUnsafeBytes { receive($0) }
    }

    private mutating func handle(_ frame: Frame) -> [Action] {
        if frame.rsv2 || frame.rsv3 { return failConnection(.protocolError, "RSV2/RSV3 set without an extension") }
        switch frame.opcode {
        case .close:
            if frame.rsv1 { return failConnection(.protocolError, "RSV1 on a control frame") }
            return handleClose(frame.payload)
        case .ping:
            if frame.rsv1 { return failConnection(.protocolError, "RSV1 on a control frame") }
            // RFC 6455 §5.5.3: a pong carries the ping's payload.
            return state == .open ? [.send(encode(.pong, frame.payload))] : []
        case .pong:
            if frame.rsv1 { return failConnection(.protocolError, "RSV1 on a control frame") }
            return [.pongReceived(frame.payload)]
        case .text, .binary:
            if messageOpcode != nil { return failConnection(.protocolError, "a new message started inside a fragmented one") }
            if frame.rsv1 && compressor == nil { return failConnection(.protocolError, "RSV1 set without permessage-deflate") }
            messageOpcode = frame.opcode
            messageCompressed = frame.rsv1
            messageBuffer.removeAll(keepingCapacity: true)
            validator = UTF8Validator()
            return appendFragment(frame)
        case .continuation:
            if messageOpcode == nil { return failConnection(.protocolError, "continuation frame without a message") }
            // RFC 7692 §6.1: RSV1 only on the first frame of a message.
            if frame.rsv1 { return failConnection(.protocolError, "RSV1 on a continuation frame") }
            return appendFragment(frame)
        }
    }

    private mutating func appendFragment(_ frame: Frame) -> [Action] {
        var data = frame.payload
        if messageCompressed, let compressor {
            do {
                data = try compressor.decompress(frame.payload, isFinal: frame.fin, limit: configuration.maxMessageSize)
            } catch .tooBig {
                return failConnection(.messageTooBig, "message larger than \(configuration.maxMessageSize) bytes")
            } catch .invalidData(let reason) {
                return failConnection(.invalidFramePayloadData, reason)
            } catch {
                return failConnection(.internalError, "decompression failed")
            }
        }
        if messageBuffer.count + data.count > configuration.maxMessageSize {
            return failConnection(.messageTooBig, "message larger than \(configuration.maxMessageSize) bytes")
        }
        if messageOpcode == .text, !validator.feed(data) {
            return failConnection(.invalidFramePayloadData, "invalid UTF-8 in a text message")
        }
        guard state == .open else {
            // Closing: keep the frame stream in step, but deliver nothing more.
            if frame.fin { messageOpcode = nil }
            return []
        }
        messageBuffer += data
        guard frame.fin else { return [] }
        if messageOpcode == .text, !validator.isComplete {
            return failConnection(.invalidFramePayloadData, "text message ends inside a UTF-8 sequence")
        }
        let message = Message(isText: messageOpcode == .text, payload: messageBuffer)
        messageOpcode = nil
        messageBuffer = []
        return [.deliver(message)]
    }

    /// RFC 6455 §5.5.1, §7.4: validate the peer's close, answer it, end the connection.
    private mutating func handleClose(_ payload: [UInt8]) -> [Action] {
        var code: CloseCode?
        var reason = ""
        // The peer is closing anyway: answer a malformed close with ours and hang up.
        func reject(_ code: CloseCode, _ reason: String) -> [Action] {
            var actions = failConnection(code, reason)
            actions.removeAll { $0 == .startCloseTimer }
            state = .closed
            return actions + [.closeTransport]
        }
        if payload.count == 1 { return reject(.protocolError, "close frame with a 1-byte payload") }
        if payload.count >= 2 {
            let value = CloseCode(UInt16(payload[0]) << 8 | UInt16(payload[1]))
            guard value.isValidOnTheWire else { return reject(.protocolError, "invalid close code \(value)") }
            let reasonBytes = Array(payload[2...])
            guard UTF8Validator.isValid(reasonBytes) else {
                return reject(.invalidFramePayloadData, "close reason is not valid UTF-8")
            }
            code = value
            reason = String(decoding: reasonBytes, as: UTF8.self)
        }
        var actions: [Action] = [.peerClosed(code, reason)]
        if state == .open {
            actions.append(.send(encode(.close, FrameEncoder.closePayload(code: code ?? nil))))
        }
        state = .closed
        actions.append(.closeTransport)
        return actions
    }

    /// "Fail the WebSocket connection" (RFC 6455 §7.1.7): send a close with `code` and wait
    /// for the peer's close, or hang up if we already sent ours.
    private mutating func failConnection(_ code: CloseCode, _ reason: String) -> [Action] {
        messageOpcode = nil
        messageBuffer = []
        switch state {
        case .open:
            state = .closeSent
            return [.send(encode(.close, FrameEncoder.closePayload(code: code, reason: reason))), .startCloseTimer]
        case .closeSent:
            state = .closed
            return [.closeTransport]
        case .closed:
            return []
        }
    }

    // MARK: sending

    /// Frames one message (compressed when permessage-deflate was negotiated, unless
    /// `compress` is false: RFC 7692 lets any message go uncompressed).
    public mutating func encodeMessage(_ payload: [UInt8], isText: Bool, compress: Bool = true) -> [UInt8] {
        let opcode: Opcode = isText ? .text : .binary
        if compress, let compressor, let compressed = try? compressor.compress(payload) {
            return encode(opcode, compressed, rsv1: true)
        }
        return encode(opcode, payload)
    }

    public mutating func encodePing(_ payload: [UInt8] = []) -> [UInt8] {
        encode(.ping, Array(payload.prefix(125)))
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2).
    public mutating func close(_ code: CloseCode = .normalClosure, reason: String = "") -> [Action] {
        guard state == .open else { return [] }
        state = .closeSent
        return [.send(encode(.close, FrameEncoder.closePayload(code: code, reason: reason))), .startCloseTimer]
    }

    /// The transport went away (or the close timer fired).
    public mutating func transportClosed() {
        state = .closed
    }

    private mutating func encode(_ opcode: Opcode, _ payload: [UInt8], rsv1: Bool = false) -> [UInt8] {
        switch role {
        case .server:
            return FrameEncoder.encode(rsv1: rsv1, opcode: opcode, payload: payload)
        case .client:
            let key = randomness.next() as UInt32
            return FrameEncoder.encode(
                rsv1: rsv1, opcode: opcode, payload: payload,
                maskingKey: (UInt8(key >> 24), UInt8(truncatingIfNeeded: key >> 16), UInt8(truncatingIfNeeded: key >> 8), UInt8(truncatingIfNeeded: key)))
        }
    }
}
