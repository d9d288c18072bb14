import AgentCore
import Dispatch
import HTTPCore
import WebSocketCore
import WebSocketDeflate

/// The client side of `/ws`: our WebSocket engine in the client role (masking, the
/// handshake's checks, permessage-deflate), over a blocking socket.
final class EventSocket {
    enum Next {
        case message(JSONValue)
        case timedOut
        /// The connection ended (cleanly or not).
        case closed
    }

    private let socket: BlockingSocket
    private var connection: WebSocketConnection
    private var pending: [JSONValue] = []
    private var isClosed = false
    /// The server's close code and reason, once it closed the connection.
    private(set) var closedBy: (code: CloseCode?, reason: String)?

    init(api: ServerAPI) throws(ClientFailure) {
        do {
            socket = try BlockingSocket(host: api.address.host, port: api.address.port)
        } catch {
            throw ClientFailure.unreachable(api.address.url, error.message)
        }
        let key = Handshake.makeKey()
        let request = Handshake.clientRequest(
            host: api.address.hostHeader, path: "/ws", key: key, extensions: PerMessageDeflateClientOffer.headerValue,
            extraHeaders: [("Authorization", "Bearer \(api.token)")])
        do {
            try socket.send(request)
        } catch {
            throw ClientFailure.unreachable(api.address.url, error.message)
        }
        var parser = HTTPHeadParser(kind: .response)
        // A signal (Ctrl-C) interrupts the wait as a time-out: keep waiting until the deadline,
        // so only a closed socket or a silent server reads as the server being gone.
        let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
        while true {
            let received = socket.receive(timeoutMilliseconds: 1_000)
            if case .timedOut = received, DispatchTime.now().uptimeNanoseconds < deadline { continue }
            guard case .bytes(let bytes) = received else { throw ClientFailure.serverGone }
            guard case .success(let parsed) = parser.feed(bytes) else {
                throw ClientFailure(message: "the server did not answer the WebSocket handshake in HTTP", exitCode: 8)
            }
            guard let head = parsed else { continue }
            if case .failure(let rejection) = Handshake.validateServerResponse(head, key: key) {
                if rejection.status >= 400 { throw ClientFailure.http(rejection.status, .object([:])) }
                throw ClientFailure(message: "WebSocket handshake failed: \(rejection.reason)", exitCode: 8)
            }
            var compressor: MessageCompressor?
            switch PerMessageDeflateClientOffer.accept(responseValues: head.headers.values("Sec-WebSocket-Extensions")) {
            case .success(let parameters?):
                compressor = try? PerMessageDeflate(parameters: parameters, role: .client)
            case .success(nil):
                break
            case .failure(let rejection):
                throw ClientFailure(message: "WebSocket handshake failed: \(rejection.reason)", exitCode: 8)
            }
            connection = WebSocketConnection(role: .client, compressor: compressor)
            handle(connection.receive(parser.remainder))
            return
        }
    }

    func send(_ message: JSONValue) {
        let frame = connection.encodeMessage(JSONWriter.serialize(message), isText: true)
        try? socket.send(frame)
    }

    /// The next server message, waiting up to `timeoutMilliseconds`.
    func next(timeoutMilliseconds: Int32) -> Next {
        while pending.isEmpty {
            if isClosed { return .closed }
            switch socket.receive(timeoutMilliseconds: timeoutMilliseconds) {
            case .bytes(let bytes): handle(connection.receive(bytes))
            case .timedOut: return .timedOut
            case .closed: isClosed = true
            }
        }
        return .message(pending.removeFirst())
    }

    func close() {
        for action in connection.close() {
            if case .send(let bytes) = action { try? socket.send(bytes) }
        }
    }

    private func handle(_ actions: [WebSocketConnection.Action]) {
        for action in actions {
            switch action {
            case .deliver(let message):
                if message.isText, let value = try? JSONParser.parse(message.payload) { pending.append(value) }
            case .send(let bytes):
                try? socket.send(bytes)
            case .peerClosed(let code, let reason):
                closedBy = (code, reason)
                isClosed = true
            case .closeTransport:
                isClosed = true
            case .pongReceived, .startCloseTimer:
                break
            }
        }
    }
}
