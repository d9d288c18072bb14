import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport
import WebSocketCore
import WebSocketServer

@Suite(.serialized, .timeLimit(.minutes(1)))
struct LoopSocketTests {
    @Test func manyConnectionsAreServedByOneLoop() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let clients = try (0..<200).map { _ in try RawClient(port: server.port) }
        for client in clients { try client.handshake() }
        for (index, client) in clients.enumerated() { client.sendMessage("hello \(index)") }
        for (index, client) in clients.enumerated() {
            #expect(client.nextMessage() == "hello \(index)")
        }
        #expect(server.sessionCount == 200)
    }

    @Test func aPeerThatStopsReadingTripsTheQueueBoundAndOthersKeepGoing() throws {
        let trips = Counter()
        let server = try RunningServer({ $0.maxQueuedBytes = 256 * 1024 }) { server in
            server.onQueueOverBound = { session in
                // The owner's decision; here: note it and drop the connection.
                trips.value += 1
                #expect(session.tcp.queuedBytes > 256 * 1024)
                session.tcp.close()
            }
        }
        defer { server.stop() }
        let stalled = try RawClient(port: server.port)
        try stalled.handshake()
        var buffer = 4096
        setsockopt(stalled.fd, SOL_SOCKET, SO_RCVBUF, &buffer, socklen_t(MemoryLayout<Int>.size))
        let healthy = try RawClient(port: server.port)
        try healthy.handshake()

        // Ask for ~8 MiB of echoes and never read them.
        let chunk = String(repeating: "x", count: 60_000)
        for _ in 0..<140 { stalled.sendMessage(chunk) }
        // The other client is served meanwhile.
        for index in 0..<20 {
            healthy.sendMessage("ping \(index)")
            #expect(healthy.nextMessage() == "ping \(index)")
        }
        #expect(stalled.readUntilClosed())  // the server dropped it at the bound
        #expect(server.sessionCount == 1)
        let count = LoopBound(trips)
        #expect(server.onLoop { count.value.value } == 1)
    }

    @Test func aPeerThatDisconnectsMidFrameIsCleanedUp() throws {
        let server = try RunningServer()
        defer { server.stop() }
        do {
            let client = try RawClient(port: server.port)
            try client.handshake()
            let frame = FrameEncoder.encode(opcode: .text, payload: Array(String(repeating: "y", count: 1000).utf8), maskingKey: testKey)
            client.send(Array(frame.prefix(500)))
        }  // closed here, half a frame sent
        var waited = 0
        while server.sessionCount > 0, waited < 200 {
            usleep(10_000)
            waited += 1
        }
        #expect(server.sessionCount == 0)
        let next = try RawClient(port: server.port)
        try next.handshake()
        next.sendMessage("still here")
        #expect(next.nextMessage() == "still here")
    }

    @Test func aHalfClosedPeerStillGetsItsReplyBeforeTheServerCloses() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        try client.handshake()
        client.sendMessage("last words")
        shutdown(client.fd, Int32(SHUT_WR))  // EOF after the message, no close frame
        #expect(client.nextMessage() == "last words")
        #expect(client.readUntilClosed())
    }

    @Test func malformedUpgradesGetAnHTTPErrorAndTheServerKeepsServing() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let bad = try RawClient(port: server.port)
        bad.send(Array("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 7\r\n\r\n".utf8))
        let response = String(decoding: bad.readSome() ?? [], as: UTF8.self)
        #expect(response.hasPrefix("HTTP/1.1 426 Upgrade Required\r\n"))
        #expect(response.contains("Sec-WebSocket-Version: 13\r\n"))
        #expect(bad.readUntilClosed())
        let garbage = try RawClient(port: server.port)
        garbage.send(Array("\u{01}\u{02} nonsense\r\n\r\n".utf8))
        #expect(String(decoding: garbage.readSome() ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        let good = try RawClient(port: server.port)
        try good.handshake()
        good.sendMessage("ok")
        #expect(good.nextMessage() == "ok")
    }

    @Test func aSlowlorisHandshakeIsCutOffWith408() throws {
        let server = try RunningServer { $0.handshakeTimeoutMilliseconds = 200 }
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send(Array("GET / HTTP/1.1\r\nHost: x\r\n".utf8))
        #expect(String(decoding: client.readSome() ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 408 "))
    }

    @Test func heartbeatDropsAPeerThatNeverAnswersPings() throws {
        let server = try RunningServer {
            $0.pingIntervalMilliseconds = 100
            $0.pongTimeoutMilliseconds = 200
        }
        defer { server.stop() }
        let silent = try RawClient(port: server.port)
        try silent.handshake()
        let start = MonotonicClock.nanoseconds()
        var sawPing = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(silent.fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            if buffer[0] == 0x89 { sawPing = true }  // a ping we do not answer
        }
        let elapsed = (MonotonicClock.nanoseconds() - start) / 1_000_000
        #expect(sawPing)
        #expect(elapsed >= 250 && elapsed < 3_000, "dropped after \(elapsed) ms")

        // A client that answers (our client role does automatically) stays connected.
        let alive = try RawClient(port: server.port)
        try alive.handshake()
        for _ in 0..<5 {
            guard let bytes = alive.readSome() else { break }
            for case .send(let pong) in alive.connection.receive(bytes) { alive.send(pong) }
        }
        alive.sendMessage("still open")
        #expect(alive.nextMessage() == "still open")
    }

    @Test func aServerCloseWithoutReplyTimesOut() throws {
        let server = try RunningServer { $0.closeTimeoutMilliseconds = 200 }
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        try client.handshake()
        let sessions = LoopBound(server.server)
        server.onLoop { for session in sessions.value.sessions.values { session.close(.goingAway, reason: "bye") } }
        let start = MonotonicClock.nanoseconds()
        let closeFrame = client.readSome() ?? []
        #expect(closeFrame.first == 0x88)
        #expect(client.readUntilClosed())  // we never answered: the server hung up
        #expect((MonotonicClock.nanoseconds() - start) / 1_000_000 >= 150)
    }

    @Test func theSameSharedFrameReachesEveryConnection() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let plain = try RawClient(port: server.port)
        try plain.handshake()
        let compressed = try RawClient(port: server.port)
        compressed.connection = WebSocketConnection(role: .client, compressor: nil)
        let head = try compressed.handshake(extensions: "permessage-deflate; server_no_context_takeover")
        #expect(head.headers["Sec-WebSocket-Extensions"] == "permessage-deflate; server_no_context_takeover")
        // Give the client its decompressor now that deflate is negotiated.
        var parameters = WebSocketDeflate.DeflateParameters()
        parameters.serverNoContextTakeover = true
        compressed.connection = WebSocketConnection(role: .client, compressor: try WebSocketDeflate.PerMessageDeflate(parameters: parameters, role: .client))

        let bound = LoopBound(server.server)
        let frames = server.onLoop { () -> [Int] in
            let message = SharedMessage(payload: Array(String(repeating: "event ", count: 100).utf8), isText: true, compressor: SharedMessage.makeSharedCompressor())
            for session in bound.value.sessions.values { session.send(message) }
            return [message.plainFrame.count, message.compressedFrame?.count ?? 0]
        }
        #expect(frames[1] < frames[0] / 5)
        #expect(plain.nextMessage() == String(repeating: "event ", count: 100))
        #expect(compressed.nextMessage() == String(repeating: "event ", count: 100))
    }

    @Test func thePollBackendServesTheSameServer() throws {
        let loop = try EventLoop(backend: .poll)
        #expect(loop.backend == .poll)
        let server = try EchoServer.make(loop: loop, configuration: WebSocketServer.Configuration())
        try server.start()
        let port = server.port
        let result = Mutex<String?>(nil)
        let thread = Thread {
            do {
                let client = try RawClient(port: port)
                try client.handshake()
                client.sendMessage("via poll")
                let reply = client.nextMessage()
                result.withLock { $0 = reply ?? "no reply" }
            } catch {
                result.withLock { $0 = "client failed: \(error)" }
            }
            loop.execute {}  // wake the loop so it sees the result
        }
        thread.start()
        loop.run(untilMilliseconds: 5_000) { result.withLock { $0 != nil } }
        #expect(result.withLock { $0 } == "via poll")
        server.stop()
    }
}

