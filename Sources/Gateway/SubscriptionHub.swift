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
///                                                 └▶ every live viewer of that job ("*": lifecycle; all-jobs SSE: all)
///  subscribe {since: N} ─▶ replay seq > N from memory or the event store ─▶ live (seq ≤ lastSent skipped)
///  subscribe "*" ─▶ ack ─▶ snapshot (built once per version, shared; ≤ 1 per `snapshotInterval` per connection)
///  queue over its bound ─▶ pause live delivery ─▶ drained ─▶ catch up from the store ─▶ live
///                         └─ still paused after `lagTimeout` ─▶ "lagged" + close (WebSocket 4008)
/// ```
///
/// Everything runs on the loop that runs the jobs, so replay and live delivery cannot
/// interleave: nothing is lost or sent twice.
public final class SubscriptionHub {
    /// Close code for a viewer that stayed too far behind (resume with `since`).
    public static let laggedCloseCode = CloseCode(4008)
    /// Close code for a connection whose credential ended: signed out, expired, or the token
    /// rotated. Reconnecting needs a new one.
    public static let credentialEndedCloseCode = CloseCode(4401)
    /// Subscriptions one WebSocket connection may hold (more get `too_many_subscriptions`).
    public var maxSubscriptionsPerConnection = 1_000
    /// Events replayed per catch-up step, so one slow viewer never loads a whole history.
    static let replayBatch = 2_000
    /// Events of all jobs kept for all-jobs SSE streams that reconnect (`Last-Event-ID`).
    static let allJobsRingCapacity = 16_384
    /// Comment lines on idle SSE streams, so proxies and clients keep them open (15 s).
    public var heartbeatMilliseconds = 15_000
    /// Least time between two `"*"` snapshots to one connection (250 ms). A client that
    /// repeats subscribe "*" gets every ack at once and one snapshot for all the requests
    /// of an interval: a flood of them costs the loop acks, not snapshots of every job.
    public var snapshotIntervalMilliseconds = 250

    public let manager: JobManager
    public let websockets: WebSocketServer
    /// How long a viewer may stay paused before it is told it lagged and closed (30 s).
    public var lagTimeoutMilliseconds = 30_000
    private var viewers: [ObjectIdentifier: Viewer] = [:]
    /// The live subscriptions of each job: an event touches only its job's viewers, with no
    /// per-viewer dictionary work.
    private var channels: [String: [Subscription]] = [:]
    /// Viewers of every job's lifecycle (`"*"`), and all-jobs SSE streams.
    private var lifecycleViewers: [ObjectIdentifier: Viewer] = [:]
    private var allJobsViewers: [ObjectIdentifier: Viewer] = [:]
    private var recent: [String: RecentEvents] = [:]
    private var recentAll = RecentEvents(capacity: SubscriptionHub.allJobsRingCapacity)
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
    /// Bytes waiting in viewers' outbound queues now.
    public var queuedBytes: Int { viewers.values.reduce(0) { $0 + $1.tcp.queuedBytes } }

    private func remove(_ key: ObjectIdentifier) {
        guard let viewer = viewers.removeValue(forKey: key) else { return }
        for job in Array(viewer.subscriptions.keys) { detach(viewer, from: job) }
        if let timer = viewer.snapshotTimer { manager.loop.cancel(timer) }
        lifecycleViewers[key] = nil
        if allJobsViewers.removeValue(forKey: key) != nil, allJobsViewers.isEmpty {
            stopRecordingTimer = manager.loop.schedule(afterMilliseconds: 60_000) { [weak self] in
                guard let self, self.allJobsViewers.isEmpty else { return }
                self.recordingAllJobs = false
            }
        }
    }

    /// Takes a viewer's subscription to a job out of the job's channel.
    private func detach(_ viewer: Viewer, from job: String) {
        guard let subscription = viewer.subscriptions.removeValue(forKey: job) else { return }
        channels[job]?.removeAll { $0 === subscription }
        if channels[job]?.isEmpty == true { channels[job] = nil }
    }

