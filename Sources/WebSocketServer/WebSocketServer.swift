import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketDeflate

/// WebSocket connections served on one event loop: accept, upgrade, messages, close. The
/// owner decides what messages mean (echo, gateway subscriptions).
public final class WebSocketServer {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        public var connection = WebSocketConnection.Configuration()
        public var headLimits = HTTPHeadParser.Limits()
        /// nil: permessage-deflate is not offered.
        public var deflate: PerMessageDeflateNegotiation? = PerMessageDeflateNegotiation()
        public var subprotocols: [String] = []
        /// 10 s to send a complete request head.
        public var handshakeTimeoutMilliseconds = 10_000
        /// 5 s for the peer's close frame after ours.
        public var closeTimeoutMilliseconds = 5_000
        /// nil: no heartbeat. Otherwise ping every interval and drop a peer whose pong does
        /// not come within `pongTimeoutMilliseconds`.
        public var pingIntervalMilliseconds: Int?
        public var pongTimeoutMilliseconds = 10_000
        /// Bytes queued per connection before the queue-bound callback fires.
        public var maxQueuedBytes = 4 << 20
        /// Connections beyond this are refused at accept.
        public var maxConnections = 100_000

        public init() {}
    }

    public let loop: EventLoop
    public let configuration: Configuration
    /// nil when an HTTP server owns the socket and hands upgrades over with `adopt`.
    public let listener: TCPListener?
    public var port: Int { listener?.port ?? 0 }

    /// Checks an upgrade request beyond the protocol (auth, Origin); a rejection refuses it.
    /// May hang what it learned (who the client is) on the session's `userInfo`.
    public var admit: ((WebSocketSession, HTTPHead) -> Handshake.Rejection?)?
    public var onOpen: ((WebSocketSession) -> Void)?
    public var onMessage: ((WebSocketSession, WebSocketConnection.Message) -> Void)?
    public var onClose: ((WebSocketSession) -> Void)?
    /// A session's write queue passed `maxQueuedBytes`. Default: close it.
    public var onQueueOverBound: ((WebSocketSession) -> Void)?
    /// A session's write queue, after passing `maxQueuedBytes`, was fully written again.
    public var onDrained: ((WebSocketSession) -> Void)?
    /// Accepting paused for lack of fds (at most once a minute).
    public var onAcceptError: ((SystemError) -> Void)?

    public private(set) var sessions: [Int: WebSocketSession] = [:]
    private var nextID = 0

    /// - Parameter listening: false when an HTTP server accepts the connections and hands
    ///   WebSocket upgrades over with `adopt(_:request:remainder:)`.
    public init(loop: EventLoop, configuration: Configuration, listening: Bool = true) throws(SystemError) {
        self.loop = loop
        self.configuration = configuration
        listener = listening ? try TCPListener(loop: loop, host: configuration.host, port: configuration.port) : nil
    }

    public func start() throws(SystemError) {
        guard let listener else { return }
        listener.onAccept = { [unowned self] fd in self.accepted(fd) }
        listener.onAcceptError = { [unowned self] error in self.onAcceptError?(error) }
        try listener.start()
    }

    public func stop() {
        listener?.close()
        for session in sessions.values { session.tcp.close() }
    }

    private func accepted(_ fd: Int32) {
        let tcp = TCPConnection(loop: loop, fd: fd, maxQueuedBytes: configuration.maxQueuedBytes)
        guard sessions.count < configuration.maxConnections else {
            tcp.close()
            return
        }
        let session = makeSession(tcp)
        do {
            try session.start()
        } catch {
            sessions[session.id] = nil
            tcp.close()
        }
    }

    /// Takes over a running connection whose upgrade request an HTTP server parsed; the
    /// session answers the handshake (or refuses it) as if it had read the request itself.
    /// `admitted` is called if the upgrade is accepted, before the session opens.
    @discardableResult
    public func adopt(
        _ tcp: TCPConnection, request: HTTPHead, remainder: [UInt8], admitted: @escaping () -> Void = {}
    ) -> WebSocketSession {
        tcp.maxQueuedBytes = configuration.maxQueuedBytes
        let session = makeSession(tcp)
        session.adopt(request: request, remainder: remainder, admitted: admitted)
        return session
    }

    private func makeSession(_ tcp: TCPConnection) -> WebSocketSession {
        nextID += 1
        let session = WebSocketSession(id: nextID, tcp: tcp, server: self)
        sessions[session.id] = session
        tcp.onQueueOverBound = { [unowned self, unowned session] in
            if let handler = self.onQueueOverBound {
                handler(session)
            } else {
                session.tcp.close()
            }
        }
        tcp.onDrained = { [unowned self, unowned session] in self.onDrained?(session) }
        return session
    }

    func sessionOpened(_ session: WebSocketSession) {
        onOpen?(session)
    }

    func sessionClosed(_ session: WebSocketSession, wasOpen: Bool) {
        sessions[session.id] = nil
        if wasOpen { onClose?(session) }
    }
}
