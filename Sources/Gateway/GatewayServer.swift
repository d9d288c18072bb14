import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketDeflate
import WebSocketServer

/// Everything `agentgate serve` runs on its loop: the HTTP server, the REST routes, and the
/// WebSocket endpoints (`/ws`, `/ws/jobs/{id}`) with their subscriptions.
public final class GatewayServer {
    public let http: HTTPServer
    public let websockets: WebSocketServer
    public let gateway: Gateway
    public let hub: SubscriptionHub
    public var port: Int { http.port }

    public init(
        loop: EventLoop, manager: JobManager, policy: AccessPolicy, configuration: ServerConfiguration, webRoot: String? = nil
    ) throws(SystemError) {
        http = try HTTPServer(loop: loop, configuration: configuration.http)
        credentialCheckMilliseconds = configuration.credentialCheckMilliseconds
        var websocketConfiguration = WebSocketServer.Configuration()
        // One compressed frame per event for every viewer that negotiates deflate.
        websocketConfiguration.deflate = PerMessageDeflateNegotiation(preferServerNoContextTakeover: true)
        // Browsers that cannot set headers send their credential as a subprotocol beside
        // `agentgate.v1`, which is the one echoed (a credential is never sent back).
        websocketConfiguration.subprotocols = ["agentgate.v1"]
        websocketConfiguration.pingIntervalMilliseconds = configuration.viewers.pingIntervalMilliseconds
        websocketConfiguration.pongTimeoutMilliseconds = configuration.viewers.pongTimeoutMilliseconds
        websocketConfiguration.maxQueuedBytes = configuration.viewers.queueBytes
        websockets = try WebSocketServer(loop: loop, configuration: websocketConfiguration, listening: false)
        gateway = Gateway(manager: manager, policy: policy)
        hub = SubscriptionHub(manager: manager, websockets: websockets, limits: configuration.viewers)
        gateway.hub = hub
        gateway.staticFiles = webRoot.map(StaticFiles.init(root:))
        let gateway = self.gateway
        http.handler = { gateway.handle($0) }
        let http = self.http, websockets = self.websockets, hub = self.hub
        gateway.metrics = { Self.metricsText(http: http, websockets: websockets, hub: hub, manager: manager) }
        http.websockets = websockets
        websockets.admit = { session, head in Self.admit(session, head, gateway: gateway) }
    }

    public func start() throws(SystemError) {
        try http.start()
        scheduleCredentialCheck()
    }

    public func stop() {
        if let credentialCheck { http.loop.cancel(credentialCheck) }
        credentialCheck = nil
        http.stop()
        websockets.stop()
    }

    /// See `ServerConfiguration.credentialCheckMilliseconds`.
    public var credentialCheckMilliseconds: Int
    private var credentialCheck: EventLoop.TimerID?

    private func scheduleCredentialCheck() {
        credentialCheck = http.loop.schedule(afterMilliseconds: credentialCheckMilliseconds) { [weak self] in
            guard let self, self.credentialCheck != nil else { return }
            self.gateway.checkCredentials(now: WallClock.milliseconds())
            self.scheduleCredentialCheck()
        }
    }

