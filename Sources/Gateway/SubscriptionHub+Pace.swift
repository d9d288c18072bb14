import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketServer

/// How fast each viewer is served: pauses on a full queue, the deadlines `ViewerPacing`
/// sets, the end of a stream, and lagging.
extension SubscriptionHub {
    // MARK: pace

    func overBound(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key], viewer.pacing.isFlowing else { return }
        pauses += 1
        viewer.pacing.overBound(now: MonotonicClock.milliseconds())
        scheduleWake(viewer)
    }

    func drained(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key] else { return }
        viewer.pacing.drained()
        scheduleWake(viewer)
        catchUp(viewer)
        sendWantedSnapshot(viewer)
    }

    /// Arms the timer for the pacing's next deadline.
    func scheduleWake(_ viewer: Viewer) {
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

    func tick(_ viewer: Viewer) {
        switch viewer.pacing.tick(now: MonotonicClock.milliseconds()) {
        case .none: break
        case .lag: lag(viewer)
        case .cut: viewer.tcp.close()
        }
        scheduleWake(viewer)
    }

    /// The end of a stream that ends with its job: closed normally once what is queued has
    /// been read (however slowly, up to the pacing's deadline).
    func end(_ viewer: Viewer) {
        viewer.pacing.ending(now: MonotonicClock.milliseconds())
        scheduleWake(viewer)
        viewer.tcp.whenFlushed { [weak viewer] in
            guard let viewer, case .ending = viewer.pacing.phase else { return }
            viewer.closeNormally()
        }
    }

    /// Too far behind: what is queued and unsent is dropped (whole messages: the one being
    /// written is finished), and the viewer is told where each of its cursors stands, so it
    /// can resume with `since`; then a 4008 close. It goes out right behind the bytes already
    /// in flight, so even a viewer that reads again much later sees it before anything else.
    func lag(_ viewer: Viewer) {
        laggedCloses += 1
        let dropped = viewer.dropUnsent()
        // The last event of each stream that is still delivered: before the first one dropped.
        var firstDropped: [String: Int] = [:]
        for buffer in dropped {
            guard let label = buffer.label else { continue }
            firstDropped[label.stream] = min(firstDropped[label.stream] ?? .max, label.events.lowerBound)
        }
        for (job, subscription) in viewer.subscriptions.sorted(by: { $0.key < $1.key }) {
            let seq = firstDropped[job].map { $0 - 1 } ?? subscription.cursor.lastSent
            viewer.sendControl(.object(["type": "lagged", "job": .string(job), "seq": .int(seq)]))
        }
        if let cursor = viewer.allCursor {
            let version = firstDropped[EventWire.allJobsStream].map { $0 - 1 } ?? cursor
            viewer.sendControl(.object(["type": "lagged", "version": .int(version)]))
        }
        viewer.closeLagged()
    }
}
