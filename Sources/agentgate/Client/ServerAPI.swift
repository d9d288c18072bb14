import AgentCore
import Foundation
import HTTPCore

typealias JSONReply = JSONValue

/// Where the server is and how to prove who we are: `--server` (or AGENTGATE_SERVER), the
/// token from AGENTGATE_TOKEN or the data dir's token file.
struct ServerAddress {
    var host: String
    var port: Int
    var url: String

    init(_ url: String) throws(ClientFailure) {
        var rest = Substring(url)
        guard rest.hasPrefix("http://") else {
            throw ClientFailure(message: "--server must be an http:// URL, like http://127.0.0.1:7777", exitCode: 2)
        }
        rest = rest.dropFirst("http://".count)
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        var host = rest
        var port = 80
        if rest.hasPrefix("["), let end = rest.firstIndex(of: "]") {
            host = rest[rest.index(after: rest.startIndex)..<end]
            let after = rest[rest.index(after: end)...]
            if after.hasPrefix(":") { port = Int(after.dropFirst()) ?? -1 }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            port = Int(rest[rest.index(after: colon)...]) ?? -1
        }
        guard !host.isEmpty, (1...65535).contains(port), !host.contains("/") else {
            throw ClientFailure(message: "cannot read the server address \(url)", exitCode: 2)
        }
        self.host = String(host)
        self.port = port
        self.url = url
    }

    /// The Host header value.
    var hostHeader: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Blocking JSON calls to the gateway's REST API, one connection per call.
struct ServerAPI {
    let address: ServerAddress
    let token: String

    /// Answers larger than this are refused (the biggest, a job list or 10,000 events, is far smaller).
    static let maxBodyBytes = 256 << 20

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: JSONReply
    }

    /// A call that must succeed (2xx); anything else becomes the matching failure.
    func call(_ method: String, _ path: String, body: JSONValue? = nil) throws(ClientFailure) -> JSONReply {
        let reply = try request(method, path, body: body)
        guard (200..<300).contains(reply.status) else { throw ClientFailure.http(reply.status, reply.body) }
        return reply.body
    }

    /// - Parameter timeoutSeconds: how long the answer may take (git work on a large
    ///   repository, an apply or a discard, takes minutes).
    func request(_ method: String, _ path: String, body: JSONValue? = nil, timeoutSeconds: Int = 60) throws(ClientFailure) -> Reply {
        let socket: BlockingSocket
        do {
            socket = try BlockingSocket(host: address.host, port: address.port)
        } catch {
            throw ClientFailure.unreachable(address.url, error.message)
        }
        let payload = body.map { JSONWriter.serialize($0) } ?? []
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address.hostHeader)\r\nAuthorization: Bearer \(token)\r\n"
        head += "Connection: close\r\nAccept: application/json\r\n"
        if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        do {
            try socket.send(Array((head + "\r\n").utf8) + payload)
        } catch {
            throw ClientFailure.unreachable(address.url, error.message)
        }
        var parser = HTTPHeadParser(kind: .response)
        var response: HTTPHead?
        var received: [UInt8] = []
        while true {
            switch socket.receive(timeoutMilliseconds: Int32(timeoutSeconds * 1_000)) {
            case .bytes(let bytes):
                if response == nil {
                    switch parser.feed(bytes) {
                    case .success(let parsed?):
                        response = parsed
                        received = parser.remainder
                    case .success(nil):
                        continue
                    case .failure:
                        throw ClientFailure(message: "the server at \(address.url) did not answer in HTTP", exitCode: 8)
                    }
                } else {
                    received += bytes
                }
                guard received.count <= Self.maxBodyBytes else {
                    throw ClientFailure(message: "the server's answer is larger than \(Self.maxBodyBytes >> 20) MiB", exitCode: 8)
                }
                if let response, let length = response.headers["Content-Length"].flatMap({ Int($0) }), received.count >= length {
                    return try Self.reply(response, Array(received.prefix(length)))
                }
            case .timedOut:
                throw ClientFailure(message: "the server at \(address.url) did not answer within \(timeoutSeconds) s", exitCode: 8)
            case .closed:
                guard let response else { throw ClientFailure.serverGone }
                return try Self.reply(response, received)
            }
        }
    }

    private static func reply(_ head: HTTPHead, _ body: [UInt8]) throws(ClientFailure) -> Reply {
        let status = Int(head.target) ?? 0
        let json = body.isEmpty ? JSONValue.null : ((try? JSONParser.parse(body)) ?? .string(String(decoding: body, as: UTF8.self)))
        return Reply(status: status, headers: head.headers, body: json)
    }
}
