import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketServer

/// The credential a WebSocket upgrade was admitted with, hung on its session
/// (`WebSocketSession.userInfo`) for the hub to keep.
final class AdmittedPrincipal {
    let principal: Gateway.Principal

    init(_ principal: Gateway.Principal) {
        self.principal = principal
    }
}

/// Job events to viewers: WebSocket connections with many subscriptions each, and SSE
/// streams (one job, or every job). Many viewers per job, each able to resume after the last
/// event it saw.
///
/// ```
///  JobManager emit ─▶ observer(event, bytes) ─▶ encoded once per format (WebSocket frames
///                                              framed and compressed once, SSE bytes once)
///                                                 └▶ every current viewer of that job ("*": lifecycle; all-jobs SSE: all)
///  subscribe {since: N} ─▶ JobCursor behind ─▶ HistoryReader (its own thread): a slice of the
///                          event file from the index, framed for the viewer ─▶ queued ─▶ … ─▶ current: live
///  queue over its bound ─▶ ViewerPacing paused ─▶ drained ─▶ caught up from the file ─▶ live
///                          └─ still paused after its lag timeout ─▶ unsent dropped, "lagged" + close 4008
///  the job's last event queued (streams that end with their job) ─▶ normal close once it is read
/// ```
///
/// The decisions are made by two small state machines with no I/O, `JobCursor` (what a viewer
/// of a job is sent next) and `ViewerPacing` (pause, lag and the deadlines of a connection);
/// this class carries them out on the loop that runs the jobs. Replay and live delivery of a
/// job never interleave for one viewer: nothing is lost or sent twice.
public final class SubscriptionHub {
    /// Close code for a viewer that stayed too far behind (resume with `since`).
    public static let laggedCloseCode = CloseCode(4008)
    /// Close code for a connection whose credential ended: signed out, expired, or the token
    /// rotated. Reconnecting needs a new one.
    public static let credentialEndedCloseCode = CloseCode(4401)
    /// Subscriptions one WebSocket connection may hold (more get `too_many_subscriptions`).
    public var maxSubscriptionsPerConnection = 1_000
    /// Events of all jobs kept for all-jobs SSE streams that reconnect (`Last-Event-ID`):
    /// at most 16,384 and 32 MiB (their bytes and encodings), and only while such a stream
    /// is attached or left less than a minute ago. The one ring of events in memory: a job's
    /// own viewers catch up from its event file.
    static let allJobsRingCapacity = 16_384
    static let allJobsRingBytes = 32 << 20
    /// Events replayed per catch-up step of an all-jobs stream (from memory).
    static let allJobsReplayBatch = 2_000
    /// Bytes of stored events read and framed per replay step (128 KiB): a viewer that
    /// catches up holds at most one such slice beyond its queue, and the loop queues a slice
    /// in one append.
    public var replaySliceBytes = 128 * 1024
    /// Comment lines on idle SSE streams, so proxies and clients keep them open (15 s).
    public var heartbeatMilliseconds = 15_000
    /// Least time between two `"*"` snapshots to one connection (250 ms). A client that
    /// repeats subscribe "*" gets every ack at once and one snapshot for all the requests
    /// of an interval: a flood of them costs the loop acks, not snapshots of every job.
    public var snapshotIntervalMilliseconds = 250
    /// How long a viewer may stay paused, or leave the end of its stream unread, before it
    /// is told it lagged; and how long it then has to read that before it is cut.
    var timeouts = ViewerPacing.Timeouts()
    /// A paused viewer's time to read again before it is told it lagged (30 s).
    public var lagTimeoutMilliseconds: Int {
        get { timeouts.lagMilliseconds }
        set { timeouts.lagMilliseconds = newValue }
    }
    /// A finished stream's time to be read before the viewer is told it lagged (30 s).
    public var finishTimeoutMilliseconds: Int {
        get { timeouts.finishMilliseconds }
        set { timeouts.finishMilliseconds = newValue }
    }

    public let manager: JobManager
    public let websockets: WebSocketServer
    private let history: HistoryReader
    private var viewers: [ObjectIdentifier: Viewer] = [:]
    /// The subscriptions of each job: an event touches only its job's viewers, with no
    /// per-viewer dictionary work.
    private var channels: [String: [Subscription]] = [:]
    /// Viewers of every job's lifecycle (`"*"`), and all-jobs SSE streams.
    private var lifecycleViewers: [ObjectIdentifier: Viewer] = [:]
    private var allJobsViewers: [ObjectIdentifier: Viewer] = [:]
    private var recentAll = RecentEvents(capacity: SubscriptionHub.allJobsRingCapacity, maxBytes: SubscriptionHub.allJobsRingBytes)
    /// Whether every job's events are kept for all-jobs streams: while one is attached, and
    /// for a minute after the last one left (so it can reconnect and resume).
    private var recordingAllJobs = false
    private var stopRecordingTimer: EventLoop.TimerID?
    private var compressor = SharedMessage.makeSharedCompressor()
    private var heartbeat: EventLoop.TimerID?
    /// The snapshot of every job at `manager.version`, encoded once for every viewer that
    /// asks before the next event (dropped by that event).
    private var snapshotCache: SharedMessage?

