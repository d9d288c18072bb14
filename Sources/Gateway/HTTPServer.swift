#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketServer

/// HTTP/1.1 on the event loop: keep-alive connections, pipelined requests answered in
/// order, a timeout for clients that trickle a request (slowloris → 408), JSON errors for
/// malformed input, and WebSocket upgrades handed to a `WebSocketServer`.
///
/// Handlers are synchronous and run on the loop; a response is queued before the next
/// pipelined request is looked at, so order is kept without bookkeeping.
///
/// Bounded against slow and greedy clients: a connection takes on no more requests than it
/// can queue answers for (reading pauses), a request must arrive whole within a deadline
/// from its first byte, and connections that have not had a request succeed are few
/// (`maxUnprovenConnections`) and short-lived (`firstRequestTimeoutMilliseconds`). Every
/// loopback address counts as one client.
public final class HTTPServer {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        public var limits = HTTPHeadParser.Limits()
        /// 1 MiB: a launch request with its prompt.
        public var maxBodyBytes = 1 << 20
        /// A request must arrive whole within this time from its first byte (10 s): sending
        /// more bytes does not extend it.
        public var requestTimeoutMilliseconds = 10_000
        /// A connection must have a request succeed (status below 400, a stream or a
        /// WebSocket upgrade) within this time of its accept, or it is closed (5 s). Requests
        /// that fail authentication do not count: an unauthenticated client cannot hold a
        /// connection longer than this, however it paces its requests.
        public var firstRequestTimeoutMilliseconds = 5_000
        /// Connections that have not yet had a request succeed (256). A new connection past
        /// this closes the oldest of them that is not being answered (the rest get 503): an
        /// unauthenticated client that keeps reopening silent or trickling sockets only
        /// evicts its own, while a real client's request is answered as soon as it arrives.
        public var maxUnprovenConnections = 256
        /// Answers queued but not yet written before a connection takes on no more
        /// pipelined requests (16). Reading pauses until they are written.
        public var maxPipelinedResponses = 16
        /// An idle keep-alive connection is closed after this (60 s).
        public var idleTimeoutMilliseconds = 60_000
        public var maxConnections = 16_384
        /// Connections one client address may hold at once. Every loopback address
        /// (127.0.0.0/8, ::1) is one client, so this is generous; it stops one runaway
        /// script, not a crowd.
        public var maxConnectionsPerClient = 4_096
        /// The kernel's send buffer per connection (nil: the kernel's autotuning, up to
        /// several MiB). Kept small, a viewer that stops reading fills it quickly, and the
        /// gateway's own per-viewer bound (pause, catch up from the store) takes over
        /// instead of the kernel holding megabytes for it.
        public var socketSendBufferBytes: Int? = 256 * 1024

        public init() {}