    private func overBound(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key], !viewer.paused else { return }
        pauses += 1
        viewer.pause(self)
    }

    private func drained(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key] else { return }
        viewer.resume()
        catchUp(viewer)
        sendWantedSnapshot(viewer)
    }

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
        let viewer = Viewer(transport: .websocket(session), principal: admitted.principal)
        viewers[ObjectIdentifier(session.tcp)] = viewer
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
        guard message.isText, let value = try? JSONParser.parse(message.payload), case .object = value else {
            return sendControl(viewer, Self.error(nil, "invalid_message", "send one JSON object per text message"))
        }
        let request = value["req"]
        switch value["op"]?.stringValue {
        case "subscribe":
            guard let job = value["job"]?.stringValue else { return sendControl(viewer, Self.error(request, "invalid_message", "subscribe needs job")) }
            let since = value["since"]?.intValue ?? 0
            guard since >= 0 else { return sendControl(viewer, Self.error(request, "invalid_message", "since must be ≥ 0")) }
            guard viewer.subscriptions[job] != nil || viewer.subscriptions.count < maxSubscriptionsPerConnection else {
                return sendControl(viewer, Self.error(request, "too_many_subscriptions", "at most \(maxSubscriptionsPerConnection) subscriptions per connection"))
            }
            subscribe(viewer, job: job, since: since, rawEvents: value["events"]?.boolValue ?? false, request: request)
        case "unsubscribe":
            guard let job = value["job"]?.stringValue else { return sendControl(viewer, Self.error(request, "invalid_message", "unsubscribe needs job")) }
            if job == "*" {
                lifecycleViewers[ObjectIdentifier(viewer.tcp)] = nil
                viewer.snapshotWanted = false
            } else {
                detach(viewer, from: job)
            }
            sendControl(viewer, Self.ack(request, [.init("job", .string(job))]))
        case "launch":
            do {
                // The launch fields sit beside op and req, which are the message's own.
                guard case .object(let members) = value else { return }
                let fields = JSONValue.object(members.filter { $0.key != "op" && $0.key != "req" })
                let job = try manager.launch(LaunchRequest(json: fields))
                sendControl(viewer, Self.ack(request, [.init("job", job.summaryJSON)]))
            } catch {
                var members: [JSONValue.Member] = [.init("type", "error"), .init("error", .string(error.message)), .init("code", .string(error.code.rawValue))]
                if let field = error.field { members.append(.init("field", .string(field))) }
                if let request { members.append(.init("req", request)) }
                sendControl(viewer, .object(members))
            }
        case "kill":
            guard let job = value["job"]?.stringValue else { return sendControl(viewer, Self.error(request, "invalid_message", "kill needs job")) }
            if job == "*" { return sendControl(viewer, Self.ack(request, [.init("killed", .int(manager.killAll()))])) }
            do throws(JobManager.KillError) {
                try manager.kill(job)
                sendControl(viewer, Self.ack(request, [.init("job", .string(job))]))
            } catch {
                switch error {
                case .notFound: sendControl(viewer, Self.error(request, "unknown_job", "no job \(job)"))
                case .alreadyFinished(_, let status): sendControl(viewer, Self.error(request, "already_finished", "job \(job) already finished (\(status.rawValue))"))
                }
            }
        default:
            sendControl(viewer, Self.error(request, "unknown_op", "op must be subscribe, unsubscribe, launch or kill"))
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

    private func attachStream(_ tcp: TCPConnection, format: Viewer.Format, principal: Gateway.Principal) -> Viewer {
        let viewer = Viewer(transport: .sse(tcp), principal: principal)
        viewer.format = format
        let key = ObjectIdentifier(tcp)
        viewers[key] = viewer
        tcp.maxQueuedBytes = websockets.configuration.maxQueuedBytes
        tcp.onRead = { _ in }  // a stream's client has nothing more to say
        tcp.onPeerClosed = { [unowned tcp] in tcp.close() }
        tcp.onClose = { [unowned self] in self.remove(key) }
        tcp.onQueueOverBound = { [unowned self] in self.overBound(key) }
        tcp.onDrained = { [unowned self] in self.drained(key) }
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
                if !viewer.paused { viewer.tcp.enqueue(bytes) }
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
            tcp.enqueue(Self.sseEvent(id: manager.version, type: "snapshot", data: message.payload))
        }
    }

    /// Sends a `"*"` viewer the snapshot it asked for, unless it got one less than
    /// `snapshotIntervalMilliseconds` ago: then one timer sends it when the interval ends,
    /// newer than every request it answers. Nothing is queued while the viewer is paused
    /// (its queue is full); `drained` calls this again.
    private func sendWantedSnapshot(_ viewer: Viewer) {
        guard viewer.snapshotWanted, viewer.snapshotTimer == nil, !viewer.paused else { return }
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
            sendControl(viewer, Self.error(request, "unknown_job", "no job \(job)"))
            if viewer.closesWhenJobEnds { viewer.close(.policyViolation, reason: "unknown job") }
            return
        }
        var start = since
        if since > current.lastSeq {
            // A cursor from the future (another server, a wiped store): say so, restart at the end.
            let reset: JSONValue = .object(["type": "reset", "job": .string(job), "seq": .int(current.lastSeq)])
            sendControl(viewer, reset)
            start = current.lastSeq
        }
        detach(viewer, from: job)
        let subscription = Subscription(job: job, lastSent: start, rawEvents: rawEvents, viewer: viewer)
        viewer.subscriptions[job] = subscription
        channels[job, default: []].append(subscription)
        if viewer.format == .json, request != nil || !viewer.closesWhenJobEnds {
            sendControl(viewer, Self.ack(request, [.init("job", .string(job)), .init("seq", .int(current.lastSeq))]))
        }
        catchUp(viewer, job: job)
    }

    /// Replays stored events after each subscription's last sent seq, a batch at a time,
    /// until the viewer is current or its queue is full again.
    private func catchUp(_ viewer: Viewer) {
        if viewer.allCursor != nil { catchUpAll(viewer) }
        for job in viewer.subscriptions.keys.sorted() {
            catchUp(viewer, job: job)
        }
    }

    private func catchUp(_ viewer: Viewer, job: String) {
        while !viewer.paused, let subscription = viewer.subscriptions[job] {
            let events = replay(job, since: subscription.lastSent)
            guard !events.isEmpty else { break }
            for entry in events {
                guard !viewer.paused else { return }
                deliver(entry.event, entry.bytes, to: subscription, shared: &entry.encodings)
            }
            if events.count < Self.replayBatch { break }
        }
        // Current now: the line being streamed, if any, so a late viewer sees it too.
        if !viewer.paused, let subscription = viewer.subscriptions[job], subscription.lastSent == manager.job(job)?.lastSeq,
            let bytes = manager.encodedPartial(of: job)
        {
            var shared = SharedEncodings()
            writePartial(bytes, to: subscription, shared: &shared)
        }
    }

    /// An all-jobs stream after a pause: the missed events from memory, or a reset and a
    /// new snapshot when they are no longer there.
    private func catchUpAll(_ viewer: Viewer) {
        while !viewer.paused, let cursor = viewer.allCursor, cursor < manager.version {
            guard let events = recentAll.after(cursor, limit: Self.replayBatch) else {
                sendControl(viewer, .object(["type": "reset", "version": .int(manager.version)]))
                sendSnapshot(viewer)
                return
            }
            guard !events.isEmpty else { return }
            for (key, entry) in events {
                guard !viewer.paused else { return }
                deliverToAllJobsStream(viewer, entry.event, entry.bytes, version: key, shared: &entry.encodings)
            }
        }
    }

    /// Events after `since`: from memory when the ring reaches back that far (with the
    /// encodings live delivery made), else from the file.
    private func replay(_ job: String, since: Int) -> [RecentEntry] {
        if let entries = recent[job]?.after(since, limit: Self.replayBatch) { return entries.map(\.entry) }
        return manager.encodedEvents(for: job, since: since, limit: Self.replayBatch).map { RecentEntry($0.event, $0.line) }
    }

    // MARK: live delivery

    private func deliver(_ event: JobEvent, _ bytes: [UInt8]) {
        let version = manager.version
        snapshotCache = nil
        let entry = RecentEntry(event, bytes)
        recent[event.jobId, default: RecentEvents()].append(entry, key: event.seq)
        if recordingAllJobs { recentAll.append(entry, key: version) }
        if event.type == "job:completed" {
            // Finished jobs replay from the file; keep memory for running ones.
            let job = event.jobId
            manager.loop.schedule(afterMilliseconds: 60_000) { [weak self] in
                if self?.manager.job(job)?.status.isFinished == true { self?.recent[job] = nil }
            }
        }
        if let subscriptions = channels[event.jobId] {
            for subscription in subscriptions where !subscription.viewer.paused {
                deliver(event, bytes, to: subscription, shared: &entry.encodings)
            }
        }
        if case .started = event.payload { deliverLifecycle(event, bytes, shared: &entry.encodings) }
        if case .status = event.payload { deliverLifecycle(event, bytes, shared: &entry.encodings) }
        if case .completed = event.payload { deliverLifecycle(event, bytes, shared: &entry.encodings) }
        for viewer in allJobsViewers.values where !viewer.paused {
            deliverToAllJobsStream(viewer, event, bytes, version: version, shared: &entry.encodings)
        }
    }

    /// A job's in-progress line (`job:partial`, live only) to its current viewers: encoded
    /// once per format like events; viewers catching up or paused skip it (they get the next
    /// one, or the stored line that replaces it), and `format=text` has no in-progress line.
    private func deliverPartial(_ job: String, _ bytes: [UInt8]) {
        guard let subscriptions = channels[job], let lastSeq = manager.job(job)?.lastSeq else { return }
        var shared = SharedEncodings()
        for subscription in subscriptions where !subscription.viewer.paused && subscription.lastSent == lastSeq {
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
        for viewer in lifecycleViewers.values where !viewer.paused && viewer.subscriptions[event.jobId] == nil {
            write(event, bytes, version: nil, to: viewer, shared: &shared)
        }
    }

    /// One event of a subscribed job: sent once (seq above the last sent), raw agent JSON
    /// only when asked for.
    private func deliver(_ event: JobEvent, _ bytes: [UInt8], to subscription: Subscription, shared: inout SharedEncodings) {
        guard event.seq > subscription.lastSent else { return }
        subscription.lastSent = event.seq
        if case .agentEvent = event.payload, !subscription.rawEvents { return }
        let viewer = subscription.viewer
        write(event, bytes, version: nil, to: viewer, shared: &shared)
        if viewer.closesWhenJobEnds, case .completed = event.payload {
            viewer.close(.normalClosure, reason: "job ended")
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
            let message = shared.json ?? SharedMessage(payload: encoded, isText: true, compressor: compressor)
            shared.json = message
            sent = session.send(message)
        case (.text, .websocket(let session)):
            guard let line = Self.textLine(event) else { return }
            let message = shared.text ?? SharedMessage(payload: Array(line.utf8), isText: true, compressor: compressor)
            shared.text = message
            sent = session.send(message)
        case (.sse, .sse(let tcp)):
            let buffer = shared.sse ?? OutboundBuffer(Self.sseEvent(id: event.seq, type: event.type, data: encoded))
            shared.sse = buffer
            tcp.enqueue(buffer)
            sent = buffer.count
        case (.sseAll, .sse(let tcp)):
            let buffer = shared.sseAll ?? OutboundBuffer(Self.sseEvent(id: version ?? 0, type: event.type, data: encoded))
            shared.sseAll = buffer
            tcp.enqueue(buffer)
            sent = buffer.count
        default:
            return
        }
        eventsSent += 1
        bytesSent += sent
    }

    /// `id: N\nevent: type\ndata: {json}\n\n` (the JSON has no raw newlines).
    static func sseEvent(id: Int, type: String, data: [UInt8]) -> [UInt8] {
        var bytes = Array("id: \(id)\nevent: \(type)\ndata: ".utf8)
        bytes.reserveCapacity(bytes.count + data.count + 2)
        bytes += data
        bytes += [0x0A, 0x0A]
        return bytes
    }

    /// The `format=text` form of an event: log lines as `exec` prints them, and a final status line.
    /// Escaped as the CLI escapes (`TerminalText`): these frames are read on terminals
    /// (websocat), where an agent's ESC or U+009B would act instead of showing.
    /// A blank line (a paragraph break in an answer) goes out as one space: websocat and
    /// other line-oriented clients take a zero-length message for the end of the stream.
    static func textLine(_ event: JobEvent) -> String? {
        let text: String
        switch event.payload {
        case .log(let line): text = TerminalText.escaped(line.displayText)
        case .completed(let job): text = TerminalText.escaped(job.statusLine)
        case .started, .status, .agentEvent: return nil
        }
        return text.isEmpty ? " " : text
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

    static func error(_ request: JSONValue?, _ code: String, _ message: String) -> JSONValue {
        var all: [JSONValue.Member] = [.init("type", "error"), .init("error", .string(message)), .init("code", .string(code))]
        if let request { all.append(.init("req", request)) }
        return .object(all)
    }

    fileprivate func lagged(_ viewer: Viewer) {
        laggedCloses += 1
        for (job, subscription) in viewer.subscriptions.sorted(by: { $0.key < $1.key }) {
            let message: JSONValue = .object(["type": "lagged", "job": .string(job), "seq": .int(subscription.lastSent)])
            sendControl(viewer, message)
        }
        if let cursor = viewer.allCursor {
            sendControl(viewer, .object(["type": "lagged", "version": .int(cursor)]))
        }
        viewer.close(Self.laggedCloseCode, reason: "too far behind; resume with since")
    }
}

/// A job event encoded once per viewer format, shared by every viewer of that format.
struct SharedEncodings {
    var json: SharedMessage?
    var text: SharedMessage?
    var sse: OutboundBuffer?
    var sseAll: OutboundBuffer?
}

/// One viewer following one job. A class, so live delivery updates `lastSent` in place.
final class Subscription {
    let job: String
    /// The highest seq this viewer was sent (or told about) for the job.
    var lastSent: Int
    /// Whether `job:event` (the agent's raw JSON) is wanted.
    let rawEvents: Bool
    /// Strong: the viewer's subscriptions are dropped when it closes, which breaks the cycle.
    let viewer: Viewer

    init(job: String, lastSent: Int, rawEvents: Bool, viewer: Viewer) {
        self.job = job
        self.lastSent = lastSent
        self.rawEvents = rawEvents
        self.viewer = viewer
    }
}

final class Viewer {
    enum Format: Hashable {
        /// WebSocket: JSON events, or `format=text` log lines.
        case json, text
        /// SSE: one job (ids are seqs), or every job (ids are the manager's version).
        case sse, sseAll
    }

    enum Transport {
        case websocket(WebSocketSession)
        case sse(TCPConnection)
    }

    let transport: Transport
    /// What opened this connection: it ends when that credential does.
    let principal: Gateway.Principal
    var subscriptions: [String: Subscription] = [:]
    /// All-jobs streams: the last version sent (nil for every other viewer).
    var allCursor: Int?
    var allRawEvents = false
    var format = Format.json
    var closesWhenJobEnds = false
    /// `"*"` snapshots: one was asked for and not sent yet; when the last one was sent
    /// (monotonic ms); the timer that sends the next when the interval allows.
    var snapshotWanted = false
    var snapshotSentAt: Int?
    var snapshotTimer: EventLoop.TimerID?
    private(set) var paused = false
    private var lagTimer: EventLoop.TimerID?

    init(transport: Transport, principal: Gateway.Principal) {
        self.transport = transport
        self.principal = principal
    }

    var tcp: TCPConnection {
        switch transport {
        case .websocket(let session): session.tcp
        case .sse(let tcp): tcp
        }
    }

    var isStream: Bool {
        if case .sse = transport { return true }
        return false
    }

    func close(_ code: CloseCode, reason: String) {
        switch transport {
        case .websocket(let session): session.close(code, reason: reason)
        case .sse(let tcp): paused ? tcp.close() : tcp.closeAfterFlush()
        }
    }

    func pause(_ hub: SubscriptionHub) {
        guard !paused else { return }
        paused = true
        lagTimer = tcp.loop.schedule(afterMilliseconds: hub.lagTimeoutMilliseconds) { [weak self, weak hub] in
            guard let self, let hub, self.paused else { return }
            hub.lagged(self)
        }
    }

    func resume() {
        paused = false
        if let lagTimer { tcp.loop.cancel(lagTimer) }
        lagTimer = nil
    }
}
