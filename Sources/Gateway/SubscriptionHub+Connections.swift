import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketServer

/// WebSocket connections and their ops, SSE streams with their heartbeats and snapshots,
/// and the credentials every connection keeps.
extension SubscriptionHub {
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
            viewer.closeForEndedCredential(reason: reason)
        }
    }

    // MARK: WebSocket connections

    func opened(_ session: WebSocketSession) {
        // Set by the gateway when it admitted the upgrade; a session without one is closed.
        guard let admitted = session.userInfo as? AdmittedPrincipal else {
            return session.close(Self.credentialEndedCloseCode, reason: "not authenticated")
        }
        session.userInfo = nil  // the viewer keeps it from here
        let viewer = Viewer(transport: .websocket(session), principal: admitted.principal, timeouts: limits.pacing)
        let key = ObjectIdentifier(session.tcp)
        viewers[key] = viewer
        viewer.connection = nextConnection
        connections[nextConnection] = viewer
        nextConnection += 1
        session.tcp.onFlushed = { [unowned self] in self.flushed(key) }
        guard let request = session.request else { return }
        let path = request.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let parts = path.split(separator: "/").map(String.init)
        // /ws/jobs/{id}?format=text|json&since=N: one job, then close when it ends.
        if parts.count == 3, parts[0] == "ws", parts[1] == "jobs" {
            let query = Gateway.query(request.target) ?? [:]
            viewer.format = query["format"] == "json" ? .json : .text
            viewer.closesWhenJobEnds = true
            subscribe(viewer, job: parts[2], since: Gateway.nonNegative(query["since"], default: 0) ?? 0, rawEvents: false, request: nil)
        }
    }

    func received(_ session: WebSocketSession, _ message: WebSocketConnection.Message) {
        guard let viewer = viewers[ObjectIdentifier(session.tcp)] else { return }
        let (parsed, request) = ViewerCommand.parse(message.payload, isText: message.isText)
        let commands = JobCommands(manager: manager)
        do throws(APIError) {
            switch try parsed.get() {
            case .subscribe(let job, let since, let rawEvents, let project, let presence):
                guard viewer.subscriptions[job] != nil || viewer.subscriptions.count < limits.maxSubscriptionsPerConnection else {
                    throw APIError(400, "too_many_subscriptions", "at most \(limits.maxSubscriptionsPerConnection) subscriptions per connection")
                }
                subscribe(viewer, job: job, since: since, rawEvents: rawEvents, request: request, project: project, presence: presence)
            case .unsubscribe(let job):
                if job == "*" {
                    lifecycleViewers[ObjectIdentifier(viewer.tcp)] = nil
                    viewer.snapshotWanted = false
                } else {
                    detach(viewer, from: job)
                    stoppedWatching(viewer, job)
                }
                sendControl(viewer, Self.ack(request, [.init("job", .string(job))]))
            case .launch(let fields):
                let job = try commands.launch(fields)
                launched(job.id, by: viewer)
                sendControl(viewer, Self.ack(request, [.init("job", job.summaryJSON), .init("connection", .int(viewer.connection))]))
            case .kill(let job):
                if job == "*" {
                    // Every job this connection may steer: those others control stay.
                    let killed = commands.killAll { [unowned self] in self.control.mayControl($0, viewer.connection, isWatching: self.isWatching($0)) }
                    return sendControl(viewer, Self.ack(request, [.init("killed", .int(killed))]))
                }
                try checkControl(viewer, job)
                _ = try commands.kill(job)
                sendControl(viewer, Self.ack(request, [.init("job", .string(job))]))
            case .delete(let job):
                try commands.delete(job)
                sendControl(viewer, Self.ack(request, [.init("deleted", .string(job))]))
            case .send(let job, let text):
                try checkControl(viewer, job)
                let (seq, resumed) = try commands.send(job, text: text)
                sendControl(viewer, Self.ack(request, [.init("job", .string(job)), .init("seq", .int(seq)), .init("resumed", .bool(resumed))]))
            case .answer(let job, let fields):
                try checkControl(viewer, job)
                try commands.answer(job, fields)
                sendControl(viewer, Self.ack(request, [.init("job", .string(job)), .init("answered", fields["request"] ?? .null)]))
            case .control(let job):
                try askControl(viewer, job, request: request)
            case .release(let job):
                try releaseControl(viewer, job, request: request)
            case .handOver(let job, let to):
                try handOver(viewer, job, to: to, request: request)
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
    public func attachAllJobsStream(_ tcp: TCPConnection, lastEventID: Int?, rawEvents: Bool, principal: Gateway.Principal, project: String? = nil) {
        let viewer = attachStream(tcp, format: .sseAll, principal: principal)
        viewer.allRawEvents = rawEvents
        viewer.projectFilter = project
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

    func attachStream(_ tcp: TCPConnection, format: EventWire.Format, principal: Gateway.Principal) -> Viewer {
        let viewer = Viewer(transport: .sse(tcp), principal: principal, timeouts: limits.pacing)
        viewer.format = format
        let key = ObjectIdentifier(tcp)
        viewers[key] = viewer
        tcp.maxQueuedBytes = limits.queueBytes
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

    func scheduleHeartbeat() {
        guard heartbeat == nil else { return }
        heartbeat = manager.loop.schedule(afterMilliseconds: limits.heartbeatMilliseconds) { [weak self] in
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
    func sendSnapshot(_ viewer: Viewer) {
        viewer.allCursor = manager.version
        sendSnapshotNow(viewer)
    }

    /// `{"type":"snapshot","jobs":[…],"version":N}`, built once per version.
    var snapshot: SharedMessage {
        if let snapshotCache { return snapshotCache }
        // Every unfinished job and the newest finished ones; `total` says how many there are,
        // and the job list (`GET /api/agents/jobs`) pages through the rest.
        let (jobs, total) = manager.snapshotJobs(finished: limits.snapshotFinishedJobs)
        let value: JSONValue = .object([
            "type": "snapshot", "jobs": .array(jobs.map(\.summaryJSON)), "version": .int(manager.version), "total": .int(total),
        ])
        let message = SharedMessage(payload: JSONWriter.serialize(value), isText: true, compressor: compressor)
        snapshotCache = message
        return message
    }

    /// Queues the current snapshot: a text message on a WebSocket, an event with the version
    /// as its id on an SSE stream.
    func sendSnapshotNow(_ viewer: Viewer) {
        viewer.sendSnapshot(viewer.projectFilter.map(projectSnapshot) ?? snapshot, version: manager.version)
    }

    /// A snapshot of one project's jobs, for a viewer that follows only them (built for it:
    /// such requests are rate-limited like any snapshot).
    func projectSnapshot(_ project: String) -> SharedMessage {
        let (jobs, total) = manager.snapshotJobs(finished: limits.snapshotFinishedJobs, project: project)
        let value: JSONValue = .object([
            "type": "snapshot", "jobs": .array(jobs.map(\.summaryJSON)), "version": .int(manager.version), "total": .int(total),
            "project": .string(project),
        ])
        return SharedMessage(payload: JSONWriter.serialize(value), isText: true, compressor: compressor)
    }

    /// Sends a `"*"` viewer the snapshot it asked for, unless it got one less than
    /// `limits.snapshotIntervalMilliseconds` ago: then one timer sends it when the interval ends,
    /// newer than every request it answers. Nothing is queued while the viewer is paused
    /// (its queue is full); `drained` calls this again.
    func sendWantedSnapshot(_ viewer: Viewer) {
        guard viewer.snapshotWanted, viewer.snapshotTimer == nil, viewer.pacing.isFlowing else { return }
        let now = MonotonicClock.milliseconds()
        if let last = viewer.snapshotSentAt, now - last < limits.snapshotIntervalMilliseconds {
            viewer.snapshotTimer = manager.loop.schedule(afterMilliseconds: last + limits.snapshotIntervalMilliseconds - now) {
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
}