        /// This configuration with its connection limits lowered to what `fileLimit`
        /// descriptors allow once the jobs' reserve is kept back (`FileLimits`): the server
        /// refuses a connection with 503 rather than fail to spawn an agent for lack of fds.
        /// Limits already lower are kept.
        public func limited(toFileLimit fileLimit: Int) -> Configuration {
            var configuration = self
            let budget = FileLimits.connectionBudget(limit: fileLimit)
            configuration.maxConnections = min(maxConnections, budget)
            configuration.maxConnectionsPerClient = min(maxConnectionsPerClient, configuration.maxConnections)
            configuration.maxUnprovenConnections = min(maxUnprovenConnections, configuration.maxConnections)
            return configuration
        }
    }

    /// What a handler answers: a whole response, a stream that takes the connection over
    /// after its head (SSE), or an answer that comes later (work off the loop).
    public struct Response {
        public var status: Int
        public var headers: HTTPHeaders
        public var body: [UInt8]
        /// Set for streams: called with the connection once the head is queued. The stream
        /// owns the connection from then on (no Content-Length; it ends by closing).
        public var takeOver: ((TCPConnection) -> Void)?
        /// Set for answers that come later: called with a completion to call on the loop,
        /// once. Later pipelined requests wait, so responses stay in order.
        public var later: ((@escaping (Response) -> Void) -> Void)?
        /// Whether answering this proves the client is one of ours, so its connection may
        /// live on (nil: any status below 400 does). The gateway says true only for requests
        /// that carried a valid credential.
        public var proves: Bool?

        public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }

        /// A response whose body is written by `takeOver` until it closes the connection.
        public static func stream(_ status: Int, headers: HTTPHeaders, takeOver: @escaping (TCPConnection) -> Void) -> Response {
            var response = Response(status: status, headers: headers)
            response.takeOver = takeOver
            return response
        }

        /// A response produced later by `work`, which must call its argument on the loop.
        public static func later(_ work: @escaping (@escaping (Response) -> Void) -> Void) -> Response {
            var response = Response(status: 0)
            response.later = work
            return response
        }

        public static func json(_ status: Int, _ body: [UInt8], headers: HTTPHeaders = HTTPHeaders()) -> Response {
            var all = headers
            all.add("Content-Type", "application/json")
            return Response(status: status, headers: all, body: body)
        }

        /// `{"error": message, "code": code}`.
        public static func error(_ status: Int, code: String, _ message: String) -> Response {
            let body = "{\"error\":\(HTTPResponse.jsonString(message)),\"code\":\(HTTPResponse.jsonString(code))}"
            return .json(status, Array(body.utf8))
        }
    }

    public let loop: EventLoop
    public let configuration: Configuration
    public let listener: TCPListener
    public var port: Int { listener.port }
    /// Answers one request. Runs on the loop.
    public var handler: ((HTTPRequest) -> Response)?
    /// Receives WebSocket upgrade requests (nil: they get 404).
    public var websockets: WebSocketServer?
    public private(set) var connectionCount = 0
    /// Connections refused because a limit was reached.
    public private(set) var refusedConnections = 0
    /// Open connections that have not yet had a request succeed.
    public var unprovenConnections: Int { unproven.count }
    /// Unproven connections closed to make room for a new one.
    /// Called with each connection refused at accept (503 `too_many_connections`), for the
    /// operator's log.
    public var onConnectionRefused: ((String) -> Void)?
    public private(set) var evictedConnections = 0
    /// Bytes queued to connections that have not had a request succeed (each takes one
    /// request at a time, so this stays near one answer per connection).
    public var unprovenQueuedBytes: Int { unproven.values.reduce(0) { $0 + $1.queuedBytes } }
    private var connectionsByClient: [String: Int] = [:]
    /// Connections with no successful request yet, by their accept number (oldest is lowest;
    /// never reused, unlike an object's address).
    private var unproven: [Int: HTTPConnection] = [:]
    private var accepts = 0

    public init(loop: EventLoop, configuration: Configuration) throws(SystemError) {
        self.loop = loop
        self.configuration = configuration
        listener = try TCPListener(loop: loop, host: configuration.host, port: configuration.port)
    }

    public func start() throws(SystemError) {
        listener.onAccept = { [unowned self] fd in self.accepted(fd) }
        try listener.start()
    }

    public func stop() {
        listener.close()
    }

    private func accepted(_ fd: Int32) {
        let tcp = TCPConnection(loop: loop, fd: fd)
        let client = PeerAddress.clientKey(fd)
        let perClient = connectionsByClient[client, default: 0]
        guard connectionCount < configuration.maxConnections, perClient < configuration.maxConnectionsPerClient else {
            return refuse(tcp, "connection limit reached")
        }
        guard unproven.count < configuration.maxUnprovenConnections || evictOldestUnproven() else {
            return refuse(tcp, "too many connections that have not made a request yet")
        }
        connectionCount += 1
        // Read again: an eviction just above closed a connection of this client, maybe.
        connectionsByClient[client, default: 0] += 1
        if let sendBuffer = configuration.socketSendBufferBytes {
            var bytes = Int32(sendBuffer)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
        }
        accepts += 1
        let serial = accepts
        let connection = HTTPConnection(server: self, tcp: tcp, serial: serial)
        unproven[serial] = connection
        // onClose holds the HTTP exchange while the connection speaks HTTP; a WebSocket
        // session or a stream that takes the connection over sets its own, and the exchange
        // is let go (one not proven yet stays in `unproven` until it is, or closes).
        tcp.onClose = { connection.closed() }
        // onFinalClose survives the hand-over: the counts must go down whoever owns it then.
        tcp.onFinalClose = { [unowned self, weak connection] in
            self.connectionCount -= 1
            self.unproven[serial] = nil
            let left = self.connectionsByClient[client, default: 1] - 1
            self.connectionsByClient[client] = left > 0 ? left : nil
            connection?.closed()
        }
        do {
            try tcp.start()
            connection.start()
        } catch {
            tcp.close()
        }
    }

    /// Said once, without reading the request: the client learns why and backs off.
    private func refuse(_ tcp: TCPConnection, _ message: String) {
        refusedConnections += 1
        onConnectionRefused?(message)
        do { try tcp.start() } catch { return tcp.close() }
        tcp.onClose = { withExtendedLifetime(tcp) {} }  // kept alive until it closes
        tcp.pauseReading()
        tcp.enqueue(HTTPResponse.jsonError(status: 503, code: "too_many_connections", message: message))
        tcp.closeAfterFlush(linger: true, lingerMilliseconds: 1_000)
    }

    func connectionProven(_ connection: HTTPConnection) {
        unproven[connection.serial] = nil
    }

    /// Closes the oldest unproven connection whose request is not being answered; false if
    /// every one is.
    private func evictOldestUnproven() -> Bool {
        guard let oldest = unproven.filter({ !$0.value.isAnswering }).min(by: { $0.key < $1.key })?.value else {
            return false
        }
        evictedConnections += 1
        oldest.evict()
        return true
    }
}

