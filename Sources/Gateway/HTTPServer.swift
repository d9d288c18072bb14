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
        public var maxConnections = 10_000

        public init() {}
    }

    /// What a handler answers.
    public struct Response: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        public var body: [UInt8]

        public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
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
        guard connectionCount < configuration.maxConnections else {
            tcp.close()
            return
        }
        connectionCount += 1
        let connection = HTTPConnection(server: self, tcp: tcp)
        tcp.onClose = { [unowned self] in
            self.connectionCount -= 1
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
        guard !handedOver else { return }
        switch stream.feed(bytes) {
        case .failure(let failure):
            let response = HTTPServer.Response.error(failure.status, code: Self.code(for: failure.status), failure.message)
            send(response, keepAlive: false)
        case .success(let requests):
            for request in requests {
                if handedOver || !tcp.isOpen { return }
                handle(request)
            }
            armTimer()
        }
    }

    private func handle(_ request: HTTPRequest) {
        if Handshake.isUpgradeRequest(request.head) {
            guard let websockets = server.websockets else {
                return send(.error(404, code: "not_found", "no WebSocket endpoint here"), keepAlive: false)
            }
            handedOver = true
            if let timer { server.loop.cancel(timer) }
            timer = nil
            // The body decoder consumed nothing for a GET; frames that followed the request
            // in the same read are not expected before the 101 answer.
            websockets.adopt(tcp, request: request.head, remainder: [])
            return
        }
        let response = server.handler?(request) ?? .error(404, code: "not_found", "no route for \(request.path)")
        send(response, keepAlive: request.keepsAlive)
    }

    private func send(_ response: HTTPServer.Response, keepAlive: Bool) {
        var headers = response.headers
        if !keepAlive { headers.add("Connection", "close") }
        tcp.enqueue(HTTPResponse.encode(status: response.status, headers: headers, body: response.body))
        if !keepAlive {
            tcp.pauseReading()
            tcp.closeAfterFlush()
        }
    }

    /// A started request must finish in time (408); an idle connection is closed quietly.
    private func armTimer() {
        if let timer { server.loop.cancel(timer) }
        let partial = stream.hasPartialRequest
        let timeout = partial ? server.configuration.requestTimeoutMilliseconds : server.configuration.idleTimeoutMilliseconds
        timer = server.loop.schedule(afterMilliseconds: timeout) { [weak self] in
            guard let self, !self.handedOver else { return }
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
