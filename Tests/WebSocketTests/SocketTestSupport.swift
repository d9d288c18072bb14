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
    private let runner: LoopThread
    let overBoundCount = Atomic<Int>(0)

    init(_ configure: (inout WebSocketServer.Configuration) -> Void = { _ in }, setUp: (WebSocketServer) -> Void = { _ in }) throws {
        loop = try EventLoop()
        var configuration = WebSocketServer.Configuration()
        configure(&configuration)
        server = try EchoServer.make(loop: loop, configuration: configuration)
        setUp(server)
        try server.start()
        port = server.port
        runner = LoopThread(loop)
    }

    /// Runs `body` on the loop thread and waits for its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        runner.onLoop(body)
    }

    var sessionCount: Int {
        let server = LoopBound(self.server)
        return onLoop { server.value.sessions.count }
    }

    func stop() {
        let server = LoopBound(self.server)
        onLoop { server.value.stop() }
        runner.stop()
    }
}

