import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketServer

/// Job events to WebSocket viewers: many subscriptions per connection, many viewers per job,
/// each able to resume after the last seq it saw.
///
/// ```
///  JobManager emit ─▶ observer(event, bytes) ─▶ SharedMessage (framed once, compressed once)
///                                                 └▶ every live subscription of that job (and "*" for lifecycle)
///  subscribe {since: N} ─▶ replay seq > N from the event store ─▶ live (seq ≤ lastSent skipped)
///  queue over its bound ─▶ pause live delivery ─▶ drained ─▶ catch up from the store ─▶ live
///                         └─ still paused after `lagTimeout` ─▶ {"type":"lagged"} + close 4008
/// ```
///
/// Everything runs on the loop that runs the jobs, so replay and live delivery cannot
/// interleave: nothing is lost or sent twice.
public final class SubscriptionHub {
    /// Close code for a viewer that stayed too far behind (resume with `since`).
    public static let laggedCloseCode = CloseCode(4008)
    /// Events replayed per catch-up step, so one slow viewer never loads a whole history.
    static let replayBatch = 2_000

    public let manager: JobManager
    public let websockets: WebSocketServer
    /// How long a viewer may stay paused before it is told it lagged and closed (30 s).
    public var lagTimeoutMilliseconds = 30_000
    private var viewers: [Int: Viewer] = [:]
    private var recent: [String: RecentEvents] = [:]
    private var compressor = SharedMessage.makeSharedCompressor()

    public init(manager: JobManager, websockets: WebSocketServer) {
        self.manager = manager
        self.websockets = websockets
        manager.addObserver { [unowned self] event, bytes in self.deliver(event, bytes) }
        websockets.onOpen = { [unowned self] session in self.opened(session) }
        websockets.onMessage = { [unowned self] session, message in self.received(session, message) }
        websockets.onClose = { [unowned self] session in self.viewers[session.id] = nil }
        websockets.onQueueOverBound = { [unowned self] session in
            guard let viewer = self.viewers[session.id], !viewer.paused else { return }
            self.pauses += 1
            viewer.pause(self)
        }
        websockets.onDrained = { [unowned self] session in
            guard let viewer = self.viewers[session.id] else { return }
            viewer.resume()
            self.catchUp(viewer)
        }
    }

    public var viewerCount: Int { viewers.count }
    /// Times a viewer's live delivery paused because its queue was full (a slow consumer).
    public private(set) var pauses = 0
    /// Viewers closed with `lagged` after staying paused too long.
    public private(set) var laggedCloses = 0
    public var subscriptionCount: Int { viewers.values.reduce(0) { $0 + $1.subscriptions.count } }

    // MARK: connections

    private func opened(_ session: WebSocketSession) {
        let viewer = Viewer(session: session)
        viewers[session.id] = viewer
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
        guard let viewer = viewers[session.id] else { return }
        guard message.isText, let value = try? JSONParser.parse(message.payload), case .object = value else {
            return send(viewer, Self.error(nil, "invalid_message", "send one JSON object per text message"))
        }
        let request = value["req"]
        switch value["op"]?.stringValue {
        case "subscribe":
            guard let job = value["job"]?.stringValue else { return send(viewer, Self.error(request, "invalid_message", "subscribe needs job")) }
            let since = value["since"]?.intValue ?? 0
            guard since >= 0 else { return send(viewer, Self.error(request, "invalid_message", "since must be ≥ 0")) }
            subscribe(viewer, job: job, since: since, rawEvents: value["events"]?.boolValue ?? false, request: request)
        case "unsubscribe":
            guard let job = value["job"]?.stringValue else { return send(viewer, Self.error(request, "invalid_message", "unsubscribe needs job")) }
            viewer.subscriptions[job] = nil
            send(viewer, Self.ack(request, [.init("job", .string(job))]))
        case "launch":
            do {
                let job = try manager.launch(LaunchRequest(json: value))
                send(viewer, Self.ack(request, [.init("job", job.json)]))
            } catch {
                var members: [JSONValue.Member] = [.init("type", "error"), .init("error", .string(error.message)), .init("code", .string(error.code.rawValue))]
                if let field = error.field { members.append(.init("field", .string(field))) }
                if let request { members.append(.init("req", request)) }
                send(viewer, JSONWriter.serialize(.object(members)))
            }
        case "kill":
            guard let job = value["job"]?.stringValue else { return send(viewer, Self.error(request, "invalid_message", "kill needs job")) }
            if job == "*" { return send(viewer, Self.ack(request, [.init("killed", .int(manager.killAll()))])) }
            do throws(JobManager.KillError) {
                try manager.kill(job)
                send(viewer, Self.ack(request, [.init("job", .string(job))]))
            } catch {
                switch error {
                case .notFound: send(viewer, Self.error(request, "unknown_job", "no job \(job)"))
                case .alreadyFinished(_, let status): send(viewer, Self.error(request, "already_finished", "job \(job) already finished (\(status.rawValue))"))
                }
            }
        default:
            send(viewer, Self.error(request, "unknown_op", "op must be subscribe, unsubscribe, launch or kill"))
        }
    }

