import EventLoop
import Foundation
import Synchronization

/// An event loop running on a thread of its own, for tests that drive a server over real
/// sockets from the test's thread.
public final class LoopThread: @unchecked Sendable {
    public let loop: EventLoop
    private let thread: Thread

    /// Starts running `loop` (set it up first: the loop is confined to its thread from now on).
    public init(_ loop: EventLoop) {
        self.loop = loop
        thread = Thread { loop.run() }
        thread.start()
    }

    /// Runs `body` on the loop thread and waits for its result.
    @discardableResult
    public func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            result.withLock { $0 = body() }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    /// Stops the loop and waits for its thread to end.
    public func stop() {
        loop.stop()
        while thread.isExecuting { usleep(1000) }
    }
}