    /// Prometheus text exposition format, version 0.0.4.
    static func metricsText(http: HTTPServer, websockets: WebSocketServer, hub: SubscriptionHub, manager: JobManager) -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: Int)]) {
            out += "# HELP agentgate_\(name) \(help)\n# TYPE agentgate_\(name) \(type)\n"
            for sample in samples { out += "agentgate_\(name)\(sample.labels) \(sample.value)\n" }
        }
        metric("http_connections", "gauge", "Open TCP connections, WebSocket and SSE included.", [("", http.connectionCount)])
        metric("connections_refused_total", "counter", "Connections refused at a connection limit.", [("", http.refusedConnections)])
        metric(
            "connections_evicted_total", "counter", "Connections with no successful request closed to make room for a new one.",
            [("", http.evictedConnections)])
        metric(
            "unproven_queued_bytes", "gauge", "Bytes queued to connections that have had no successful request.",
            [("", http.unprovenQueuedBytes)])
        metric("accept_pauses_total", "counter", "Times accepting paused because the process ran out of fds.", [("", http.listener.pauses)])
        metric("websocket_connections", "gauge", "Open WebSocket connections.", [("", websockets.sessions.count)])
        metric("sse_streams", "gauge", "Open SSE streams.", [("", hub.streamViewerCount)])
        metric("subscriptions", "gauge", "Job subscriptions held by viewers.", [("", hub.subscriptionCount)])
        var byStatus: [JobStatus: Int] = [:]
        for job in manager.jobs { byStatus[job.status, default: 0] += 1 }
        metric("jobs", "gauge", "Jobs by status.", JobStatus.allCases.map { ("{status=\"\($0.rawValue)\"}", byStatus[$0, default: 0]) })
        metric("job_events_total", "counter", "Events recorded, all jobs (the jobs version).", [("", manager.version)])
        metric("events_sent_total", "counter", "Event messages queued to viewers.", [("", hub.eventsSent)])
        metric("event_bytes_sent_total", "counter", "Bytes of event messages queued to viewers.", [("", hub.bytesSent)])
        metric("slow_consumer_pauses_total", "counter", "Times a viewer's live delivery paused on a full queue.", [("", hub.pauses)])
        metric("slow_consumer_closes_total", "counter", "Viewers closed as lagged.", [("", hub.laggedCloses)])
        metric("queued_bytes", "gauge", "Bytes waiting in viewers' outbound queues (ranges of ready frames files included).", [("", hub.queuedBytes)])
        metric("replay_frames_bytes_total", "counter", "Bytes of replayed events sent from finished jobs' ready frames files (sendfile, no copy through memory).", [("", hub.bytesFromFrames)])
        metric("replays_in_flight", "gauge", "Viewers being caught up from the store now (each one replay, reading ahead of it).", [("", hub.readsInFlight)])
        let admission = manager.admission
        metric("queue_length", "gauge", "Jobs waiting in the queue for a running slot or their key.", [("", admission.waiting.count)])
        metric("running_cap", "gauge", "Jobs that may run at once (serve --max-running; -1: no cap).", [("", admission.limits.maxRunning ?? -1)])
        metric("admitted_slots", "gauge", "Jobs holding a running slot (preparing, running, stopping or finishing).", [("", admission.active.count)])
        let now = WallClock.milliseconds()
        let oldest = admission.waiting.compactMap { manager.job($0.id)?.createdAt }.min().map { now - $0 } ?? 0
        metric("queue_oldest_wait_milliseconds", "gauge", "How long the longest-waiting queued job has waited.", [("", oldest)])
        metric("queue_admitted_total", "counter", "Jobs that waited in the queue and then started.", [("", manager.queueWaits.count)])
        metric("queue_wait_milliseconds_total", "counter", "Time those jobs waited, summed (divide by queue_admitted_total for the mean).", [("", manager.queueWaits.totalMilliseconds)])
        metric("worktree_tasks", "gauge", "Git tasks for worktree jobs (make, record, apply, discard) queued or running (one at a time per repository).", [("", manager.worktreeTasksPending)])
        let storage = manager.storage
        metric("data_free_bytes", "gauge", "Free space in the data dir's file system (last measured).", [("", Int(storage.freeBytes ?? -1))])
        metric("storage_low", "gauge", "1 while the data dir's free space is below the warning threshold.", [("", storage.low ? 1 : 0)])
        metric("storage_failing", "gauge", "1 while the disk refuses writes of events or job records.", [("", storage.failing ? 1 : 0)])
        metric("storage_write_failures_total", "counter", "Writes of events or job records the disk refused.", [("", storage.writeFailures)])
        metric("unstored_event_bytes", "gauge", "Bytes of events held in memory because the disk refused them.", [("", manager.unstoredBytes)])
        metric(
            "dropped_event_bytes_total", "counter", "Bytes of events dropped because the disk refused them for too long.",
            [("", storage.droppedEventBytes)])
        metric("loop_turn_max_milliseconds", "gauge", "The longest event-loop turn since the last scrape.", [("", manager.loop.takeLongestTurnMilliseconds())])
        metric("loop_turns_over_10ms_total", "counter", "Event-loop turns that took more than 10 ms.", [("", manager.loop.turnsOver10Milliseconds)])
        metric("loop_turn_max_cpu_milliseconds", "gauge", "The longest event-loop turn since the last scrape, in the loop thread's CPU time (its work, not time waiting for a core).", [("", manager.loop.takeLongestTurnCPUMilliseconds())])
        metric("loop_turns_over_10ms_cpu_total", "counter", "Event-loop turns whose work took more than 10 ms of the loop thread's CPU time.", [("", manager.loop.turnsOver10MillisecondsOfCPU)])
        return out
    }

    /// WebSocket upgrades: known path, loopback Host, our Origin (always checked: browsers
    /// send it on every upgrade), and the token.
    static func admit(_ session: WebSocketSession, _ head: HTTPHead, gateway: Gateway) -> Handshake.Rejection? {
        let policy = gateway.policy
        let path = head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let parts = path.split(separator: "/")
        guard path == "/ws" || (parts.count == 3 && parts[0] == "ws" && parts[1] == "jobs") else {
            return Handshake.Rejection(404, "no WebSocket endpoint at \(path)")
        }
        guard policy.isAllowedHost(head.headers["Host"]) else { return Handshake.Rejection(403, "Host is not allowed") }
        guard policy.isAllowedOrigin(head.headers["Origin"], host: head.headers["Host"]) else {
            return Handshake.Rejection(403, "Origin is not allowed")
        }
        guard let principal = gateway.authenticate(head.headers) else { return Handshake.Rejection(401, "missing or wrong token") }
        session.userInfo = AdmittedPrincipal(principal)
        return nil
    }
}
