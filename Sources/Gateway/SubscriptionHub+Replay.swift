import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketServer

/// Catching viewers up from the store: one history slice at a time per viewer, read and
/// framed off the loop, and what to say when the store ends short.
extension SubscriptionHub {
    /// Catches a viewer up after a pause: its all-jobs stream from memory, its job cursors
    /// from the event files.
    func catchUp(_ viewer: Viewer) {
        if viewer.allCursor != nil { catchUpAll(viewer) }
        pump(viewer)
    }

    /// Everything queued for a viewer is written: a replay waiting for it to read goes on.
    func flushed(_ key: ObjectIdentifier) {
        guard let viewer = viewers[key] else { return }
        if case .paused = viewer.pacing.phase, !viewer.tcp.isOverBound { return drained(key) }
        pump(viewer)
    }

    /// Starts a replay for a viewer that is behind on some job, or lets the one under way
    /// read further: slices are read ahead of the viewer up to `replayReadAhead`, counting
    /// what is still queued for it, so a replay runs at the pace the viewer reads and the
    /// next slice is ready when this one is written.
    func pump(_ viewer: Viewer) {
        guard viewer.pacing.isFlowing, viewer.tcp.isOpen else { return }
        if viewer.replay != nil { return grantSlices(viewer) }
        let behind = viewer.subscriptions.values.filter { $0.cursor.state == .behind }
        guard !behind.isEmpty else { return }
        // The files then hold every event written so far: a slice that ends before that has
        // lost some. A cursor at the end of what is stored waits for more (a disk that
        // refuses writes): the next event of its job calls this again.
        manager.flushLogs()
        guard let subscription = behind.filter({ $0.cursor.lastSent < manager.storedLastSeq(of: $0.job) }).min(by: { $0.job < $1.job }),
            let after = subscription.cursor.nextRead()
        else { return replayUnstored(viewer, behind) }
        let framing = viewer.framing(rawEvents: subscription.rawEvents)
        let finishedAt = wholeFinishedJob(subscription.job)
        let stream = history.stream(
            job: subscription.job, after: after, maxBytes: limits.replaySliceBytes,
            framing: framing, finishedAt: finishedAt, frames: framesLimits, loop: manager.loop
        ) { [weak self, weak viewer] stream, replay in
            self?.arrived { [weak self, weak viewer] in
                guard let self, let viewer else { return }
                self.replayed(replay, from: stream, to: viewer)
            }
        }
        // Slices from ready frames are larger: as many are read ahead as fit in three quarters
        // of the viewer's queue bound, so a replay never takes a viewer over it (which would
        // count it slow) however its bytes are held.
        let fromFrames = finishedAt != nil && ReplayFrames.serves(framing)
        let sliceBytes = fromFrames ? limits.replayFileSliceBytes : limits.replaySliceBytes
        let readAhead = fromFrames ? max(1, limits.queueBytes * 3 / 4 / max(1, sliceBytes)) : limits.replayReadAhead
        viewer.replay = ActiveReplay(
            stream: stream, subscription: subscription, stored: manager.storedLastSeq(of: subscription.job), sliceBytes: sliceBytes,
            readAhead: readAhead)
        activeReplays += 1
        grantSlices(viewer)
    }

    /// The last seq of a job that is finished with every event stored (its log will not
    /// change: ready frames can serve it).
    func wholeFinishedJob(_ id: String) -> Int? {
        guard let job = manager.job(id), job.status.isFinished, manager.storedLastSeq(of: id) == job.lastSeq else { return nil }
        return job.lastSeq
    }

    var framesLimits: ReplayFrames.Limits {
        ReplayFrames.Limits(sliceBytes: limits.replayFileSliceBytes, minimumLogBytes: limits.replayFramesMinimumBytes)
    }

    /// Once a job's end is stored, its ready frames are built for the viewers that come late.
    func prepareFrames(afterCompletionOf id: String) {
        let bound = LoopBound(self)
        manager.loop.execute {
            let hub = bound.value
            hub.manager.flushLogs()
            if let lastSeq = hub.wholeFinishedJob(id) {
                hub.history.prepareFrames(job: id, lastSeq: lastSeq, minimumBytes: hub.limits.replayFramesMinimumBytes)
            }
        }
    }

    /// Lets a viewer's replay read as far ahead as its queue and the total allow
    /// (`ReplayReadAhead`).
    func grantSlices(_ viewer: Viewer) {
        guard var active = viewer.replay, viewer.pacing.isFlowing, viewer.tcp.isOpen else { return }
        let wanted = ReplayReadAhead.slicesToGrant(
            queuedBytes: viewer.tcp.queuedBytes, outstanding: active.outstanding, activeReplays: activeReplays,
            slicesOut: replaySlicesOut, sliceBytes: active.sliceBytes, perViewer: active.readAhead,
            total: limits.replaySlicesInFlight)
        guard wanted > 0 else {
            // Nothing on its way and no room for more: the replay waits for the viewer to read
            // what it was sent. That counts as paused, so a viewer that never reads again is
            // told it lagged on time; the queue emptying lets it flow again (`flushed`).
            if active.outstanding == 0, viewer.tcp.queuedBytes > 0 {
                viewer.pacing.overBound(now: MonotonicClock.milliseconds())
                scheduleWake(viewer)
            }
            return
        }
        active.outstanding += wanted
        replaySlicesOut += wanted
        viewer.replay = active
        history.grant(active.stream, slices: wanted)
    }

    /// Stops a viewer's replay (done, its subscription gone, the viewer gone): slices of it
    /// still on their way are dropped when they arrive.
    func endReplay(_ viewer: Viewer) {
        guard let active = viewer.replay else { return }
        viewer.replay = nil
        activeReplays -= 1
        replaySlicesOut -= active.outstanding
        history.cancel(active.stream)
        active.subscription.cursor.readFailed()
    }

