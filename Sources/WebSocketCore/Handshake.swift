import HTTPCore

/// The opening handshake (RFC 6455 §4), both roles, as pure functions over parsed heads.
public enum Handshake {
    /// RFC 6455 §1.3: the GUID appended to the key before hashing.
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
    public static func acceptValue(forKey key: String) -> String {
        Base64.encode(SHA1.hash(Array((key + guid).utf8)))
    }

    /// A refused upgrade: the status and headers to answer with.
    public struct Rejection: Error, Equatable, Sendable {
        public var status: Int
        public var reason: String
        public var headers: HTTPHeaders

        public init(_ status: Int, _ reason: String, headers: HTTPHeaders = HTTPHeaders()) {
            self.status = status
            self.reason = reason
            self.headers = headers
        }

        /// The full HTTP response, with a JSON error body.
        public var response: [UInt8] {
            HTTPResponse.jsonError(status: status, code: "websocket_handshake", message: reason, headers: headers)
        }
    }

    /// True when the request asks for a WebSocket upgrade at all (so the server answers
    /// with a handshake error rather than as plain HTTP).
    public static func isUpgradeRequest(_ head: HTTPHead) -> Bool {
        head.headers.tokens("Upgrade").contains("websocket")
    }

    /// Checks a client's opening handshake (RFC 6455 §4.2.1) and returns its key.
    public static func validateClientRequest(_ head: HTTPHead) -> Result<String, Rejection> {
        // 1. A GET request, HTTP/1.1 or higher.
        guard head.method == "GET" else {
            return .failure(Rejection(405, "WebSocket upgrades must use GET", headers: HTTPHeaders([("Allow", "GET")])))
        }
        guard head.version == "HTTP/1.1" else { return .failure(Rejection(400, "WebSocket upgrades need HTTP/1.1")) }
        // 2. A |Host| header field.
        guard let host = head.headers["Host"], !host.isEmpty else { return .failure(Rejection(400, "missing Host header")) }
        // 3. An |Upgrade| header field containing the value "websocket" (case-insensitive).
        guard head.headers.tokens("Upgrade").contains("websocket") else {
            return .failure(Rejection(400, "missing 'Upgrade: websocket'"))
        }
        // 4. A |Connection| header field that includes the token "Upgrade".
        guard head.headers.tokens("Connection").contains("upgrade") else {
            return .failure(Rejection(400, "missing 'Connection: Upgrade'"))
        }
        // 6. |Sec-WebSocket-Version| 13; otherwise 426 naming the versions we speak (§4.4).
        guard head.headers.values("Sec-WebSocket-Version").count == 1, head.headers["Sec-WebSocket-Version"] == "13" else {
            return .failure(Rejection(426, "unsupported WebSocket version; use 13", headers: HTTPHeaders([("Sec-WebSocket-Version", "13")])))
        }
        // 5. |Sec-WebSocket-Key|: base64 of 16 bytes.
        let keys = head.headers.values("Sec-WebSocket-Key")
        guard keys.count == 1, let key = keys.first, Base64.decode(key)?.count == 16 else {
            return .failure(Rejection(400, "Sec-WebSocket-Key must be the base64 of 16 bytes"))
        }
        return .success(key)
    }

    /// Picks the first subprotocol the client offered that the server supports (§4.2.2).
    public static func selectSubprotocol(_ head: HTTPHead, supported: [String]) -> String? {
        let offered = head.headers.values("Sec-WebSocket-Protocol").flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces() }
        return offered.first { supported.contains($0) }
    }

    /// The 101 response.
    public static func acceptResponse(key: String, subprotocol: String? = nil, extensions: String? = nil) -> [UInt8] {
        var headers = HTTPHeaders([
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", acceptValue(forKey: key)),
        ])
        if let subprotocol { headers.add("Sec-WebSocket-Protocol", subprotocol) }
        if let extensions { headers.add("Sec-WebSocket-Extensions", extensions) }
        return HTTPResponse.encode(status: 101, headers: headers)
    }

    // MARK: client role

    /// A fresh random key.
    public static func makeKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return Base64.encode((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// The client's GET request (RFC 6455 §4.1).
    public static func clientRequest(
        host: String, path: String, key: String, subprotocols: [String] = [], extensions: String? = nil,
        extraHeaders: [(String, String)] = []
    ) -> [UInt8] {
        var text = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        if !subprotocols.isEmpty { text += "Sec-WebSocket-Protocol: \(subprotocols.joined(separator: ", "))\r\n" }
        if let extensions { text += "Sec-WebSocket-Extensions: \(extensions)\r\n" }
        for (name, value) in extraHeaders { text += "\(name): \(value)\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// Checks the server's answer (RFC 6455 §4.1, the client's requirements 1–6).
    public static func validateServerResponse(_ head: HTTPHead, key: String) -> Result<Void, Rejection> {
        guard head.target == "101" else { return .failure(Rejection(Int(head.target) ?? 0, "server answered \(head.target) \(head.version)")) }
        guard head.headers.tokens("Upgrade").contains("websocket"), head.headers.tokens("Connection").contains("upgrade") else {
            return .failure(Rejection(0, "server did not upgrade to websocket"))
        }
        guard head.headers["Sec-WebSocket-Accept"] == acceptValue(forKey: key) else {
            return .failure(Rejection(0, "wrong Sec-WebSocket-Accept"))
        }
        return .success(())
    }
}
