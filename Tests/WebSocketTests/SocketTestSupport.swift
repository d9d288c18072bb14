import CSystemShims
import EventLoop
import Foundation
import Glibc
import HTTPCore
import Synchronization
import WebSocketCore
import WebSocketServer
import TestSupport

/// A WebSocket server on its own loop thread, for tests that talk to it over real sockets.
final class RunningServer: @unchecked Sendable {
    let loop: EventLoop
    let server: WebSocketServer
    let port: Int
    private let thread: Thread
    let overBoundCount = Atomic<Int>(0)

    init(_ configure: (inout WebSocketServer.Configuration) -> Void = { _ in }, setUp: (WebSocketServer) -> Void = { _ in }) throws {
        loop = try EventLoop()
        var configuration = WebSocketServer.Configuration()
        configure(&configuration)
        server = try EchoServer.make(loop: loop, configuration: configuration)
        setUp(server)
        try server.start()
        port = server.port
        let loop = self.loop
        thread = Thread { loop.run() }
        thread.start()
    }

    /// Runs `body` on the loop thread and waits for its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            result.withLock { $0 = body() }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    var sessionCount: Int {
        let server = LoopBound(self.server)
        return onLoop { server.value.sessions.count }
    }

    func stop() {
        let server = LoopBound(self.server)
        onLoop { server.value.stop() }
        loop.stop()
        while thread.isExecuting { usleep(1000) }
    }
}

/// A blocking client over a plain socket: it can speak correct WebSocket or send anything.
final class RawClient {
    let fd: Int32
    var connection = WebSocketConnection(role: .client)
    private var pending: [WebSocketConnection.Action] = []

    init(port: Int, timeoutSeconds: Int = 5) throws {
        fd = try connectLoopback(port: port, receiveTimeoutSeconds: timeoutSeconds)
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads once; nil on EOF, timeout or error.
    func readSome() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? Array(buffer[0..<count]) : nil
    }

    /// Reads until the peer closes (or the timeout): true when it closed.
    func readUntilClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }

    /// Performs the opening handshake; returns the response head.
    @discardableResult
    func handshake(path: String = "/", extensions: String? = nil) throws -> HTTPHead {
        let key = Handshake.makeKey()
        send(Handshake.clientRequest(host: "127.0.0.1", path: path, key: key, extensions: extensions))
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

    func sendMessage(_ text: String) {
        send(connection.encodeMessage(Array(text.utf8), isText: true))
    }

    /// The next action from the server (messages, close, …).
    func nextAction() -> WebSocketConnection.Action? {
        while pending.isEmpty {
            guard let bytes = readSome() else { return nil }
            pending += connection.receive(bytes).filter { if case .send = $0 { false } else { true } }
        }
        return pending.removeFirst()
    }

    func nextMessage() -> String? {
        while let action = nextAction() {
            if case .deliver(let message) = action { return message.text ?? "<binary \(message.payload.count)>" }
        }
        return nil
    }
}
