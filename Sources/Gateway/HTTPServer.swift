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
public final class HTTPServer {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        public var limits = HTTPHeadParser.Limits()
        /// 1 MiB: a launch request with its prompt.
        public var maxBodyBytes = 1 << 20
        /// A request must arrive whole within this time once it has started (10 s).
        public var requestTimeoutMilliseconds = 10_000
        /// An idle keep-alive connection is closed after this (60 s).
        public var idleTimeoutMilliseconds = 60_000
        public var maxConnections = 16_384
        /// Connections one client address may hold at once. Local clients all share
        /// 127.0.0.1, so this is generous; it stops one runaway script, not a crowd.
        public var maxConnectionsPerClient = 4_096
        /// The kernel's send buffer per connection (nil: the kernel's autotuning, up to
        /// several MiB). Kept small, a viewer that stops reading fills it quickly, and the
        /// gateway's own per-viewer bound (pause, catch up from the store) takes over
        /// instead of the kernel holding megabytes for it.
        public var socketSendBufferBytes: Int? = 256 * 1024

        public init() {}
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
    private var connectionsByClient: [String: Int] = [:]

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
        let client = PeerAddress.of(fd)
        let perClient = connectionsByClient[client, default: 0]
        guard connectionCount < configuration.maxConnections, perClient < configuration.maxConnectionsPerClient else {
            // Said once, without reading the request: the client learns why and backs off.
            refusedConnections += 1
            do { try tcp.start() } catch { return tcp.close() }
            tcp.onClose = { withExtendedLifetime(tcp) {} }  // kept alive until it closes
            tcp.pauseReading()
            tcp.enqueue(HTTPResponse.jsonError(status: 503, code: "too_many_connections", message: "connection limit reached"))
            tcp.closeAfterFlush(linger: true, lingerMilliseconds: 1_000)
            return
        }
        connectionCount += 1
        connectionsByClient[client] = perClient + 1
        if let sendBuffer = configuration.socketSendBufferBytes {
            var bytes = Int32(sendBuffer)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
        }
        let connection = HTTPConnection(server: self, tcp: tcp)
        tcp.onClose = { [unowned self] in
            self.connectionCount -= 1
            let left = self.connectionsByClient[client, default: 1] - 1
            self.connectionsByClient[client] = left > 0 ? left : nil
            connection.closed()
        }
        do {
            try tcp.start()
            connection.start()
        } catch {
            tcp.close()
        }
    }
}

/// One keep-alive connection's state.
final class HTTPConnection {
    private unowned let server: HTTPServer
    private let tcp: TCPConnection
    private var stream: HTTPRequestStream
    private var timer: EventLoop.TimerID?
    private var handedOver = false
    /// Requests parsed but not yet answered (pipelined behind one answered later).
    private var waitingRequests: [HTTPRequest] = []
    /// Set while a response comes later; the requests behind it wait.
    private var answering = false
    /// The last response is queued; nothing after it is looked at.
    private var closing = false
    /// A malformed request, answered after the good ones before it.
    private var failed: HTTPRequestStream.Failure?

    init(server: HTTPServer, tcp: TCPConnection) {
        self.server = server
        self.tcp = tcp
        stream = HTTPRequestStream(limits: server.configuration.limits, maxBodyBytes: server.configuration.maxBodyBytes)
    }

    func start() {
        tcp.onRead = { [unowned self] bytes in self.received(Array(bytes)) }
        armTimer()
    }

    func closed() {
        if let timer { server.loop.cancel(timer) }
        timer = nil
    }

    private func received(_ bytes: [UInt8]) {
        guard !handedOver, !closing else { return }
        switch stream.feed(bytes) {
        case .failure(let failure):
            failed = failure
        case .success(let requests):
            waitingRequests += requests
        }
        handleWaiting()
        armTimer()
    }

    /// Answers the requests that arrived, in order, stopping at one whose answer comes later.
    private func handleWaiting() {
        while !answering, !handedOver, !closing, tcp.isOpen, !waitingRequests.isEmpty {
            handle(waitingRequests.removeFirst())
        }
        if !answering, !handedOver, !closing, tcp.isOpen, waitingRequests.isEmpty, let failure = failed {
            failed = nil
            send(.error(failure.status, code: Self.code(for: failure.status), failure.message), keepAlive: false)
        }
    }

    private func handle(_ request: HTTPRequest) {
        if Handshake.isUpgradeRequest(request.head) {
            guard let websockets = server.websockets else {
                return send(.error(404, code: "not_found", "no WebSocket endpoint here"), keepAlive: false)
            }
            handOver()
            // The body decoder consumed nothing for a GET; frames that followed the request
            // in the same read are not expected before the 101 answer.
            websockets.adopt(tcp, request: request.head, remainder: [])
            return
        }
        let response = server.handler?(request) ?? .error(404, code: "not_found", "no route for \(request.path)")
        answer(response, keepAlive: request.keepsAlive)
    }

    private func answer(_ response: HTTPServer.Response, keepAlive: Bool) {
        if let later = response.later {
            answering = true
            tcp.pauseReading()
            var answered = false
            later { [weak self] response in
                guard let self, !answered else { return }
                answered = true
                self.answering = false
                guard self.tcp.isOpen else { return }
                self.tcp.resumeReading()
                self.answer(response, keepAlive: keepAlive)
                self.handleWaiting()
                self.armTimer()
            }
            return
        }
        if let takeOver = response.takeOver {
            handOver()
            var headers = response.headers
            headers.add("Connection", "close")
            tcp.enqueue(HTTPResponse.encodeHead(status: response.status, headers: headers))
            takeOver(tcp)
            return
        }
        send(response, keepAlive: keepAlive)
    }

    private func handOver() {
        handedOver = true
        waitingRequests.removeAll()
        if let timer { server.loop.cancel(timer) }
        timer = nil
    }

    private func send(_ response: HTTPServer.Response, keepAlive: Bool) {
        var headers = response.headers
        if !keepAlive { headers.add("Connection", "close") }
        tcp.enqueue(HTTPResponse.encode(status: response.status, headers: headers, body: response.body))
        if !keepAlive {
            closing = true
            waitingRequests.removeAll()
            tcp.pauseReading()
            // Bytes the client sent after this request are not read: linger, so they do
            // not turn our close into a reset that loses this answer.
            tcp.closeAfterFlush(linger: true)
        }
    }

    /// A started request must finish in time (408); an idle connection is closed quietly.
    private func armTimer() {
        if let timer { server.loop.cancel(timer) }
        timer = nil
        guard !handedOver, !answering, tcp.isOpen else { return }
        let partial = stream.hasPartialRequest
        let timeout = partial ? server.configuration.requestTimeoutMilliseconds : server.configuration.idleTimeoutMilliseconds
        timer = server.loop.schedule(afterMilliseconds: timeout) { [weak self] in
            guard let self, !self.handedOver, !self.answering else { return }
            self.timer = nil
            if self.stream.hasPartialRequest {
                self.send(.error(408, code: "request_timeout", "request not received in time"), keepAlive: false)
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
