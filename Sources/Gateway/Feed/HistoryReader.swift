import AgentCore
import Dispatch
import EventLoop
import WebSocketDeflate
import WebSocketServer

/// Reads and frames stored events off the loop: one thread of its own, so a viewer that
/// replays a million events, or a thousand viewers joining at once, never hold a loop turn
/// for longer than it takes to queue a finished slice. Results come back on the loop.
final class HistoryReader: @unchecked Sendable {
    private let store: any JobEventStore
    /// Everything below is used on `queue` only.
    private let queue = DispatchQueue(label: "agentgate.history")
    private var readers: [String: any JobEventReader] = [:]
    private let compressor = SharedMessage.makeSharedCompressor()
    /// Jobs whose reader (with its index) is kept between reads.
    static let maxOpenReaders = 512
    /// The history thread's nice value (10: well below the loop's 0).
    static let niceness: Int32 = 10

    init(store: any JobEventStore) {
        self.store = store
    }

    struct Request: Sendable {
        var job: String
        var after: Int
        var maxBytes: Int
        var framing: EventWire.Framing
    }

    /// Reads `request` on the history thread and calls `completion` on `loop` with the slice
    /// framed for its viewer.
    func read(_ request: Request, loop: EventLoop, completion: @escaping (EventWire.Replay) -> Void) {
        let bound = LoopBound(completion)
        queue.async { [self] in
            // Below the loop's priority: on a machine with few cores, the loop thread that
            // serves every client comes first; replay takes the time that is left.
            ThreadPriority.setNiceness(Self.niceness)
            let reader = self.reader(for: request.job)
            let slice = reader.slice(after: request.after, maxBytes: request.maxBytes, maxEvents: .max)
            let replay = EventWire.replay(slice, framing: request.framing, compressor: self.compressor)
            loop.execute { bound.value(replay) }
        }
    }

    /// Forgets a deleted job's reader.
    func forget(job: String) {
        queue.async { [self] in self.readers[job] = nil }
    }

    private func reader(for job: String) -> any JobEventReader {
        if let reader = readers[job] { return reader }
        if readers.count >= Self.maxOpenReaders, let victim = readers.keys.randomElement() { readers[victim] = nil }
        let reader = store.reader(job: job)
        readers[job] = reader
        return reader
    }
}