    // MARK: subscriptions

    private func subscribe(_ viewer: Viewer, job: String, since: Int, rawEvents: Bool, request: JSONValue?) {
        if job == "*" {
            viewer.subscriptions["*"] = Subscription(lastSent: 0, rawEvents: false)
            let snapshot: JSONValue = .object(["type": "snapshot", "jobs": .array(manager.jobs.map(\.json))])
            send(viewer, Self.ack(request, [.init("job", "*")]))
            send(viewer, JSONWriter.serialize(snapshot))
            return
        }
        guard let current = manager.job(job) else {
            send(viewer, Self.error(request, "unknown_job", "no job \(job)"))
            if viewer.closesWhenJobEnds { viewer.session.close(.policyViolation, reason: "unknown job") }
            return
        }
        var start = since
        if since > current.lastSeq {
            // A cursor from the future (another server, a wiped store): say so, restart at the end.
            let reset: JSONValue = .object(["type": "reset", "job": .string(job), "seq": .int(current.lastSeq)])
            send(viewer, JSONWriter.serialize(reset))
            start = current.lastSeq
        }
        viewer.subscriptions[job] = Subscription(lastSent: start, rawEvents: rawEvents)
        if viewer.format == .json, request != nil || !viewer.closesWhenJobEnds {
            send(viewer, Self.ack(request, [.init("job", .string(job)), .init("seq", .int(current.lastSeq))]))
        }
        catchUp(viewer, job: job)
    }

    /// Replays stored events after each subscription's last sent seq, a batch at a time,
    /// until the viewer is current or its queue is full again.
    private func catchUp(_ viewer: Viewer) {
        for job in viewer.subscriptions.keys.sorted() where job != "*" {
            catchUp(viewer, job: job)
        }
    }

    private func catchUp(_ viewer: Viewer, job: String) {
        while !viewer.paused, let subscription = viewer.subscriptions[job] {
            let events = replay(job, since: subscription.lastSent)
            guard !events.isEmpty else { return }
            for (event, bytes) in events {
                guard !viewer.paused else { return }
                send(viewer, event, encoded: bytes, shared: nil)
            }
            if events.count < Self.replayBatch { return }
        }
    }

    /// Events after `since`: from memory when the ring reaches back that far, else the file.
    private func replay(_ job: String, since: Int) -> [(JobEvent, [UInt8])] {
        if let events = recent[job]?.after(since, limit: Self.replayBatch) { return events }
        return manager.encodedEvents(for: job, since: since, limit: Self.replayBatch).map { ($0.event, $0.line) }
    }

    // MARK: live delivery

    private func deliver(_ event: JobEvent, _ bytes: [UInt8]) {
        recent[event.jobId, default: RecentEvents()].append(event, bytes)
        if event.type == "job:completed" {
            // Finished jobs replay from the file; keep memory for running ones.
            let job = event.jobId
            manager.loop.schedule(afterMilliseconds: 60_000) { [weak self] in self?.recent[job] = nil }
        }
        var shared: [Viewer.Format: SharedMessage] = [:]
        let isLifecycle = event.type == "job:started" || event.type == "job:completed"
        for viewer in viewers.values where !viewer.paused {
            let direct = viewer.subscriptions[event.jobId] != nil
            guard direct || (isLifecycle && viewer.subscriptions["*"] != nil) else { continue }
            send(viewer, event, encoded: bytes, shared: &shared, direct: direct)
        }
    }

