import Dispatch
import EventLoop

/// Runs git work off the event loop and hands each result back on the loop: one piece at a
/// time per repository (two `git worktree add`, or a merge and a discard, in one repository
/// at once would fight over its locks), repositories side by side, so a slow diff of a large
/// repository holds up neither the loop's viewers nor other repositories' jobs.
public final class WorktreeQueue {
    /// One repository's serial queue and how many pieces it holds (dropped at none).
    private final class Lane {
        let queue = DispatchQueue(label: "agentgate.worktrees")
        var pending = 0
    }

    private let loop: EventLoop
    private var lanes: [String: Lane] = [:]
    /// Pieces of work queued or running, all repositories (`/metrics`).
    public private(set) var pending = 0

    public init(loop: EventLoop) {
        self.loop = loop
    }

    /// Runs `work` after the earlier work of `repository`, on a thread of its own, then
    /// `then` with its result on the loop.
    public func perform<Value: Sendable>(
        in repository: String, _ work: @escaping @Sendable () -> Value, then: @escaping (Value) -> Void
    ) {
        let lane = lanes[repository] ?? Lane()
        lanes[repository] = lane
        lane.pending += 1
        pending += 1
        // Each through its own LoopBound: a tuple of them, taken apart in the closure, was
        // released once too often by this compiler (the queue was freed under its owner).
        let owner = LoopBound(self)
        let boundLane = LoopBound(lane)
        let finish = LoopBound(then)
        let loop = self.loop
        lane.queue.async {
            let value = work()
            loop.execute {
                owner.value.finished(repository, boundLane.value)
                finish.value(value)
            }
        }
    }

    private func finished(_ repository: String, _ lane: Lane) {
        pending -= 1
        lane.pending -= 1
        if lane.pending == 0, lanes[repository] === lane { lanes[repository] = nil }
    }
}
