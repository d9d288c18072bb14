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
    /// What one viewer may hold and how long it may lag (see `ViewerLimits`).
    public var limits: ViewerLimits {
        didSet {
            guard limits.allJobsRingEvents != oldValue.allJobsRingEvents || limits.allJobsRingBytes != oldValue.allJobsRingBytes else { return }
            recentAll = RecentEvents(capacity: limits.allJobsRingEvents, maxBytes: limits.allJobsRingBytes)
        }
    }
    /// Events replayed per catch-up step of an all-jobs stream (from memory).
    static let allJobsReplayBatch = 2_000

    public let manager: JobManager
    public let websockets: WebSocketServer
    let history: HistoryReader
    var viewers: [ObjectIdentifier: Viewer] = [:]
    /// The subscriptions of each job: an event touches only its job's viewers, with no
    /// per-viewer dictionary work.
    var channels: [String: [Subscription]] = [:]
    /// Viewers of every job's lifecycle (`"*"`), and all-jobs SSE streams.
    var lifecycleViewers: [ObjectIdentifier: Viewer] = [:]
    var allJobsViewers: [ObjectIdentifier: Viewer] = [:]
    var recentAll: RecentEvents
    /// History slices read for viewers and not queued yet, and whether a drain is due: at
    /// most `slicesPerTurn` are queued per loop turn (each is a copy and a socket write of
    /// up to 128 KiB), so a thousand viewers catching up at once never hold one turn.
    var arrivals: [() -> Void] = []
    var arrivalsHead = 0
    var drainScheduled = false
    static let slicesPerTurn = 16
    /// Replay slices granted to history streams and not arrived yet, over every viewer.
    var replaySlicesOut = 0
    /// Viewers with a replay under way.
    var activeReplays = 0
    /// Whether every job's events are kept for all-jobs streams: while one is attached, and
    /// for a minute after the last one left (so it can reconnect and resume).
    var recordingAllJobs = false
    var stopRecordingTimer: EventLoop.TimerID?
    var compressor = SharedMessage.makeSharedCompressor()
    var heartbeat: EventLoop.TimerID?
    /// The snapshot of every job at `manager.version`, encoded once for every viewer that
    /// asks before the next event (dropped by that event).
    var snapshotCache: SharedMessage?
    /// Who steers each job (`JobControl`), the open WebSocket connections by their id, and
    /// the jobs whose presence is due (`SubscriptionHub+Control`).
    var control = JobControl()
    var connections: [JobControl.Connection: Viewer] = [:]
    var nextConnection = 1
    var presenceDue: Set<String> = []
    var presenceTimer: EventLoop.TimerID?

    public init(manager: JobManager, websockets: WebSocketServer, limits: ViewerLimits = ViewerLimits()) {
        self.manager = manager
        self.websockets = websockets
        self.limits = limits
        recentAll = RecentEvents(capacity: limits.allJobsRingEvents, maxBytes: limits.allJobsRingBytes)
        history = HistoryReader(store: manager.store.events)
        manager.addObserver { [unowned self] event, bytes in self.deliver(event, bytes) }
        manager.addPartialObserver { [unowned self] job, _, bytes in self.deliverPartial(job, bytes) }
        manager.addDeletionObserver { [unowned self] job in self.deleted(job) }
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
    public internal(set) var pauses = 0
    /// Viewers closed with `lagged` after staying paused too long.
    public internal(set) var laggedCloses = 0
    /// Event messages queued to viewers, and their bytes on the wire.
    public internal(set) var eventsSent = 0
    public internal(set) var bytesSent = 0
    /// Of them, bytes sent from ready frames files (`ReplayFrames`).
    public internal(set) var bytesFromFrames = 0
    /// Viewers with a history slice being read now.
    public var readsInFlight: Int { activeReplays }
    /// Bytes waiting in viewers' outbound queues now.
    public var queuedBytes: Int { viewers.values.reduce(0) { $0 + $1.tcp.queuedBytes } }

    func remove(_ key: ObjectIdentifier) {
        guard let viewer = viewers.removeValue(forKey: key) else { return }
        viewer.pacing.closed()
        let watched = Array(viewer.subscriptions.keys)
        for job in watched { detach(viewer, from: job) }
        if viewer.connection != 0 {
            connections[viewer.connection] = nil
            connectionClosed(viewer)
        }
        for job in watched { presenceChanged(job) }
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
    func detach(_ viewer: Viewer, from job: String) {
        guard let subscription = viewer.subscriptions.removeValue(forKey: job) else { return }
        if viewer.replay?.subscription === subscription { endReplay(viewer) }
        channels[job]?.removeAll { $0 === subscription }
        if channels[job]?.isEmpty == true { channels[job] = nil }
    }

    // MARK: subscriptions

    func subscribe(_ viewer: Viewer, job: String, since: Int, rawEvents: Bool, request: JSONValue?, project: String? = nil, presence: Bool = false) {
        if job == "*" {
            lifecycleViewers[ObjectIdentifier(viewer.tcp)] = viewer
            viewer.projectFilter = project
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
        if presence { viewer.presenceJobs.insert(job) } else { viewer.presenceJobs.remove(job) }
        if viewer.format == .json, request != nil || !viewer.closesWhenJobEnds {
            var members: [JSONValue.Member] = [.init("job", .string(job)), .init("seq", .int(subscription.cursor.lastSent))]
            if presence { members.append(.init("connection", .int(viewer.connection))) }
            sendControl(viewer, Self.ack(request, members))
        }
        presenceChanged(job)
        if subscription.cursor.endIfFinished(jobEnded: current.status.isFinished, lastSeq: current.lastSeq) {
            return end(viewer)
        }
        if subscription.cursor.state == .current { sendPartial(subscription) }
        pump(viewer)
    }

    // MARK: live delivery

    /// A job was deleted: `{"type":"job:deleted","job":…}` to its viewers (a stream of that
    /// job then ends), to `"*"` viewers and to all-jobs streams.
    func deleted(_ job: String) {
        snapshotCache = nil
        history.forget(job: job)
        control.forget(job)
        presenceDue.remove(job)
        let message: JSONValue = .object(["type": "job:deleted", "job": .string(job)])
        var told = Set<ObjectIdentifier>()
        for subscription in channels[job] ?? [] {
            let viewer = subscription.viewer
            detach(viewer, from: job)
            guard viewer.pacing.isOpen else { continue }
            told.insert(ObjectIdentifier(viewer))
            sendControl(viewer, message)
            if viewer.closesWhenJobEnds { end(viewer) }
        }
        for viewer in Array(lifecycleViewers.values) + Array(allJobsViewers.values)
        where viewer.pacing.isOpen && told.insert(ObjectIdentifier(viewer)).inserted {
            sendControl(viewer, message)
        }
    }

    func deliver(_ event: JobEvent, _ bytes: [UInt8]) {
        let version = manager.version
        snapshotCache = nil
        // Kept for all-jobs streams only while one is attached: otherwise the encodings are
        // shared through a local, with no allocation per event.
        let entry = recordingAllJobs ? RecentEntry(event, bytes) : nil
        if let entry { recentAll.append(entry, key: version) }
        var shared = SharedEncodings()
        defer { entry?.encodings = shared }
        if let subscriptions = channels[event.jobId] {
            let isLast: Bool
            if case .completed = event.payload { isLast = true } else { isLast = false }
            for subscription in subscriptions {
                switch subscription.cursor.live(seq: event.seq, isLast: isLast, flowing: subscription.viewer.pacing.isFlowing) {
                case .send:
                    if case .agentEvent = event.payload, !subscription.rawEvents { continue }
                    write(event, bytes, version: nil, to: subscription.viewer, shared: &shared)
                case .sendAndEnd:
                    write(event, bytes, version: nil, to: subscription.viewer, shared: &shared)
                    end(subscription.viewer)
                case .skip:
                    if subscription.cursor.state == .behind, !subscription.viewer.readInFlight, subscription.viewer.pacing.isFlowing {
                        pump(subscription.viewer)
                    }
                }
            }
        }
        if case .started = event.payload { deliverLifecycle(event, bytes, shared: &shared) }
        if case .status = event.payload { deliverLifecycle(event, bytes, shared: &shared) }
        if case .queue = event.payload { deliverLifecycle(event, bytes, shared: &shared) }
        if case .spend = event.payload { deliverLifecycle(event, bytes, shared: &shared) }
        if case .completed = event.payload {
            deliverLifecycle(event, bytes, shared: &shared)
            prepareFrames(afterCompletionOf: event.jobId)
        }
        for viewer in allJobsViewers.values where viewer.pacing.isFlowing {
            deliverToAllJobsStream(viewer, event, bytes, version: version, shared: &shared)
        }
    }

    /// A job's in-progress line (`job:partial`, live only) to its current viewers: encoded
    /// once per format like events; viewers catching up or paused skip it (they get the next
    /// one, or the stored line that replaces it), and `format=text` has no in-progress line.
    func deliverPartial(_ job: String, _ bytes: [UInt8]) {
        guard let subscriptions = channels[job], let lastSeq = manager.job(job)?.lastSeq else { return }
        var shared = SharedEncodings()
        for subscription in subscriptions
        where subscription.viewer.pacing.isFlowing && subscription.cursor.state == .current && subscription.cursor.lastSent == lastSeq {
            writePartial(bytes, to: subscription, shared: &shared)
        }
    }

    func writePartial(_ bytes: [UInt8], to subscription: Subscription, shared: inout SharedEncodings) {
        guard let sent = subscription.viewer.writePartial(bytes, shared: &shared, compressor: compressor) else { return }
        bytesSent += sent
        eventsSent += 1
    }

    /// `"*"` viewers get every job's start and end (unless they follow that job anyway).
    func deliverLifecycle(_ event: JobEvent, _ bytes: [UInt8], shared: inout SharedEncodings) {
        var project: String??
        for viewer in lifecycleViewers.values where viewer.pacing.isFlowing && viewer.subscriptions[event.jobId] == nil {
            if let filter = viewer.projectFilter {
                if project == nil { project = .some(manager.job(event.jobId)?.project) }
                guard project == .some(filter) else { continue }
            }
            write(event, bytes, version: nil, to: viewer, shared: &shared)
        }
    }

    func deliverToAllJobsStream(_ viewer: Viewer, _ event: JobEvent, _ bytes: [UInt8], version: Int, shared: inout SharedEncodings) {
        guard let cursor = viewer.allCursor, version > cursor else { return }
        viewer.allCursor = version
        if case .agentEvent = event.payload, !viewer.allRawEvents { return }
        if let filter = viewer.projectFilter, manager.job(event.jobId)?.project != filter { return }
        write(event, bytes, version: version, to: viewer, shared: &shared)
    }

    /// Queues an event on a viewer in its format (see `Viewer.write`), counted.
    func write(_ event: JobEvent, _ encoded: [UInt8], version: Int?, to viewer: Viewer, shared: inout SharedEncodings) {
        guard let sent = viewer.write(event, encoded, version: version, shared: &shared, compressor: compressor) else { return }
        eventsSent += 1
        bytesSent += sent
    }

    // MARK: messages

    func sendControl(_ viewer: Viewer, _ message: JSONValue) {
        viewer.sendControl(message)
    }

    static func ack(_ request: JSONValue?, _ members: [JSONValue.Member]) -> JSONValue {
        var all: [JSONValue.Member] = [.init("type", "ack")]
        if let request { all.append(.init("req", request)) }
        return .object(all + members)
    }
}
