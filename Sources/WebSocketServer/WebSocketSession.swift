import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketDeflate

/// One client connection: HTTP upgrade first, then the WebSocket protocol, with the
/// protocol core's actions carried out on the loop.
public final class WebSocketSession {
    public let id: Int
    public let tcp: TCPConnection
    /// The upgrade request, once it arrived.
    public private(set) var request: HTTPHead?
    public private(set) var subprotocol: String?
    public private(set) var deflateParameters: DeflateParameters?
    /// Anything the owner wants to hang on the session (subscriptions, …).
    public var userInfo: AnyObject?

    private enum Phase {
        case handshake(HTTPHeadParser)
        case open(WebSocketConnection)
        case closed
    }

    private unowned let server: WebSocketServer
    private var phase: Phase
    private var handshakeTimer: EventLoop.TimerID?
    private var closeTimer: EventLoop.TimerID?
    private var pingTimer: EventLoop.TimerID?
    private var pongDeadline: EventLoop.TimerID?
    /// Set once our close frame is queued: nothing may follow it (RFC 6455 §5.5.1). A
    /// message delivered in the same read as a failing frame is still answered, before it.
    private var outputClosed = false

    init(id: Int, tcp: TCPConnection, server: WebSocketServer) {
        self.id = id
        self.tcp = tcp
        self.server = server
        phase = .handshake(HTTPHeadParser(kind: .request, limits: server.configuration.headLimits))
    }

    func start() throws(SystemError) {
        tcp.onRead = { [unowned self] bytes in self.received(bytes) }
        tcp.onClose = { [unowned self] in self.transportClosed() }
        try tcp.start()
        // A client that trickles its request head (slowloris) is cut off.
        handshakeTimer = server.loop.schedule(afterMilliseconds: server.configuration.handshakeTimeoutMilliseconds) { [weak self] in
            guard let self, case .handshake = self.phase else { return }
            self.reject(Handshake.Rejection(408, "request head not received in time"))
        }
    }

    /// Continues on a connection that is already running (see `WebSocketServer.adopt`).
    func adopt(request: HTTPHead, remainder: [UInt8], admitted: @escaping () -> Void) {
        tcp.onRead = { [unowned self] bytes in self.received(bytes) }
        tcp.onClose = { [unowned self] in self.transportClosed() }
        tcp.resumeReading()
        upgrade(request, remainder: remainder, admitted: admitted)
    }

    public var isOpen: Bool {
        if case .open = phase { return !outputClosed }
        return false
    }

    // MARK: input

    private func received(_ bytes: UnsafeRawBufferPointer) {
        switch phase {
        case .handshake(var parser):
            let result = parser.feed(bytes)
            phase = .handshake(parser)
            switch result {
            case .failure(let error):
                reject(Handshake.Rejection(error.status, error.message))
            case .success(nil):
                break
            case .success(let head?):
                upgrade(head, remainder: parser.remainder)
            }
        case .open(var connection):
            let actions = connection.receive(bytes)
            phase = .open(connection)
            perform(actions)
        case .closed:
            break
        }
    }

    private func reject(_ rejection: Handshake.Rejection) {
        phase = .closed
        tcp.pauseReading()
        tcp.enqueue(rejection.response)
        tcp.closeAfterFlush()
        // A client that never reads its refusal does not keep the connection.
        closeTimer = server.loop.schedule(afterMilliseconds: server.configuration.closeTimeoutMilliseconds) { [weak self] in
            self?.tcp.close()
        }
    }

    private func upgrade(_ head: HTTPHead, remainder: [UInt8], admitted: () -> Void = {}) {
        if let handshakeTimer { server.loop.cancel(handshakeTimer) }
        handshakeTimer = nil
        request = head
        let key: String
        switch Handshake.validateClientRequest(head) {
        case .failure(let rejection): return reject(rejection)
        case .success(let value): key = value
        }
        if let rejection = server.admit?(self, head) { return reject(rejection) }
        admitted()

        subprotocol = Handshake.selectSubprotocol(head, supported: server.configuration.subprotocols)
        var compressor: MessageCompressor?
        if let negotiation = server.configuration.deflate,
            let parameters = negotiation.negotiate(headerValues: head.headers.values("Sec-WebSocket-Extensions"))
        {
            compressor = try? PerMessageDeflate(parameters: parameters, role: .server)
            if compressor != nil { deflateParameters = parameters }
        }
        tcp.enqueue(
            Handshake.acceptResponse(key: key, subprotocol: subprotocol, extensions: deflateParameters?.responseHeaderValue))
        phase = .open(WebSocketConnection(role: .server, configuration: server.configuration.connection, compressor: compressor))
        schedulePing()
        server.sessionOpened(self)
        if !remainder.isEmpty {
            remainder.withUnsafeBytes { received($0) }
        }
    }

