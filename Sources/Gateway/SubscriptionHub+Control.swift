import AgentCore
import EventLoop

/// Who steers each job and who watches it (issue 17), over `/ws`: `JobControl` decides,
/// this carries it out. `presence` messages (`{"type":"presence","job","viewers","controller",
/// "you"}`) go to the connections that subscribed with `"presence": true`, at most once per
/// `presenceIntervalMilliseconds` per job however many viewers come and go, encoded twice
/// (the controller's copy says `"you":"controller"`, everyone else's `"viewer"`).
extension SubscriptionHub {
    static let presenceIntervalMilliseconds = 100

    /// The WebSocket connection with this id, while it is open.
    func viewer(connection: JobControl.Connection) -> Viewer? { connections[connection] }

    func isWatching(_ job: String) -> (JobControl.Connection) -> Bool {
        { [unowned self] connection in self.connections[connection]?.subscriptions[job] != nil }
    }

    /// Refuses a steering op from a connection that does not control the job.
    func checkControl(_ viewer: Viewer, _ job: String) throws(APIError) {
        guard !control.mayControl(job, viewer.connection, isWatching: isWatching(job)), let holder = control.controller(of: job) else { return }
        throw APIError(
            409, "not_controller",
            "connection \(viewer.connection) is a viewer of job \(job); connection \(holder) controls it (ask with {\"op\":\"control\",\"job\":\"\(job)\"})")
    }

    func launched(_ job: String, by viewer: Viewer) {
        control.launched(job, by: viewer.connection)
        presenceChanged(job)
    }

    /// `control`: granted when nobody holds it; otherwise the holder is told who asks.
    func askControl(_ viewer: Viewer, _ job: String, request: JSONValue?) throws(APIError) {
        guard manager.job(job) != nil else { throw .unknownJob(job) }
        // Control is for whoever watches: it goes when they stop.
        guard viewer.subscriptions[job] != nil else {
            throw APIError(409, "not_watching", "subscribe to job \(job) before asking for control of it")
        }
        switch control.ask(job, viewer.connection) {
        case .granted:
            sendControl(viewer, Self.ack(request, controlMembers(job, viewer)))
            presenceChanged(job)
        case .asked(let holder, let new):
            sendControl(viewer, Self.ack(request, controlMembers(job, viewer) + [.init("asked", true)]))
            if new, let holderViewer = connections[holder] {
                sendControl(holderViewer, .object(["type": "control_request", "job": .string(job), "from": .int(viewer.connection)]))
            }
        }
    }

    func releaseControl(_ viewer: Viewer, _ job: String, request: JSONValue?) throws(APIError) {
        guard control.controller(of: job) == viewer.connection else { throw notHolding(viewer, job) }
        control.left(job, viewer.connection, isWatching: isWatching(job))
        sendControl(viewer, Self.ack(request, controlMembers(job, viewer)))
        presenceChanged(job)
    }

    func handOver(_ viewer: Viewer, _ job: String, to: JobControl.Connection, request: JSONValue?) throws(APIError) {
        guard control.controller(of: job) == viewer.connection else { throw notHolding(viewer, job) }
        guard control.handOver(job, from: viewer.connection, to: to, isWatching: isWatching(job)) else {
            throw APIError(400, "not_watching", "connection \(to) does not watch job \(job)", field: "to")
        }
        sendControl(viewer, Self.ack(request, controlMembers(job, viewer)))
        presenceChanged(job)
    }

    /// A connection stopped watching a job (unsubscribed, or closed): it leaves the job's
    /// control, and the others see one viewer fewer.
    func stoppedWatching(_ viewer: Viewer, _ job: String) {
        viewer.presenceJobs.remove(job)
        control.left(job, viewer.connection, isWatching: isWatching(job))
        presenceChanged(job)
    }

    /// A connection closed: whatever it controlled or asked for passes on.
    func connectionClosed(_ viewer: Viewer) {
        for job in control.jobs(of: viewer.connection) {
            control.left(job, viewer.connection, isWatching: isWatching(job))
            presenceChanged(job)
        }
    }

    private func controlMembers(_ job: String, _ viewer: Viewer) -> [JSONValue.Member] {
        [.init("job", .string(job)), .init("connection", .int(viewer.connection)),
         .init("controller", control.controller(of: job).map(JSONValue.int) ?? .null)]
    }

    private func notHolding(_ viewer: Viewer, _ job: String) -> APIError {
        APIError(409, "not_controller", "connection \(viewer.connection) does not control job \(job)")
    }

    // MARK: presence

    /// The job's viewers or controller changed: its presence goes out with the next flush.
    func presenceChanged(_ job: String) {
        presenceDue.insert(job)
        guard presenceTimer == nil else { return }
        presenceTimer = manager.loop.schedule(afterMilliseconds: Self.presenceIntervalMilliseconds) { [weak self] in
            guard let self else { return }
            self.presenceTimer = nil
            self.flushPresence()
        }
    }

    func flushPresence() {
        let due = presenceDue
        presenceDue.removeAll()
        for job in due {
            let subscriptions = channels[job] ?? []
            let controller = control.controller(of: job)
            let message = { (you: String) -> JSONValue in
                .object([
                    "type": "presence", "job": .string(job), "viewers": .int(subscriptions.count),
                    "controller": controller.map(JSONValue.int) ?? .null, "you": .string(you),
                ])
            }
            let asViewer = JSONWriter.serialize(message("viewer"))
            let asController = JSONWriter.serialize(message("controller"))
            for subscription in subscriptions {
                let viewer = subscription.viewer
                guard viewer.presenceJobs.contains(job), viewer.pacing.isOpen, case .websocket(let session) = viewer.transport else { continue }
                session.send(viewer.connection == controller ? asController : asViewer, isText: true)
            }
        }
    }
}
