import EventLoop
import Foundation
import Glibc
import HTTPCore
import Synchronization
import TestSupport
import Testing
import WebSocketServer

@testable import Gateway

/// An HTTP server on its own loop thread, answering `/hello` and echoing POST bodies.
final class RunningHTTPServer: @unchecked Sendable {
    let loop: EventLoop
    let server: HTTPServer
    let port: Int
    private let runner: LoopThread

    init(_ configure: (inout HTTPServer.Configuration) -> Void = { _ in }) throws {
        loop = try EventLoop()
        var configuration = HTTPServer.Configuration()
        configure(&configuration)
        server = try HTTPServer(loop: loop, configuration: configuration)
        server.handler = { request in
            switch (request.head.method, request.path) {
            case ("GET", "/hello"): .json(200, Array("{\"hello\":true}".utf8))
            case ("POST", "/echo"): .json(200, request.body)
            default: .error(404, code: "not_found", "no route for \(request.path)")
            }
        }
        server.websockets = try EchoServer.make(loop: loop, configuration: WebSocketServer.Configuration(), listening: false)
        try server.start()
        port = server.port
        runner = LoopThread(loop)
    }

    func stop() {
        runner.stop()
    }
}


@Suite(.timeLimit(.minutes(1)))
struct HTTPServerTests {
    @Test func pipelinedRequestsAreAnsweredInOrderOnOneConnection() throws {
        let server = try RunningHTTPServer()
        defer { server.stop() }
        let response = try exchange(
            port: server.port,
            "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let statuses = response.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "200", "404"])
        #expect(response.contains("{\"hello\":true}"))
        #expect(response.contains("\r\n\r\n{\"a\":1}"))
        #expect(response.contains("{\"error\":\"no route for /nope\",\"code\":\"not_found\"}"))
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nBad Header\r\n\r\n", "400 Bad Request"),
        ("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\n\r\n", "414 URI Too Long"),
        ("GET / HTTP/1.1\r\n" + (0..<101).map { "X-\($0): v\r\n" }.joined() + "\r\n", "431 Request Header Fields Too Large"),
        ("POST /echo HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", "413 Content Too Large"),
        ("POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400 Bad Request"),
        ("GET / HTTP/2.0\r\n\r\n", "505 HTTP Version Not Supported"),
    ])
    func malformedInputGetsAJSONErrorAndTheServerKeepsServing(_ request: String, _ status: String) throws {
        let server = try RunningHTTPServer()
        defer { server.stop() }
        let response = try exchange(port: server.port, request)
        #expect(response.hasPrefix("HTTP/1.1 \(status)\r\n"), "\(response.prefix(80))")
        #expect(response.contains("Content-Type: application/json"))
        #expect(response.contains("Connection: close"))
        #expect(try exchange(port: server.port, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n").contains("{\"hello\":true}"))
    }

    @Test func aTricklingClientGets408() throws {
        let server = try RunningHTTPServer { $0.requestTimeoutMilliseconds = 200 }
        defer { server.stop() }
        let response = try exchange(port: server.port, "GET /hello HTTP/1.1\r\nHost: x\r\n")
        #expect(response.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
    }

    @Test func anIdleKeepAliveConnectionIsClosedQuietly() throws {
        let server = try RunningHTTPServer { $0.idleTimeoutMilliseconds = 200 }
        defer { server.stop() }
        let response = try exchange(port: server.port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(!response.contains("408"))
    }

    @Test func aWebSocketUpgradeIsHandedToTheWebSocketServer() throws {
        let server = try RunningHTTPServer()
        defer { server.stop() }
        let fd = try connectLoopback(port: server.port)
        defer { close(fd) }
        let request = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        let head = String(decoding: buffer[0..<max(0, count)], as: UTF8.self)
        #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        #expect(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"))
        // A masked "hi" (zero key) comes back.
        _ = [UInt8]([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69]).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let echoed = recv(fd, &buffer, buffer.count, 0)
        #expect(Array(buffer[0..<max(0, echoed)]) == [0x81, 0x02, 0x68, 0x69])
    }
}