    public init(manager: JobManager, websockets: WebSocketServer) {
        self.manager = manager
        self.websockets = websockets
        history = HistoryReader(store: manager.store.events)
        manager.addObserver { [unowned self] event, bytes in self.deliver(event, bytes) }
        manager.addPartialObserver { [unowned self] job, _, bytes in self.deliverPartial(job, bytes) }
        websockets.onOpen = { [unowned self] session in self.opened(session) }
        websockets.onMessage = { [unowned self] session, message in self.received(session, message) }
        websockets.onClose = { [unowned self] session in self.remove(ObjectIdentifier(session.tcp)) }
        websockets.onQueueOverBound = { [unowned self] session in self.overBound(ObjectIdentifier(session.tcp)) }
        websockets.onDrained = { [unowned self] session in self.drained(ObjectIdentifier(session.tcp)) }
    }

    // MARK: figures (for /metrics)

    public var viewerCount: Int { viewers.count }
    public var streamViewerCount: Int { viewers.values.count { $0.isStream } }
    public var subscriptionCount: Int {
        channels.values.reduce(0) { $0 + $1.count } + lifecycleViewers.count + allJobsViewers.count
    }
    /// Times a viewer's live delivery paused because its queue was full (a slow consumer).
    public private(set) var pauses = 0
    /// Viewers closed with `lagged` after staying paused too long.
    public private(set) var laggedCloses = 0
    /// Event messages queued to viewers, and their bytes on the wire.
    public private(set) var eventsSent = 0
    public private(set) var bytesSent = 0
    /// Viewers with a history slice being read now.
    public var readsInFlight: Int { viewers.values.count { $0.readInFlight } }
    /// Bytes waiting in viewers' outbound queues now.
    public var queuedBytes: Int { viewers.values.reduce(0) { $0 + $1.tcp.queuedBytes } }

    private func remove(_ key: ObjectIdentifier) {
        guard let viewer = viewers.removeValue(forKey: key) else { return }
        viewer.pacing.closed()
        for job in Array(viewer.subscriptions.keys) { detach(viewer, from: job) }
        if let timer = viewer.snapshotTimer { manager.loop.cancel(timer) }
        if let timer = viewer.wakeTimer { manager.loop.cancel(timer) }
        lifecycleViewers[key] = nil
        if allJobsViewers.removeValue(forKey: key) != nil, allJobsViewers.isEmpty {
            stopRecordingTimer = manager.loop.schedule(afterMilliseconds: 60_000) { [weak self] in
                guard let self, self.allJobsViewers.isEmpty else { return }
                self.recordingAllJobs = false
                self.recentAll.removeAll()
            }
        }
    }

    /// Takes a viewer's subscription to a job out of the job's channel.
    private func detach(_ viewer: Viewer, from job: String) {
        guard let subscription = viewer.subscriptions.removeValue(forKey: job) else { return }
        channels[job]?.removeAll { $0 === subscription }
        if channels[job]?.isEmpty == true { channels[job] = nil }
    }

    // MARK: pace