    private func perform(_ actions: [WebSocketConnection.Action]) {
        for action in actions {
            switch action {
            case .deliver(let message):
                server.onMessage?(self, message)
            case .send(let bytes):
                tcp.enqueue(bytes)
            case .pongReceived:
                if let pongDeadline { server.loop.cancel(pongDeadline) }
                pongDeadline = nil
            case .peerClosed:
                break
            case .startCloseTimer:
                outputClosed = true
                let start = { [weak self] in
                    guard let self, self.closeTimer == nil, self.tcp.isOpen else { return }
                    self.closeTimer = self.server.loop.schedule(afterMilliseconds: self.server.configuration.closeTimeoutMilliseconds) {
                        [weak self] in
                        self?.tcp.close()
                    }
                }
                closeTimerWaitsForQueue ? tcp.whenFlushed(start) : start()
            case .closeTransport:
                outputClosed = true
                tcp.closeAfterFlush()
            }
        }
    }

    // MARK: output

    /// Sends one message, framed (and compressed) for this connection; `label` says which
    /// events it holds (see `OutboundBuffer.Label`).
    public func send(_ payload: [UInt8], isText: Bool, label: OutboundBuffer.Label? = nil) {
        guard case .open(var connection) = phase, !outputClosed else { return }
        let bytes = connection.encodeMessage(payload, isText: isText, compress: !ownCompressionBroken)
        phase = .open(connection)
        if let label { tcp.enqueue(OutboundBuffer(bytes, label: label)) } else { tcp.enqueue(bytes) }
    }

    /// Set once queued frames were dropped: a per-connection compressor's window holds what
    /// the peer never got, so nothing compressed with it can follow.
    private var ownCompressionBroken = false
    private var closeTimerWaitsForQueue = false

    /// Drops the frames queued and not yet being written (see `TCPConnection.dropUnsent`):
    /// whole frames only, so the peer's next frame is whatever is sent next.
    @discardableResult
    public func dropUnsent() -> [OutboundBuffer] {
        if deflateParameters.map({ !$0.serverNoContextTakeover || $0.serverMaxWindowBits != 15 }) ?? false {
            ownCompressionBroken = true
        }
        return tcp.dropUnsent()
    }

    /// Sends a frame that was encoded once for many connections.
    public func send(sharedFrame: OutboundBuffer) {
        guard isOpen else { return }
        tcp.enqueue(sharedFrame)
    }

    /// Starts the closing handshake; the peer has `closeTimeoutMilliseconds` to answer.
    ///
    /// - Parameter afterQueued: count that time from when everything queued before the close
    ///   frame is written, so a close after the last events of a stream never discards them
    ///   however slowly they are read. The caller then owns the deadline for a peer that
    ///   stops reading (it cuts the connection itself).
    public func close(_ code: CloseCode = .normalClosure, reason: String = "", afterQueued: Bool = false) {
        guard case .open(var connection) = phase else {
            tcp.close()
            return
        }
        closeTimerWaitsForQueue = afterQueued
        let actions = connection.close(code, reason: reason)
        phase = .open(connection)
        perform(actions)
    }

    // MARK: heartbeat

    private func schedulePing() {
        guard let interval = server.configuration.pingIntervalMilliseconds else { return }
        pingTimer = server.loop.schedule(afterMilliseconds: interval) { [weak self] in
            guard let self, case .open(var connection) = self.phase, connection.state == .open else { return }
            let ping = connection.encodePing(Array("agentgate".utf8))
            self.phase = .open(connection)
            self.tcp.enqueue(ping)
            if self.pongDeadline == nil {
                self.pongDeadline = self.server.loop.schedule(afterMilliseconds: self.server.configuration.pongTimeoutMilliseconds) {
                    [weak self] in
                    // No pong: the peer is gone or stuck. Drop it without a handshake.
                    self?.tcp.close()
                }
            }
            self.schedulePing()
        }
    }

    private func transportClosed() {
        for timer in [handshakeTimer, closeTimer, pingTimer, pongDeadline].compactMap({ $0 }) { server.loop.cancel(timer) }
        let wasOpen: Bool
        if case .open = phase { wasOpen = true } else { wasOpen = false }
        phase = .closed
        server.sessionClosed(self, wasOpen: wasOpen)
    }
}
