import Dispatch
import EventLoop

/// Runs git work off the event loop, one piece at a time, and hands each result back on the
/// loop. One at a time: two `git worktree add` or a merge and a discard on one repository
/// at once would fight over its locks; and a slow diff never holds up the loop's viewers.
public final class WorktreeQueue {
    private let loop: EventLoop
    private let queue = DispatchQueue(label: "agentgate.worktrees")
    /// Pieces of work queued or running (for tests and `/metrics`).
    public private(set) var pending = 0

    public init(loop: EventLoop) {
        self.loop = loop
    }

    /// Runs `work` on the queue's thread, then `then` with its result on the loop.
    public func perform<Value: Sendable>(_ work: @escaping @Sendable () -> Value, then: @escaping (Value) -> Void) {
        pending += 1
        let done = LoopBound((self, then))
        let loop = self.loop
        queue.async {
            let value = work()
            loop.execute {
                done.value.0.pending -= 1
                done.value.1(value)
            }
        }
    }
}