    private func overBound(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key], viewer.pacing.isFlowing else { return }
        pauses += 1
        viewer.pacing.overBound(now: MonotonicClock.milliseconds())
        scheduleWake(viewer)
    }

    private func drained(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key] else { return }
        viewer.pacing.drained()
        scheduleWake(viewer)
        catchUp(viewer)
        sendWantedSnapshot(viewer)
    }

    /// Arms the timer for the pacing's next deadline.
    private func scheduleWake(_ viewer: Viewer) {
        let at = viewer.pacing.wakeAt
        guard at != viewer.wakeAt else { return }
        if let timer = viewer.wakeTimer { manager.loop.cancel(timer) }
        viewer.wakeTimer = nil
        viewer.wakeAt = at
        guard let at else { return }
        viewer.wakeTimer = manager.loop.schedule(afterMilliseconds: max(0, at - MonotonicClock.milliseconds())) {
            [weak self, weak viewer] in
            guard let self, let viewer else { return }
            viewer.wakeTimer = nil
            viewer.wakeAt = nil
            self.tick(viewer)
        }
    }

    private func tick(_ viewer: Viewer) {
        switch viewer.pacing.tick(now: MonotonicClock.milliseconds()) {
        case .none: break
        case .lag: lag(viewer)
        case .cut: viewer.tcp.close()
        }
        scheduleWake(viewer)
    }

    /// The end of a stream that ends with its job: closed normally once what is queued has
    /// been read (however slowly, up to the pacing's deadline).
    private func end(_ viewer: Viewer) {
        viewer.pacing.ending(now: MonotonicClock.milliseconds())
        scheduleWake(viewer)
        viewer.tcp.whenFlushed { [weak viewer] in
            guard let viewer, case .ending = viewer.pacing.phase else { return }
            switch viewer.transport {
            case .websocket(let session): session.close(.normalClosure, reason: "job ended", afterQueued: true)
            case .sse(let tcp): tcp.closeAfterFlush()
            }
        }
    }

    /// Too far behind: what is queued and unsent is dropped (whole messages: the one being
    /// written is finished), and the viewer is told where each of its cursors stands, so it
    /// can resume with `since`; then a 4008 close. It goes out right behind the bytes already
    /// in flight, so even a viewer that reads again much later sees it before anything else.
    private func lag(_ viewer: Viewer) {
        laggedCloses += 1
        let dropped: [OutboundBuffer]
        switch viewer.transport {
        case .websocket(let session): dropped = session.dropUnsent()
        case .sse(let tcp): dropped = tcp.dropUnsent()
        }
        // The last event of each stream that is still delivered: before the first one dropped.
        var firstDropped: [String: Int] = [:]
        for buffer in dropped {
            guard let label = buffer.label else { continue }
            firstDropped[label.stream] = min(firstDropped[label.stream] ?? .max, label.events.lowerBound)
        }
        for (job, subscription) in viewer.subscriptions.sorted(by: { $0.key < $1.key }) {
            let seq = firstDropped[job].map { $0 - 1 } ?? subscription.cursor.lastSent
            sendControl(viewer, .object(["type": "lagged", "job": .string(job), "seq": .int(seq)]))
        }
        if let cursor = viewer.allCursor {
            let version = firstDropped[Self.allJobsStream].map { $0 - 1 } ?? cursor
            sendControl(viewer, .object(["type": "lagged", "version": .int(version)]))
        }
        switch viewer.transport {
        case .websocket(let session): session.close(Self.laggedCloseCode, reason: "too far behind; resume with since", afterQueued: true)
        case .sse(let tcp): tcp.closeAfterFlush()
        }
    }

    /// The label of the all-jobs stream's buffers (its events are numbered by version).
    static let allJobsStream = "*"

    // MARK: credentials

    /// The sessions that open streams and WebSockets were opened with (their keys).
    public func sessionKeysInUse() -> Set<String> {
        var keys = Set<String>()
        for viewer in viewers.values {
            if case .session(let key) = viewer.principal { keys.insert(key) }
        }
        return keys
    }

    /// Ends the streams and WebSockets opened with a credential that no longer holds
    /// (WebSocket close 4401 with `reason`; an SSE stream closes, and its reconnect gets 401).
    public func endConnections(reason: String, where ended: (Gateway.Principal) -> Bool) {
        for viewer in Array(viewers.values) where ended(viewer.principal) {
            // Not one more event, even to a client that reads slowly: its subscriptions go
            // now, and a stream's unsent bytes are dropped.
            remove(ObjectIdentifier(viewer.tcp))
            switch viewer.transport {
            case .websocket(let session): session.close(Self.credentialEndedCloseCode, reason: reason)
            case .sse(let tcp): tcp.close()
            }
        }
    }

    // MARK: WebSocket connections

    private func opened(_ session: WebSocketSession) {
        // Set by the gateway when it admitted the upgrade; a session without one is closed.
        guard let admitted = session.userInfo as? AdmittedPrincipal else {
            return session.close(Self.credentialEndedCloseCode, reason: "not authenticated")
        }
        session.userInfo = nil  // the viewer keeps it from here
        let viewer = Viewer(transport: .websocket(session), principal: admitted.principal, timeouts: timeouts)
        let key = ObjectIdentifier(session.tcp)
        viewers[key] = viewer
        session.tcp.onFlushed = { [unowned self] in self.flushed(key) }
        guard let request = session.request else { return }
        let path = request.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let parts = path.split(separator: "/").map(String.init)
        // /ws/jobs/{id}?format=text|json&since=N: one job, then close when it ends.
        if parts.count == 3, parts[0] == "ws", parts[1] == "jobs" {
            let query = Gateway.query(request.target)
            viewer.format = query["format"] == "json" ? .json : .text
            viewer.closesWhenJobEnds = true
            subscribe(viewer, job: parts[2], since: Gateway.nonNegative(query["since"], default: 0) ?? 0, rawEvents: false, request: nil)
        }
    }

    private func received(_ session: WebSocketSession, _ message: WebSocketConnection.Message) {
        guard let viewer = viewers[ObjectIdentifier(session.tcp)] else { return }
        let (parsed, request) = ViewerCommand.parse(message.payload, isText: message.isText)
        let commands = JobCommands(manager: manager)
        do throws(APIError) {
            switch try parsed.get() {
            case .subscribe(let job, let since, let rawEvents):
                guard viewer.subscriptions[job] != nil || viewer.subscriptions.count < maxSubscriptionsPerConnection else {
                    throw APIError(400, "too_many_subscriptions", "at most \(maxSubscriptionsPerConnection) subscriptions per connection")
                }
                subscribe(viewer, job: job, since: since, rawEvents: rawEvents, request: request)
            case .unsubscribe(let job):
                if job == "*" {
                    lifecycleViewers[ObjectIdentifier(viewer.tcp)] = nil
                    viewer.snapshotWanted = false
                } else {
                    detach(viewer, from: job)
                }
                sendControl(viewer, Self.ack(request, [.init("job", .string(job))]))
            case .launch(let fields):
                sendControl(viewer, Self.ack(request, [.init("job", try commands.launch(fields).summaryJSON)]))
            case .kill(let job):
                if job == "*" { return sendControl(viewer, Self.ack(request, [.init("killed", .int(commands.killAll()))])) }
                _ = try commands.kill(job)
                sendControl(viewer, Self.ack(request, [.init("job", .string(job))]))
            }
        } catch {
            sendControl(viewer, error.message(request: request))
        }
    }

    // MARK: SSE streams

    /// Serves one job's events as `text/event-stream` on a connection whose response head is
    /// queued: events after `since` (the `Last-Event-ID`), then live, then the connection
    /// closes after `job:completed`. The job must exist.
    public func attachJobStream(_ tcp: TCPConnection, job: String, since: Int, rawEvents: Bool, principal: Gateway.Principal) {
        let viewer = attachStream(tcp, format: .sse, principal: principal)
        viewer.closesWhenJobEnds = true
        subscribe(viewer, job: job, since: since, rawEvents: rawEvents, request: nil)
    }

    /// Serves every job's events: a snapshot, then each event with the manager's version as
    /// its id. A client that reconnects with a `Last-Event-ID` still in memory resumes
    /// exactly; an older one gets `reset` and a fresh snapshot.
    public func attachAllJobsStream(_ tcp: TCPConnection, lastEventID: Int?, rawEvents: Bool, principal: Gateway.Principal) {
        let viewer = attachStream(tcp, format: .sseAll, principal: principal)
        viewer.allRawEvents = rawEvents
        allJobsViewers[ObjectIdentifier(tcp)] = viewer
        recordingAllJobs = true
        if let stopRecordingTimer { manager.loop.cancel(stopRecordingTimer) }
        stopRecordingTimer = nil
        if let lastEventID, lastEventID <= manager.version, recentAll.after(lastEventID, limit: 0) != nil || lastEventID == manager.version {
            viewer.allCursor = lastEventID
            catchUpAll(viewer)
        } else {
            if lastEventID != nil { sendControl(viewer, .object(["type": "reset", "version": .int(manager.version)])) }
            sendSnapshot(viewer)
        }
    }

    /// Whether a job's stream would have nothing more to say to a client at `since` (the
    /// job ended and it saw the end): such a reconnect is answered 204, which tells an
    /// EventSource to stop reconnecting.
    public func streamIsFinished(job: Job, since: Int) -> Bool {
        job.status.isFinished && since >= job.lastSeq
    }

    private func attachStream(_ tcp: TCPConnection, format: EventWire.Format, principal: Gateway.Principal) -> Viewer {
        let viewer = Viewer(transport: .sse(tcp), principal: principal, timeouts: timeouts)
        viewer.format = format
        let key = ObjectIdentifier(tcp)
        viewers[key] = viewer
        tcp.maxQueuedBytes = websockets.configuration.maxQueuedBytes
        tcp.onRead = { _ in }  // a stream's client has nothing more to say
        tcp.onPeerClosed = { [unowned tcp] in tcp.close() }
        tcp.onClose = { [unowned self] in self.remove(key) }
        tcp.onQueueOverBound = { [unowned self] in self.overBound(key) }
        tcp.onDrained = { [unowned self] in self.drained(key) }
        tcp.onFlushed = { [unowned self] in self.flushed(key) }
        tcp.enqueue(ServerSentEvents.retry(milliseconds: 2_000))
        scheduleHeartbeat()
        return viewer
    }

    private func scheduleHeartbeat() {
        guard heartbeat == nil else { return }
        heartbeat = manager.loop.schedule(afterMilliseconds: heartbeatMilliseconds) { [weak self] in
            guard let self else { return }
            self.heartbeat = nil
            let bytes = OutboundBuffer(ServerSentEvents.heartbeat())
            var any = false
            for viewer in self.viewers.values where viewer.isStream {
                any = true
                if viewer.pacing.isFlowing { viewer.tcp.enqueue(bytes) }
            }
            if any { self.scheduleHeartbeat() }
        }
    }

    /// An all-jobs stream's snapshot, with the version as its event id.
    private func sendSnapshot(_ viewer: Viewer) {
        viewer.allCursor = manager.version
        sendSnapshotNow(viewer)
    }

    /// `{"type":"snapshot","jobs":[…],"version":N}`, built once per version.
    private var snapshot: SharedMessage {
        if let snapshotCache { return snapshotCache }
        let value: JSONValue = .object(["type": "snapshot", "jobs": .array(manager.jobs.map(\.summaryJSON)), "version": .int(manager.version)])
        let message = SharedMessage(payload: JSONWriter.serialize(value), isText: true, compressor: compressor)
        snapshotCache = message
        return message
    }

    /// Queues the current snapshot: a text message on a WebSocket, an event with the version
    /// as its id on an SSE stream.
    private func sendSnapshotNow(_ viewer: Viewer) {
        let message = snapshot
        switch viewer.transport {
        case .websocket(let session):
            _ = session.send(message)
        case .sse(let tcp):
            tcp.enqueue(EventWire.sseEvent(id: manager.version, type: "snapshot", data: message.payload))
        }
    }

    /// Sends a `"*"` viewer the snapshot it asked for, unless it got one less than
    /// `snapshotIntervalMilliseconds` ago: then one timer sends it when the interval ends,
    /// newer than every request it answers. Nothing is queued while the viewer is paused
    /// (its queue is full); `drained` calls this again.
    private func sendWantedSnapshot(_ viewer: Viewer) {
        guard viewer.snapshotWanted, viewer.snapshotTimer == nil, viewer.pacing.isFlowing else { return }
        let now = MonotonicClock.milliseconds()
        if let last = viewer.snapshotSentAt, now - last < snapshotIntervalMilliseconds {
            viewer.snapshotTimer = manager.loop.schedule(afterMilliseconds: last + snapshotIntervalMilliseconds - now) {
                [weak self, weak viewer] in
                guard let self, let viewer else { return }
                viewer.snapshotTimer = nil
                self.sendWantedSnapshot(viewer)
            }
            return
        }
        viewer.snapshotWanted = false
        viewer.snapshotSentAt = now
        sendSnapshotNow(viewer)
    }

    // MARK: subscriptions

    private func subscribe(_ viewer: Viewer, job: String, since: Int, rawEvents: Bool, request: JSONValue?) {
        if job == "*" {
            lifecycleViewers[ObjectIdentifier(viewer.tcp)] = viewer
            sendControl(viewer, Self.ack(request, [.init("job", "*")]))
            viewer.snapshotWanted = true
            sendWantedSnapshot(viewer)
            return
        }
        guard let current = manager.job(job) else {
            sendControl(viewer, APIError.unknownJob(job).message(request: request))
            if viewer.closesWhenJobEnds { viewer.closeNow(.policyViolation, reason: "unknown job") }
            return
        }
        if JobCursor.isReset(since: since, lastSeq: current.lastSeq) {
            // A cursor from the future (another server, a wiped store): say so, restart at the end.
            sendControl(viewer, .object(["type": "reset", "job": .string(job), "seq": .int(current.lastSeq)]))
        }
        detach(viewer, from: job)
        let cursor = JobCursor(since: since, lastSeq: current.lastSeq, endsWithJob: viewer.closesWhenJobEnds)
        let subscription = Subscription(job: job, cursor: cursor, rawEvents: rawEvents, viewer: viewer)
        viewer.subscriptions[job] = subscription
        channels[job, default: []].append(subscription)
        if viewer.format == .json, request != nil || !viewer.closesWhenJobEnds {
            sendControl(viewer, Self.ack(request, [.init("job", .string(job)), .init("seq", .int(subscription.cursor.lastSent))]))
        }
        if subscription.cursor.endIfFinished(jobEnded: current.status.isFinished, lastSeq: current.lastSeq) {
            return end(viewer)
        }
        if subscription.cursor.state == .current { sendPartial(subscription) }
        pump(viewer)
    }

    /// Catches a viewer up after a pause: its all-jobs stream from memory, its job cursors
    /// from the event files.
    private func catchUp(_ viewer: Viewer) {
        if viewer.allCursor != nil { catchUpAll(viewer) }
        pump(viewer)
    }

    private func flushed(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key] else { return }
        pump(viewer)
    }

    /// Starts the next history read for a viewer that is behind on some job, when it is
    /// flowing, has no read out and little queued: one slice at a time, each asked for when
    /// the previous one is nearly written, so a replay runs at the pace the viewer reads.
    private func pump(_ viewer: Viewer) {
        guard viewer.pacing.isFlowing, !viewer.readInFlight, viewer.tcp.isOpen,
            viewer.tcp.queuedBytes < replaySliceBytes
        else { return }
        let behind = viewer.subscriptions.values.filter { $0.cursor.state == .behind }
        guard !behind.isEmpty else { return }
        // The files then hold every event written so far: a slice that ends before that has
        // lost some. A cursor at the end of what is stored waits for more (a disk that
        // refuses writes): the next event of its job calls this again.
        manager.flushLogs()
        guard let subscription = behind.filter({ $0.cursor.lastSent < manager.storedLastSeq(of: $0.job) }).min(by: { $0.job < $1.job }),
            let after = subscription.cursor.nextRead()
        else { return replayUnstored(viewer, behind) }
        let stored = manager.storedLastSeq(of: subscription.job)
        viewer.readInFlight = true
        let request = HistoryReader.Request(
            job: subscription.job, after: after, maxBytes: replaySliceBytes,
            framing: viewer.framing(rawEvents: subscription.rawEvents))
        history.read(request, loop: manager.loop) { [weak self, weak viewer] replay in
            guard let self, let viewer else { return }
            viewer.readInFlight = false
            self.replayed(replay, stored: stored, to: viewer, subscription)
        }
    }

    /// A slice read for a viewer: queued as it is (one buffer), then the cursor moves on.
    /// `stored`: the job's last seq in its file when the read was asked for.
    private func replayed(_ replay: EventWire.Replay, stored: Int, to viewer: Viewer, _ subscription: Subscription) {
        guard viewers[ObjectIdentifier(viewer.tcp)] === viewer, viewer.subscriptions[subscription.job] === subscription,
            viewer.pacing.isOpen
        else { return pump(viewer) }
        guard let job = manager.job(subscription.job) else { return }
        if let gap = replay.gap { sendGap(viewer, job: job.id, gap) }
        write(replay, job: job.id, to: viewer)
        var through = replay.through
        var gap: ClosedRange<Int>?
        var sawLast = replay.sawLast
        let lastSent = max(subscription.cursor.lastSent, replay.gap?.upperBound ?? 0, through ?? 0)
        if replay.through == nil, replay.gap == nil, replay.reachedEnd, lastSent < stored {
            // The file ends before what was written to it: events were lost (a damaged or
            // missing file). Said, never skipped in silence; a finished job's stream still
            // ends with its `job:completed`.
            if job.status.isFinished, stored == job.lastSeq {
                if lastSent + 1 <= job.lastSeq - 1 {
                    gap = (lastSent + 1)...(job.lastSeq - 1)
                    sendGap(viewer, job: job.id, gap!)
                }
                let completed = JobEvent(jobId: job.id, seq: job.lastSeq, time: job.endedAt ?? WallClock.milliseconds(), payload: .completed(job))
                var shared = SharedEncodings()
                write(completed, completed.encoded(), version: nil, to: viewer, shared: &shared)
                through = job.lastSeq
                sawLast = true
            } else {
                gap = (lastSent + 1)...stored
                sendGap(viewer, job: job.id, gap!)
            }
        }
        switch subscription.cursor.replayed(through: through, gap: replay.gap ?? gap, sawLast: sawLast, lastSeq: job.lastSeq) {
        case .ended: return end(viewer)
        case .current: sendPartial(subscription)
        case .behind: break
        }
        pump(viewer)
    }

    /// While the disk refuses writes, a viewer at the end of what is stored gets the newer
    /// events from memory (a slice per call), so it sees the job stop and why.
    private func replayUnstored(_ viewer: Viewer, _ behind: [Subscription]) {
        for subscription in behind.sorted(by: { $0.job < $1.job }) {
            guard let job = manager.job(subscription.job),
                let slice = manager.unstoredEvents(of: job.id, after: subscription.cursor.lastSent, maxBytes: replaySliceBytes),
                subscription.cursor.nextRead() != nil
            else { continue }
            let replay = EventWire.replay(slice, framing: viewer.framing(rawEvents: subscription.rawEvents), compressor: compressor)
            if let gap = replay.gap { sendGap(viewer, job: job.id, gap) }
            write(replay, job: job.id, to: viewer)
            switch subscription.cursor.replayed(through: replay.through, gap: replay.gap, sawLast: replay.sawLast, lastSeq: job.lastSeq) {
            case .ended: return end(viewer)
            case .current: sendPartial(subscription)
            case .behind: break
            }
            return
        }
    }

    private func write(_ replay: EventWire.Replay, job: String, to viewer: Viewer) {
        let label = replay.first.flatMap { first in replay.through.map { OutboundBuffer.Label(stream: job, events: first...$0) } }
        switch viewer.transport {
        case .websocket(let session):
            if !replay.bytes.isEmpty { session.send(sharedFrame: OutboundBuffer(replay.bytes, label: label)) }
            for payload in replay.payloads {
                session.send(payload.bytes, isText: true, label: OutboundBuffer.Label(stream: job, events: payload.seq...payload.seq))
            }
        case .sse(let tcp):
            if !replay.bytes.isEmpty { tcp.enqueue(OutboundBuffer(replay.bytes, label: label)) }
        }
        eventsSent += replay.events
        bytesSent += replay.bytes.count + replay.payloads.reduce(0) { $0 + $1.bytes.count }
    }

    /// `{"type":"gap","job":…,"from":N,"to":M}`: seqs N…M of the job are not in the store.
    private func sendGap(_ viewer: Viewer, job: String, _ gap: ClosedRange<Int>) {
        sendControl(viewer, .object(["type": "gap", "job": .string(job), "from": .int(gap.lowerBound), "to": .int(gap.upperBound)]))
    }

    /// The line being streamed, if any, to a viewer that just became current on its job.
    private func sendPartial(_ subscription: Subscription) {
        guard subscription.viewer.pacing.isFlowing, subscription.cursor.lastSent == manager.job(subscription.job)?.lastSeq,
            let bytes = manager.encodedPartial(of: subscription.job)
        else { return }
        var shared = SharedEncodings()
        writePartial(bytes, to: subscription, shared: &shared)
    }

    /// An all-jobs stream after a pause: the missed events from memory, or a reset and a
    /// new snapshot when they are no longer there.
    private func catchUpAll(_ viewer: Viewer) {
        while viewer.pacing.isFlowing, let cursor = viewer.allCursor, cursor < manager.version {
            guard let events = recentAll.after(cursor, limit: Self.allJobsReplayBatch) else {
                sendControl(viewer, .object(["type": "reset", "version": .int(manager.version)]))
                sendSnapshot(viewer)
                return
            }
            guard !events.isEmpty else { return }
            for (key, entry) in events {
                guard viewer.pacing.isFlowing else { return }
                deliverToAllJobsStream(viewer, entry.event, entry.bytes, version: key, shared: &entry.encodings)
            }
        }
    }

    // MARK: live delivery

    private func deliver(_ event: JobEvent, _ bytes: [UInt8]) {
        let version = manager.version
        snapshotCache = nil
        let entry = RecentEntry(event, bytes)
        if recordingAllJobs { recentAll.append(entry, key: version) }
        if let subscriptions = channels[event.jobId] {
            let isLast: Bool
            if case .completed = event.payload { isLast = true } else { isLast = false }
            for subscription in subscriptions {
                switch subscription.cursor.live(seq: event.seq, isLast: isLast, flowing: subscription.viewer.pacing.isFlowing) {
                case .send:
                    if case .agentEvent = event.payload, !subscription.rawEvents { continue }
                    write(event, bytes, version: nil, to: subscription.viewer, shared: &entry.encodings)
                case .sendAndEnd:
                    write(event, bytes, version: nil, to: subscription.viewer, shared: &entry.encodings)
                    end(subscription.viewer)
                case .skip:
                    if subscription.cursor.state == .behind, !subscription.viewer.readInFlight, subscription.viewer.pacing.isFlowing {
                        pump(subscription.viewer)
                    }
                }
            }
        }
        if case .started = event.payload { deliverLifecycle(event, bytes, shared: &entry.encodings) }
        if case .status = event.payload { deliverLifecycle(event, bytes, shared: &entry.encodings) }
        if case .completed = event.payload { deliverLifecycle(event, bytes, shared: &entry.encodings) }
        for viewer in allJobsViewers.values where viewer.pacing.isFlowing {
            deliverToAllJobsStream(viewer, event, bytes, version: version, shared: &entry.encodings)
        }
    }

    /// A job's in-progress line (`job:partial`, live only) to its current viewers: encoded
    /// once per format like events; viewers catching up or paused skip it (they get the next
    /// one, or the stored line that replaces it), and `format=text` has no in-progress line.
    private func deliverPartial(_ job: String, _ bytes: [UInt8]) {
        guard let subscriptions = channels[job], let lastSeq = manager.job(job)?.lastSeq else { return }
        var shared = SharedEncodings()
        for subscription in subscriptions
        where subscription.viewer.pacing.isFlowing && subscription.cursor.state == .current && subscription.cursor.lastSent == lastSeq {
            writePartial(bytes, to: subscription, shared: &shared)
        }
    }

    private func writePartial(_ bytes: [UInt8], to subscription: Subscription, shared: inout SharedEncodings) {
        switch (subscription.viewer.format, subscription.viewer.transport) {
        case (.json, .websocket(let session)):
            let message = shared.json ?? SharedMessage(payload: bytes, isText: true, compressor: compressor)
            shared.json = message
            bytesSent += session.send(message)
            eventsSent += 1
        case (.sse, .sse(let tcp)):
            // No `id:`: a reconnecting client resumes after the last stored event.
            let buffer = shared.sse ?? OutboundBuffer(Array("event: job:partial\ndata: ".utf8) + bytes + [0x0A, 0x0A])
            shared.sse = buffer
            tcp.enqueue(buffer)
            bytesSent += buffer.count
            eventsSent += 1
        default:
            break
        }
    }

    /// `"*"` viewers get every job's start and end (unless they follow that job anyway).
    private func deliverLifecycle(_ event: JobEvent, _ bytes: [UInt8], shared: inout SharedEncodings) {
        for viewer in lifecycleViewers.values where viewer.pacing.isFlowing && viewer.subscriptions[event.jobId] == nil {
            write(event, bytes, version: nil, to: viewer, shared: &shared)
        }
    }

    private func deliverToAllJobsStream(_ viewer: Viewer, _ event: JobEvent, _ bytes: [UInt8], version: Int, shared: inout SharedEncodings) {
        guard let cursor = viewer.allCursor, version > cursor else { return }
        viewer.allCursor = version
        if case .agentEvent = event.payload, !viewer.allRawEvents { return }
        write(event, bytes, version: version, to: viewer, shared: &shared)
    }

    /// Queues an event in the viewer's format, encoded through `shared` so every viewer of
    /// the same format gets the same bytes. `version` is the all-jobs stream's event id.
    private func write(_ event: JobEvent, _ encoded: [UInt8], version: Int?, to viewer: Viewer, shared: inout SharedEncodings) {
        let sent: Int
        switch (viewer.format, viewer.transport) {
        case (.json, .websocket(let session)):
            let message = shared.json ?? SharedMessage(payload: encoded, isText: true, compressor: compressor, label: Self.label(event))
            shared.json = message
            sent = session.send(message)
        case (.text, .websocket(let session)):
            guard let line = EventWire.textLine(event) else { return }
            let message = shared.text ?? SharedMessage(payload: Array(line.utf8), isText: true, compressor: compressor, label: Self.label(event))
            shared.text = message
            sent = session.send(message)
        case (.sse, .sse(let tcp)):
            let buffer = shared.sse ?? OutboundBuffer(EventWire.sseEvent(id: event.seq, type: event.type, data: encoded), label: Self.label(event))
            shared.sse = buffer
            tcp.enqueue(buffer)
            sent = buffer.count
        case (.sseAll, .sse(let tcp)):
            let buffer = shared.sseAll
                ?? OutboundBuffer(
                    EventWire.sseEvent(id: version ?? 0, type: event.type, data: encoded),
                    label: OutboundBuffer.Label(stream: Self.allJobsStream, events: (version ?? 0)...(version ?? 0)))
            shared.sseAll = buffer
            tcp.enqueue(buffer)
            sent = buffer.count
        default:
            return
        }
        eventsSent += 1
        bytesSent += sent
    }

    private static func label(_ event: JobEvent) -> OutboundBuffer.Label {
        OutboundBuffer.Label(stream: event.jobId, events: event.seq...event.seq)
    }

    // MARK: messages

    /// A message that is not a job event (ack, error, reset, lagged): a text frame on a
    /// WebSocket, an event named by its `type` on an SSE stream. (Snapshots are shared:
    /// `sendSnapshotNow`.)
    private func sendControl(_ viewer: Viewer, _ message: JSONValue) {
        let bytes = JSONWriter.serialize(message)
        switch viewer.transport {
        case .websocket(let session):
            session.send(bytes, isText: true)
        case .sse(let tcp):
            tcp.enqueue(Array("event: \(message["type"]?.stringValue ?? "message")\ndata: ".utf8) + bytes + [0x0A, 0x0A])
        }
    }

    static func ack(_ request: JSONValue?, _ members: [JSONValue.Member]) -> JSONValue {
        var all: [JSONValue.Member] = [.init("type", "ack")]
        if let request { all.append(.init("req", request)) }
        return .object(all + members)
    }


}

/// A job event encoded once per viewer format, shared by every viewer of that format.
struct SharedEncodings {
    var json: SharedMessage?
    var text: SharedMessage?
    var sse: OutboundBuffer?
    var sseAll: OutboundBuffer?
}
