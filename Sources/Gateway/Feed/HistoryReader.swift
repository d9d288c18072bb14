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
    /// Jobs whose ready frames are kept open (two descriptors each, out of the reserve that
    /// jobs and the store share).
    static let maxOpenFrames = 32
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
        /// How ready frames serve it.
        let frames: ReplayFrames.Limits
        let framing: EventWire.Framing
        /// The job's last seq when it is finished and wholly stored: its ready frames
        /// (`ReplayFrames`) may serve the stream.
        let finishedAt: Int?
        fileprivate let deliver: LoopBound<(Stream, EventWire.Replay) -> Void>
        fileprivate let loop: EventLoop
        /// Used on the history queue only.
        fileprivate var after: Int
        fileprivate var credits = 0
        fileprivate var scheduled = false
        fileprivate var done = false

        fileprivate init(job: String, after: Int, maxBytes: Int, framing: EventWire.Framing, finishedAt: Int?, loop: EventLoop,
                         frames: ReplayFrames.Limits, deliver: @escaping (Stream, EventWire.Replay) -> Void) {
            self.job = job
            self.frames = frames
            self.finishedAt = finishedAt
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
    /// `finishedAt`: the job's last seq if it is finished and all of it is stored; then
    /// slices may come from its ready frames (`frames`).
    func stream(job: String, after: Int, maxBytes: Int, framing: EventWire.Framing, finishedAt: Int?, frames: ReplayFrames.Limits,
                loop: EventLoop, deliver: @escaping (Stream, EventWire.Replay) -> Void) -> Stream {
        Stream(job: job, after: after, maxBytes: maxBytes, framing: framing, finishedAt: finishedAt, loop: loop,
               frames: frames, deliver: deliver)
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
            let replay: EventWire.Replay
            if let frames = readyFrames(for: stream), let fromFrames = Self.replay(from: frames, after: stream.after, maxBytes: stream.frames.sliceBytes) {
                replay = fromFrames
            } else {
                let slice = reader(for: stream.job).slice(after: stream.after, maxBytes: stream.maxBytes, maxEvents: .max)
                replay = EventWire.replay(slice, framing: stream.framing, compressor: compressor)
            }
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

    /// Forgets a deleted job's reader and frames.
    func forget(job: String) {
        queue.async { [self] in
            self.readers[job] = nil
            self.frames[job] = nil
        }
    }

    // MARK: ready frames

    /// What is known of each job's ready frames (history queue only).
    private enum Frames {
        case ready(ReplayFrames)
        case building
        /// Not built for this last seq (a small log, a full disk, a damaged log).
        case unavailable(lastSeq: Int)
    }
    private var frames: [String: Frames] = [:]
    /// Builds frames one job at a time, beside the replays, at low priority.
    private let builder = DispatchQueue(label: "agentgate.history.frames")

    /// The ready frames that serve `stream` now, if any; starts building them for a finished
    /// job that has none (its later slices, and later viewers, are then sent from them).
    private func readyFrames(for stream: Stream) -> ReplayFrames? {
        guard let lastSeq = stream.finishedAt, ReplayFrames.serves(stream.framing) else { return nil }
        return frames(of: stream.job, lastSeq: lastSeq, minimumBytes: stream.frames.minimumLogBytes)
    }

    private func frames(of job: String, lastSeq: Int, minimumBytes: Int) -> ReplayFrames? {
        switch frames[job] {
        case .ready(let ready) where ready.lastSeq == lastSeq: return ready
        case .building: return nil
        case .unavailable(let seq) where seq == lastSeq: return nil
        default: break
        }
        guard let eventsPath = store.eventsFile(job: job) else { return nil }
        let directory = String(eventsPath[..<(eventsPath.lastIndex(of: "/") ?? eventsPath.endIndex)])
        if frames.count >= Self.maxOpenReaders, let victim = frames.keys.randomElement() { frames[victim] = nil }
        if let ready = ReplayFrames.open(directory: directory, eventsPath: eventsPath, lastSeq: lastSeq) {
            // Each holds two descriptors: few are kept open (slices on their way keep theirs).
            let open = frames.filter { if case .ready = $0.value { true } else { false } }
            if open.count >= Self.maxOpenFrames, let victim = open.keys.randomElement() { frames[victim] = nil }
            frames[job] = .ready(ready)
            return ready
        }
        frames[job] = .building
        builder.async { [self] in
            ThreadPriority.setNiceness(10)
            ReplayFrames.remove(directory: directory)
            let outcome = ReplayFrames.build(directory: directory, eventsPath: eventsPath, lastSeq: lastSeq, minimumBytes: minimumBytes)
            queue.async { [self] in
                guard case .building = frames[job] else { return }  // forgotten meanwhile
                frames[job] = outcome == .built ? nil : .unavailable(lastSeq: lastSeq)
            }
        }
        return nil
    }

    /// Prepares a finished job's frames ahead of its first late viewer.
    func prepareFrames(job: String, lastSeq: Int, minimumBytes: Int) {
        queue.async { [self] in _ = frames(of: job, lastSeq: lastSeq, minimumBytes: minimumBytes) }
    }

    /// A slice of ready frames, read into the page cache here so the loop's `sendfile`
    /// never waits for the disk; nil when the frames cannot serve it (the log does).
    private static func replay(from frames: ReplayFrames, after: Int, maxBytes: Int) -> EventWire.Replay? {
        var replay = EventWire.Replay()
        if after >= frames.lastSeq {
            replay.reachedEnd = true
            return replay
        }
        guard let slice = frames.slice(after: after, maxBytes: maxBytes) else { return nil }
        FileDescriptor.readAhead(frames.file.fd, range: slice.bytes)
        replay.file = (frames.file, slice.bytes)
        replay.first = slice.seqs.lowerBound
        replay.through = slice.seqs.upperBound
        replay.events = slice.frames
        replay.sawLast = slice.seqs.upperBound == frames.lastSeq
        replay.reachedEnd = replay.sawLast
        return replay
    }

    private func reader(for job: String) -> any JobEventReader {
        if let reader = readers[job] { return reader }
        if readers.count >= Self.maxOpenReaders, let victim = readers.keys.randomElement() { readers[victim] = nil }
        let reader = store.reader(job: job)
        readers[job] = reader
        return reader
    }
}
