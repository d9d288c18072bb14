import AgentCore
import Dispatch
import EventLoop
import WebSocketDeflate
import WebSocketServer

/// Reads and frames stored events off the loop: one thread of its own, so a viewer that
/// replays a million events, or a thousand viewers joining at once, never hold a loop turn
/// for longer than it takes to queue a finished slice. Results come back on the loop.
///
/// A replay is a `Stream`: slices read one after another from where the last one ended, as
/// many ahead of the viewer as the loop grants (credits), so the next slice is ready while
/// the loop writes this one; a viewer is never waiting for a loop turn between two slices.
final class HistoryReader: @unchecked Sendable {
    private let store: any JobEventStore
    /// Everything below is used on `queue` only.
    private let queue = DispatchQueue(label: "agentgate.history")
    private var readers: [String: any JobEventReader] = [:]
    private let compressor = SharedMessage.makeSharedCompressor()
    /// Jobs whose reader (with its index) is kept between reads.
    static let maxOpenReaders = 512
    /// The history thread's nice value: the loop's (0) while one or two viewers replay, so a
    /// late viewer reads at full speed beside live traffic; well below it (10) for a crowd,
    /// whose reads would otherwise take the cores the loop needs to serve everyone.
    static func niceness(streamsWaiting: Int) -> Int32 { streamsWaiting > 2 ? 10 : 0 }
    /// Streams with a slice queued (history queue only).
    private var streamsWaiting = 0

    init(store: any JobEventStore) {
        self.store = store
    }

    /// One viewer's replay of one job. Its position and credits live on the history queue;
    /// the loop only grants credits and cancels.
    final class Stream: @unchecked Sendable {
        let job: String
        let maxBytes: Int
        let framing: EventWire.Framing
        fileprivate let deliver: LoopBound<(Stream, EventWire.Replay) -> Void>
        fileprivate let loop: EventLoop
        /// Used on the history queue only.
        fileprivate var after: Int
        fileprivate var credits = 0
        fileprivate var scheduled = false
        fileprivate var done = false

        fileprivate init(job: String, after: Int, maxBytes: Int, framing: EventWire.Framing, loop: EventLoop, deliver: @escaping (Stream, EventWire.Replay) -> Void) {
            self.job = job
            self.after = after
            self.maxBytes = maxBytes
            self.framing = framing
            self.loop = loop
            self.deliver = LoopBound(deliver)
        }
    }

    /// A replay of `job` after seq `after`, each slice (at most about `maxBytes`) framed for
    /// `framing` and handed to `deliver` on `loop`, in order. Nothing is read before a grant.
    /// The stream stops by itself after a slice that `isLast`.
    func stream(job: String, after: Int, maxBytes: Int, framing: EventWire.Framing, loop: EventLoop,
                deliver: @escaping (Stream, EventWire.Replay) -> Void) -> Stream {
        Stream(job: job, after: after, maxBytes: maxBytes, framing: framing, loop: loop, deliver: deliver)
    }

    /// Lets `stream` read `slices` more slices ahead.
    func grant(_ stream: Stream, slices: Int) {
        queue.async { [self] in
            stream.credits += slices
            schedule(stream)
        }
    }

    /// Stops `stream`: nothing more is read for it (slices already on their way still arrive).
    func cancel(_ stream: Stream) {
        queue.async { stream.done = true }
    }

    /// One slice per queue item, so a thousand streams take turns.
    private func schedule(_ stream: Stream) {
        guard !stream.scheduled, !stream.done, stream.credits > 0 else { return }
        stream.scheduled = true
        streamsWaiting += 1
        queue.async { [self] in
            stream.scheduled = false
            streamsWaiting -= 1
            guard !stream.done, stream.credits > 0 else { return }
            stream.credits -= 1
            // Set per slice: the queue's items may run on any of dispatch's threads.
            ThreadPriority.setNiceness(Self.niceness(streamsWaiting: streamsWaiting + 1))
            let slice = reader(for: stream.job).slice(after: stream.after, maxBytes: stream.maxBytes, maxEvents: .max)
            let replay = EventWire.replay(slice, framing: stream.framing, compressor: compressor)
            if replay.isLast {
                stream.done = true
            } else {
                stream.after = max(stream.after, replay.through ?? 0, replay.gap?.upperBound ?? 0)
            }
            let deliver = stream.deliver
            stream.loop.execute { deliver.value(stream, replay) }
            schedule(stream)
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