/// One keep-alive connection's state.
///
/// Requests are taken from the stream only while their answers can be queued: at most
/// `maxPipelinedResponses` answers wait unwritten, and none while the connection's queue is
/// over its bound. Until then reading pauses, so a client that pipelines without reading
/// waits in its own socket buffer (the unparsed bytes here are at most one read).
final class HTTPConnection {
    private unowned let server: HTTPServer
    private let tcp: TCPConnection
    private var stream: HTTPRequestStream
    private var timer: EventLoop.TimerID?
    /// The request `timer` is the deadline of (1-based), or 0 when it is the idle timer.
    private var timedRequest = 0
    /// Requests taken from the stream so far.
    private var requestsTaken = 0
    private var provingTimer: EventLoop.TimerID?
    /// A request on this connection succeeded (status below 400, or an upgrade or stream).
    private(set) var proven = false
    /// The proving deadline passed while an answer was coming later.
    private var provingExpired = false
    private var handedOver = false
    /// Set while a response comes later; the requests behind it wait.
    private var answering = false
    var isAnswering: Bool { answering }
    /// The last response is queued; nothing after it is looked at.
    private var closing = false
    /// The peer sent EOF: answer the requests it sent, then close.
    private var peerDone = false
    /// Answers queued since the queue was last empty.
    private var unflushed = 0

    /// The server's accept number for this connection.
    let serial: Int

    init(server: HTTPServer, tcp: TCPConnection, serial: Int) {
        self.server = server
        self.tcp = tcp
        self.serial = serial
        stream = HTTPRequestStream(limits: server.configuration.limits, maxBodyBytes: server.configuration.maxBodyBytes)
    }