    /// Queues a slice's delivery; a drain on the next loop turn takes `slicesPerTurn` of them.
    func arrived(_ delivery: @escaping () -> Void) {
        arrivals.append(delivery)
        guard !drainScheduled else { return }
        drainScheduled = true
        let bound = LoopBound(self)
        manager.loop.execute { bound.value.drainArrivals() }
    }

    func drainArrivals() {
        drainScheduled = false
        // At most `slicesPerTurn`, and none once the turn has used its budget.
        var taken = 0
        while arrivalsHead < arrivals.count, taken < Self.slicesPerTurn,
            taken == 0 || manager.loop.turnElapsedNanoseconds < EventLoop.turnBudgetNanoseconds
        {
            let delivery = arrivals[arrivalsHead]
            arrivalsHead += 1
            taken += 1
            delivery()
        }
        if arrivalsHead == arrivals.count {
            arrivals.removeAll(keepingCapacity: true)
            arrivalsHead = 0
        }
        if arrivalsHead < arrivals.count, !drainScheduled {
            drainScheduled = true
            let bound = LoopBound(self)
            manager.loop.execute { bound.value.drainArrivals() }
        }
    }

    /// A slice read for a viewer: queued as it is (one buffer), then the cursor moves on.
    func replayed(_ replay: EventWire.Replay, from stream: HistoryReader.Stream, to viewer: Viewer) {
        // A slice of a replay that was stopped: dropped (its events are read again if wanted).
        guard var active = viewer.replay, active.stream === stream else { return }
        active.outstanding -= 1
        replaySlicesOut -= 1
        viewer.replay = active
        let subscription = active.subscription
        let stored = active.stored
        guard viewers[ObjectIdentifier(viewer.tcp)] === viewer, viewer.subscriptions[subscription.job] === subscription,
            viewer.pacing.isOpen
        else {
            endReplay(viewer)
            return pump(viewer)
        }
        guard let job = manager.job(subscription.job) else { return endReplay(viewer) }
        if let gap = replay.gap { sendGap(viewer, job: job.id, gap) }
        write(replay, job: job.id, to: viewer)
        // Written now, not at the end of the turn: the turn's budget for replay then counts
        // the copy into the socket too (with sendfile, most of a slice's cost).
        viewer.tcp.flushNow()
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
                let whole = manager.details(of: job.id) ?? job
                let completed = JobEvent(jobId: job.id, seq: job.lastSeq, time: job.endedAt ?? WallClock.milliseconds(), payload: .completed(whole))
                var shared = SharedEncodings()
                write(completed, completed.encoded(), version: nil, to: viewer, shared: &shared)
                through = job.lastSeq
                sawLast = true
            } else {
                gap = (lastSent + 1)...stored
                sendGap(viewer, job: job.id, gap!)
            }
        }
        let outcome = subscription.cursor.replayed(through: through, gap: replay.gap ?? gap, sawLast: sawLast, lastSeq: job.lastSeq, jobEnded: job.status.isFinished)
        if replay.isLast || outcome != .behind { endReplay(viewer) }
        switch outcome {
        case .ended: return end(viewer)
        case .current: sendPartial(subscription)
        case .behind: break
        }
        pump(viewer)
    }

    /// While the disk refuses writes, a viewer at the end of what is stored gets the newer
    /// events from memory (a slice per call), so it sees the job stop and why.
    func replayUnstored(_ viewer: Viewer, _ behind: [Subscription]) {
        for subscription in behind.sorted(by: { $0.job < $1.job }) {
            guard let job = manager.job(subscription.job),
                let slice = manager.unstoredEvents(of: job.id, after: subscription.cursor.lastSent, maxBytes: limits.replaySliceBytes),
                subscription.cursor.nextRead() != nil
            else { continue }
            let replay = EventWire.replay(slice, framing: viewer.framing(rawEvents: subscription.rawEvents), compressor: compressor)
            if let gap = replay.gap { sendGap(viewer, job: job.id, gap) }
            write(replay, job: job.id, to: viewer)
            switch subscription.cursor.replayed(through: replay.through, gap: replay.gap, sawLast: replay.sawLast, lastSeq: job.lastSeq, jobEnded: job.status.isFinished) {
            case .ended: return end(viewer)
            case .current: sendPartial(subscription)
            case .behind: break
            }
            return
        }
    }

    func write(_ replay: EventWire.Replay, job: String, to viewer: Viewer) {
        bytesSent += viewer.write(replay, job: job)
        bytesFromFrames += replay.file?.bytes.count ?? 0
        eventsSent += replay.events
    }

    /// `{"type":"gap","job":…,"from":N,"to":M}`: seqs N…M of the job are not in the store.
    func sendGap(_ viewer: Viewer, job: String, _ gap: ClosedRange<Int>) {
        sendControl(viewer, .object(["type": "gap", "job": .string(job), "from": .int(gap.lowerBound), "to": .int(gap.upperBound)]))
    }

    /// The line being streamed, if any, to a viewer that just became current on its job.
    func sendPartial(_ subscription: Subscription) {
        guard subscription.viewer.pacing.isFlowing, subscription.cursor.lastSent == manager.job(subscription.job)?.lastSeq,
            let bytes = manager.encodedPartial(of: subscription.job)
        else { return }
        var shared = SharedEncodings()
        writePartial(bytes, to: subscription, shared: &shared)
    }

    /// An all-jobs stream after a pause: the missed events from memory, or a reset and a
    /// new snapshot when they are no longer there.
    func catchUpAll(_ viewer: Viewer) {
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
}
