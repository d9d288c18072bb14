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