/// Touched only on the server's loop thread.
final class Counter: @unchecked Sendable {
    var value = 0
}

import Synchronization
import WebSocketDeflate

/// The gateway's path: an HTTP server reads the request, then hands the upgrade over.
@Suite(.timeLimit(.minutes(1)))
struct AdoptedUpgradeTests {
    @Test func anUpgradeParsedElsewhereIsAdoptedAndServed() throws {
        let loop = try EventLoop()
        let websockets = try EchoServer.make(loop: loop, configuration: WebSocketServer.Configuration(), listening: false)
        #expect(websockets.listener == nil)
        var opened = 0
        websockets.onOpen = { _ in opened += 1 }
        let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0)
        var connections: [TCPConnection] = []
        listener.onAccept = { fd in
            let tcp = TCPConnection(loop: loop, fd: fd)
            connections.append(tcp)
            var parser = HTTPHeadParser()
            tcp.onRead = { bytes in
                if case .success(let head?) = parser.feed(bytes) {
                    websockets.adopt(tcp, request: head, remainder: parser.remainder)
                }
            }
            try? tcp.start()
        }
        try listener.start()
        let port = listener.port
        let reply = Mutex<String?>(nil)
        let thread = Thread {
            do {
                let client = try RawClient(port: port)
                try client.handshake()
                client.sendMessage("adopted")
                let message = client.nextMessage()
                reply.withLock { $0 = message ?? "no reply" }
            } catch {
                reply.withLock { $0 = "client failed: \(error)" }
            }
            loop.execute {}
        }
        thread.start()
        loop.run(untilMilliseconds: 5_000) { reply.withLock { $0 != nil } }
        #expect(reply.withLock { $0 } == "adopted")
        #expect(opened == 1)
        listener.close()
    }
}

import HTTPCore