    private func send(_ viewer: Viewer, _ event: JobEvent, encoded: [UInt8], shared: [Viewer.Format: SharedMessage]?) {
        var cache = shared ?? [:]
        send(viewer, event, encoded: encoded, shared: &cache, direct: true)
    }

    private func send(_ viewer: Viewer, _ event: JobEvent, encoded: [UInt8], shared: inout [Viewer.Format: SharedMessage], direct: Bool) {
        if direct {
            guard var subscription = viewer.subscriptions[event.jobId], event.seq > subscription.lastSent else { return }
            subscription.lastSent = event.seq
            viewer.subscriptions[event.jobId] = subscription
            if event.type == "job:event" && !subscription.rawEvents { return }
        }
        switch viewer.format {
        case .json:
            let message = shared[.json] ?? SharedMessage(payload: encoded, isText: true, compressor: compressor)
            shared[.json] = message
            viewer.session.send(message)
        case .text:
            guard let line = Self.textLine(event) else { break }
            let message = shared[.text] ?? SharedMessage(payload: Array(line.utf8), isText: true, compressor: compressor)
            shared[.text] = message
            viewer.session.send(message)
        }
        if viewer.closesWhenJobEnds, event.type == "job:completed" {
            viewer.session.close(.normalClosure, reason: "job ended")
        }
    }

    /// The `format=text` form of an event: log lines as `exec` prints them, and a final status line.
    static func textLine(_ event: JobEvent) -> String? {
        switch event.payload {
        case .log(let line):
            switch line.stream {
            case .stdout: return line.text
            case .stderr: return "[stderr] " + line.text
            case .system: return "[agentgate] " + line.text
            }
        case .completed(let job):
            var text = "[agentgate] job \(job.id) \(job.status.rawValue)"
            if let code = job.exitCode { text += " (exit \(code))" }
            if let signal = job.signal { text += " (signal \(signal))" }
            return text
        case .started, .agentEvent:
            return nil
        }
    }

    // MARK: messages

    private func send(_ viewer: Viewer, _ bytes: [UInt8]) {
        viewer.session.send(bytes, isText: true)
    }

    static func ack(_ request: JSONValue?, _ members: [JSONValue.Member]) -> [UInt8] {
        var all: [JSONValue.Member] = [.init("type", "ack")]
        if let request { all.append(.init("req", request)) }
        return JSONWriter.serialize(.object(all + members))
    }

    static func error(_ request: JSONValue?, _ code: String, _ message: String) -> [UInt8] {
        var all: [JSONValue.Member] = [.init("type", "error"), .init("error", .string(message)), .init("code", .string(code))]
        if let request { all.append(.init("req", request)) }
        return JSONWriter.serialize(.object(all))
    }

    fileprivate func lagged(_ viewer: Viewer) {
        laggedCloses += 1
        for (job, subscription) in viewer.subscriptions.sorted(by: { $0.key < $1.key }) where job != "*" {
            let message: JSONValue = .object(["type": "lagged", "job": .string(job), "seq": .int(subscription.lastSent)])
            viewer.session.send(JSONWriter.serialize(message), isText: true)
        }
        viewer.session.close(Self.laggedCloseCode, reason: "too far behind; resume with since")
    }
}

struct Subscription {
    /// The highest seq this viewer was sent (or told about) for the job.
    var lastSent: Int
    /// Whether `job:event` (the agent's raw JSON) is wanted.
    var rawEvents: Bool
}

final class Viewer {
    enum Format: Hashable { case json, text }

    let session: WebSocketSession
    var subscriptions: [String: Subscription] = [:]
    var format = Format.json
    var closesWhenJobEnds = false
    private(set) var paused = false
    private var lagTimer: EventLoop.TimerID?

    init(session: WebSocketSession) {
        self.session = session
    }

    func pause(_ hub: SubscriptionHub) {
        guard !paused else { return }
        paused = true
        lagTimer = session.tcp.loop.schedule(afterMilliseconds: hub.lagTimeoutMilliseconds) { [weak self, weak hub] in
            guard let self, let hub, self.paused else { return }
            hub.lagged(self)
        }
    }

    func resume() {
        paused = false
        if let lagTimer { session.tcp.loop.cancel(lagTimer) }
        lagTimer = nil
    }
}
