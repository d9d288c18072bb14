import AgentCore
import Dispatch
import EventLoop
import WebSocketDeflate
import WebSocketServer

/// Reads and frames stored events off the loop: one thread of its own, so a viewer that
/// replays a million events, or a thousand viewers joining at once, never hold a loop turn
/// for longer than it takes to queue a finished slice. Results come back on the loop.
final class HistoryReader: @unchecked Sendable {
    /// Everything below is used on `queue` only.
    private let queue = DispatchQueue(label: "agentgate.history")
    private var readers: [String: EventLogReader] = [:]
    private let compressor = SharedMessage.makeSharedCompressor()
    /// Event files whose index is kept between reads (a reader per job being replayed).
    static let maxOpenReaders = 512

    struct Request: Sendable {
        var path: String
        var after: Int
        var maxBytes: Int
        var framing: EventWire.Framing
    }

    /// Reads `request` on the history thread and calls `completion` on `loop` with the slice
    /// framed for its viewer.
    func read(_ request: Request, loop: EventLoop, completion: @escaping (EventWire.Replay) -> Void) {
        let bound = LoopBound(completion)
        queue.async { [self] in
            let reader = self.reader(for: request.path)
            let slice = reader.slice(after: request.after, maxBytes: request.maxBytes)
            let replay = EventWire.replay(slice, framing: request.framing, compressor: self.compressor)
            loop.execute { bound.value(replay) }
        }
    }

    /// Forgets a deleted job's file.
    func forget(path: String) {
        queue.async { [self] in self.readers[path] = nil }
    }

    private func reader(for path: String) -> EventLogReader {
        if let reader = readers[path] { return reader }
        if readers.count >= Self.maxOpenReaders, let victim = readers.keys.randomElement() { readers[victim] = nil }
        let reader = EventLogReader(path: path)
        readers[path] = reader
        return reader
    }
}
