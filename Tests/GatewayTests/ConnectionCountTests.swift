import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// Every kind of stream gives its connection slot back when it closes.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct ConnectionCountTests {
    static func metric(_ gateway: RunningGateway, _ name: String) throws -> Int? {
        let text = try gateway.request("GET", "/metrics").body
        let line = text.split(separator: "\n").first { $0.hasPrefix("agentgate_\(name) ") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") }
    }

    @Test func tenThousandStreamsOfEachKindOpenedAndClosedLeaveNothingCounted() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let id = try launch(gateway, script: "echo hello")
        _ = StreamEndTests.waitForEnd(gateway, id)
        let auth = "Authorization: Bearer \(RunningGateway.token)\r\n"
        let kinds: [(name: String, request: String)] = [
            ("SSE job stream", "GET /api/agents/jobs/\(id)/stream?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\(auth)\r\n"),
            ("SSE all-jobs stream", "GET /api/agents/jobs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\(auth)\r\n"),
            ("WebSocket /ws", Self.upgrade("/ws", auth)),
            ("WebSocket /ws/jobs", Self.upgrade("/ws/jobs/\(id)?since=0", auth)),
        ]
        for kind in kinds {
            var opened = 0
            for _ in 0..<100 {
                // 100 open at once, then all closed by the client.
                var fds: [Int32] = []
                for _ in 0..<100 {
                    let fd = try connectLoopback(port: gateway.port)
                    sendText(fd, kind.request)
                    fds.append(fd)
                }
                for fd in fds {
                    var buffer = [UInt8](repeating: 0, count: 512)
                    if recv(fd, &buffer, buffer.count, 0) > 12, buffer[9] == UInt8(ascii: "2") || buffer[9] == UInt8(ascii: "1") { opened += 1 }
                    close(fd)
                }
            }
            #expect(opened == 10_000, "\(kind.name): \(opened) of 10,000 answered")
            #expect(gateway.openConnectionsAfterClosing(within: 10) == 0, "\(kind.name)")
        }
        #expect(try Self.metric(gateway, "sse_streams") == 0)
        #expect(try Self.metric(gateway, "websocket_connections") == 0)
        #expect(try Self.metric(gateway, "subscriptions") == 0)
        // The /metrics request itself is the one open connection.
        #expect(try Self.metric(gateway, "http_connections") == 1)
        #expect(try Self.metric(gateway, "connections_refused_total") == 0)
    }

    static func upgrade(_ path: String, _ auth: String) -> String {
        "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(auth)\r\n"
    }
}
