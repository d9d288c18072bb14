import EventLoop
import Foundation
import Glibc
import HTTPCore
import WebSocketCore

/// A blocking client over a plain socket: it can speak correct WebSocket or send anything.
public final class RawClient {
    public let fd: Int32
    public var connection = WebSocketConnection(role: .client)
    private var pending: [WebSocketConnection.Action] = []

    public init(port: Int, timeoutSeconds: Int = 5, receiveBufferBytes: Int? = nil) throws {
        fd = try connectLoopback(port: port, receiveTimeoutSeconds: timeoutSeconds, receiveBufferBytes: receiveBufferBytes)
    }

    deinit { close(fd) }

    public func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads once; nil on EOF, timeout or error.
    public func readSome() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? Array(buffer[0..<count]) : nil
    }

    /// Reads until the peer closes (or the timeout): true when it closed.
    public func readUntilClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }

    /// Performs the opening handshake; returns the response head.
    @discardableResult
    public func handshake(path: String = "/", extensions: String? = nil, headers: [(String, String)] = []) throws -> HTTPHead {
        let key = Handshake.makeKey()
        send(Handshake.clientRequest(host: "127.0.0.1", path: path, key: key, extensions: extensions, extraHeaders: headers))
        var parser = HTTPHeadParser(kind: .response)
        while true {
            guard let bytes = readSome() else { throw SystemError("handshake", errno: ETIMEDOUT) }
            if case .success(let head?) = parser.feed(bytes) {
                _ = try Handshake.validateServerResponse(head, key: key).get()
                pending += connection.receive(parser.remainder)
                return head
            }
        }
    }

    public func sendMessage(_ text: String) {
        send(connection.encodeMessage(Array(text.utf8), isText: true))
    }

    /// The next action from the server (messages, close, …).
    public func nextAction() -> WebSocketConnection.Action? {
        while pending.isEmpty {
            guard let bytes = readSome() else { return nil }
            pending += connection.receive(bytes).filter { if case .send = $0 { false } else { true } }
        }
        return pending.removeFirst()
    }

    public func nextMessage() -> String? {
        while let action = nextAction() {
            if case .deliver(let message) = action { return message.text ?? "<binary \(message.payload.count)>" }
        }
        return nil
    }
}