    func start() {
        tcp.onRead = { [unowned self] bytes in self.received(bytes) }
        tcp.onFlushed = { [unowned self] in self.flushed() }
        tcp.onPeerClosed = { [unowned self] in self.peerClosed() }
        provingTimer = server.loop.schedule(afterMilliseconds: server.configuration.firstRequestTimeoutMilliseconds) {
            [weak self] in
            self?.provingTimer = nil
            self?.provingDeadlinePassed()
        }
        armTimer()
    }

    func closed() {
        if let timer { server.loop.cancel(timer) }
        timer = nil
        if let provingTimer { server.loop.cancel(provingTimer) }
        provingTimer = nil
    }

    private func received(_ bytes: UnsafeRawBufferPointer) {
        guard !handedOver, !closing else { return }
        stream.append(bytes)
        takeRequests()
    }

    private func flushed() {
        unflushed = 0
        guard !handedOver, !closing else { return }
        takeRequests()
    }

    private func peerClosed() {
        peerDone = true
        takeRequests()
    }

    /// A connection no request proved waits for each answer to be written before the next
    /// request is taken: 256 of them pipelining public files, never read, held half a GB
    /// (third attacker trial); one answer each is what a browser loading the page needs.
    private var outputBlocked: Bool {
        unflushed >= (proven ? server.configuration.maxPipelinedResponses : 1) || tcp.isOverBound
    }

    /// Bytes queued to this connection and not yet written.
    var queuedBytes: Int { tcp.queuedBytes }

    /// Answers the requests that arrived, in order, while answers can be queued; stops at one
    /// whose answer comes later. A malformed request is answered after the good ones before it.
    private func takeRequests() {
        var needMore = false
        taking: while !answering, !handedOver, !closing, tcp.isOpen, !outputBlocked {
            switch stream.next() {
            case .failure(let failure):
                send(.error(failure.status, code: Self.code(for: failure.status), failure.message), keepAlive: false)
            case .success(nil):
                needMore = true
                break taking
            case .success(let request?):
                requestsTaken += 1
                handle(request)
            }
        }
        if needMore, peerDone, !answering, !handedOver, !closing {
            // The client said all it will: its answers go out, then the connection closes.
            closing = true
            tcp.closeAfterFlush()
        }
        updateReading()
        armTimer()
    }

    /// Reads while a request could be taken; TCPConnection itself pauses while over its bound.
    private func updateReading() {
        guard !handedOver, !closing, !peerDone, tcp.isOpen else { return }
        if answering || outputBlocked {
            tcp.pauseReading()
        } else {
            tcp.resumeReading()
        }
    }

    private func handle(_ request: HTTPRequest) {
        if Handshake.isUpgradeRequest(request.head) {
            guard let websockets = server.websockets else {
                return send(.error(404, code: "not_found", "no WebSocket endpoint here"), keepAlive: false)
            }
            // Behind answers the client has not read, the session's answer would wait with
            // them, and no HTTP timer watches a handed-over connection: no client needs this.
            guard unflushed == 0, tcp.queuedBytes == 0 else {
                return send(
                    .error(400, code: "bad_request", "a WebSocket upgrade must not follow requests whose answers are unread"),
                    keepAlive: false)
            }
            handOver()
            // The WebSocket server checks the upgrade (auth included) and has its own timers.
            // Only an admitted upgrade proves the connection: a refused one stays unproven,
            // so the first-request deadline and eviction still apply to it.
            // The body decoder consumed nothing for a GET; frames that followed the request
            // in the same read are not expected before the 101 answer.
            websockets.adopt(tcp, request: request.head, remainder: []) { [weak self] in self?.prove() }
            return
        }
        let response = server.handler?(request) ?? .error(404, code: "not_found", "no route for \(request.path)")
        answer(response, keepAlive: request.keepsAlive)
    }

    private func answer(_ response: HTTPServer.Response, keepAlive: Bool) {
        if let later = response.later {
            answering = true
            var answered = false
            later { [weak self] response in
                guard let self, !answered else { return }
                answered = true
                self.answering = false
                guard self.tcp.isOpen else { return }
                let stillUnproven = self.provingExpired && !(response.proves ?? (response.status < 400))
                self.answer(response, keepAlive: keepAlive && !stillUnproven)
                self.takeRequests()
            }
            return
        }
        if let takeOver = response.takeOver {
            prove()
            handOver()
            var headers = response.headers
            headers.add("Connection", "close")
            tcp.enqueue(HTTPResponse.encodeHead(status: response.status, headers: headers))
            takeOver(tcp)
            return
        }
        send(response, keepAlive: keepAlive)
    }

    /// The connection belongs to a stream or a WebSocket session from now on. The proving
    /// deadline still runs for one that is not proven yet.
    private func handOver() {
        handedOver = true
        if let timer { server.loop.cancel(timer) }
        timer = nil
        tcp.onFlushed = nil
        tcp.onPeerClosed = nil
        tcp.resumeReading()
    }

    private func send(_ response: HTTPServer.Response, keepAlive: Bool) {
        if response.proves ?? (response.status < 400) { prove() }
        var headers = response.headers
        if !keepAlive { headers.add("Connection", "close") }
        tcp.enqueue(HTTPResponse.encode(status: response.status, headers: headers, body: response.body))
        unflushed += 1
        if !keepAlive {
            closing = true
            tcp.pauseReading()
            // Bytes the client sent after this request are not read: linger, so they do
            // not turn our close into a reset that loses this answer.
            tcp.closeAfterFlush(linger: true)
        }
    }

    private func prove() {
        guard !proven else { return }
        proven = true
        if let provingTimer { server.loop.cancel(provingTimer) }
        provingTimer = nil
        server.connectionProven(self)
    }

    /// Closed to make room for a newer connection (it had no request succeed).
    func evict() {
        tcp.close()
    }

    /// A connection that has had no request succeed within `firstRequestTimeoutMilliseconds`
    /// of its accept is closed (408 if a request is under way).
    private func provingDeadlinePassed() {
        guard !proven, tcp.isOpen else { return }
        if handedOver || closing {
            // A refused upgrade, or an answer the client has had time to read.
            tcp.close()
        } else if answering {
            provingExpired = true
        } else if stream.hasPartialRequest && !outputBlocked {
            send(.error(408, code: "request_timeout", "request not received in time"), keepAlive: false)
            armTimer()
        } else {
            tcp.close()
        }
    }

    /// A started request must finish in time, counted from its first byte (408); an idle
    /// connection, or one whose client does not read its answers, is closed quietly.
    private func armTimer() {
        guard !handedOver, !answering, tcp.isOpen else {
            if let timer { server.loop.cancel(timer) }
            timer = nil
            return
        }
        let awaitingRequest = !closing && stream.hasPartialRequest && !outputBlocked
        // More bytes of the same request do not move its deadline (slowloris).
        if awaitingRequest && timer != nil && timedRequest == requestsTaken + 1 { return }
        if let timer { server.loop.cancel(timer) }
        timedRequest = awaitingRequest ? requestsTaken + 1 : 0
        let timeout = awaitingRequest ? server.configuration.requestTimeoutMilliseconds : server.configuration.idleTimeoutMilliseconds
        timer = server.loop.schedule(afterMilliseconds: timeout) { [weak self] in
            guard let self, !self.handedOver, !self.answering else { return }
            self.timer = nil
            if self.timedRequest != 0 && !self.closing {
                self.send(.error(408, code: "request_timeout", "request not received in time"), keepAlive: false)
                self.armTimer()
            } else {
                self.tcp.close()
            }
        }
    }

    static func code(for status: Int) -> String {
        switch status {
        case 400: "bad_request"
        case 408: "request_timeout"
        case 413: "body_too_large"
        case 414: "uri_too_long"
        case 431: "headers_too_large"
        case 501: "not_implemented"
        case 505: "http_version_not_supported"
        default: "error"
        }
    }
}
