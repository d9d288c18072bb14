import AgentCore
import Testing

@testable import Gateway

/// The feed's decisions with no socket and a clock that is just a number.
@Suite struct JobCursorTests {
    @Test func aViewerBehindReadsThenGoesLiveWithoutLosingOrRepeatingASeq() {
        var cursor = JobCursor(since: 0, lastSeq: 10, endsWithJob: false)
        #expect(cursor.state == .behind)
        // Live events while it is behind are left for the store.
        let r1 = cursor.live(seq: 11, isLast: false, flowing: true)
        #expect(r1 == .skip)
        let r2 = cursor.nextRead()
        #expect(r2 == 0)
        #expect(cursor.state == .reading)
        let r3 = cursor.nextRead()
        #expect(r3 == nil)  // one read at a time
        let r4 = cursor.live(seq: 12, isLast: false, flowing: true)
        #expect(r4 == .skip)
        // The slice covered 1…10; the job is at 12 now: read again.
        let r5 = cursor.replayed(through: 10, gap: nil, sawLast: false, lastSeq: 12, jobEnded: true)
        #expect(r5 == .behind)
        let r6 = cursor.nextRead()
        #expect(r6 == 10)
        let r7 = cursor.replayed(through: 12, gap: nil, sawLast: false, lastSeq: 12, jobEnded: true)
        #expect(r7 == .current)
        // Current: the next event goes straight out, once.
        let r8 = cursor.live(seq: 12, isLast: false, flowing: true)
        #expect(r8 == .skip)
        let r9 = cursor.live(seq: 13, isLast: false, flowing: true)
        #expect(r9 == .send)
        #expect(cursor.lastSent == 13)
    }

    @Test func aCursorFromTheFutureStartsAtTheEndAndIsReset() {
        #expect(JobCursor.isReset(since: 99, lastSeq: 7))
        #expect(!JobCursor.isReset(since: 7, lastSeq: 7))
        let cursor = JobCursor(since: 99, lastSeq: 7, endsWithJob: true)
        #expect(cursor.lastSent == 7)
        #expect(cursor.state == .current)
    }

    @Test func aPauseWhileCurrentPutsTheCursorBehindAndNothingIsSentOutOfOrder() {
        var cursor = JobCursor(since: 5, lastSeq: 5, endsWithJob: false)
        let r10 = cursor.live(seq: 6, isLast: false, flowing: false)
        #expect(r10 == .skip)
        #expect(cursor.state == .behind)
        let r11 = cursor.live(seq: 7, isLast: false, flowing: true)
        #expect(r11 == .skip)  // 6 first, from the store
        let r12 = cursor.nextRead()
        #expect(r12 == 5)
        let r13 = cursor.replayed(through: 7, gap: nil, sawLast: false, lastSeq: 7, jobEnded: true)
        #expect(r13 == .current)
        let r14 = cursor.live(seq: 8, isLast: false, flowing: true)
        #expect(r14 == .send)
    }

    @Test func aLiveEventThatDoesNotFollowIsCaughtUpFromTheStoreNotSentOverAHole() {
        var cursor = JobCursor(since: 5, lastSeq: 5, endsWithJob: false)
        let r15 = cursor.live(seq: 7, isLast: false, flowing: true)
        #expect(r15 == .skip)
        #expect(cursor.state == .behind)
    }

    @Test func aStreamThatEndsWithItsJobEndsOnTheLastEventLiveOrReplayed() {
        var live = JobCursor(since: 0, lastSeq: 0, endsWithJob: true)
        let r16 = live.live(seq: 1, isLast: false, flowing: true)
        #expect(r16 == .send)
        let r17 = live.live(seq: 2, isLast: true, flowing: true)
        #expect(r17 == .sendAndEnd)
        #expect(live.state == .ended)
        let r18 = live.live(seq: 3, isLast: false, flowing: true)
        #expect(r18 == .skip)

        var replayed = JobCursor(since: 0, lastSeq: 40, endsWithJob: true)
        _ = replayed.nextRead()
        let r19 = replayed.replayed(through: 40, gap: nil, sawLast: true, lastSeq: 40, jobEnded: true)
        #expect(r19 == .ended)

        // A job continued by a follow-up has an earlier run's end in its log: a replay
        // passes it and goes on to the job's last event.
        var continued = JobCursor(since: 0, lastSeq: 60, endsWithJob: true)
        _ = continued.nextRead()
        let r19b = continued.replayed(through: 45, gap: nil, sawLast: true, lastSeq: 60, jobEnded: true)
        #expect(r19b == .behind && continued.state == .behind && continued.lastSent == 45)
        // Caught up with a run under way: the earlier run's end does not end the stream.
        var running = JobCursor(since: 0, lastSeq: 50, endsWithJob: true)
        _ = running.nextRead()
        #expect(running.replayed(through: 50, gap: nil, sawLast: true, lastSeq: 50, jobEnded: false) == .current)
        _ = continued.nextRead()
        #expect(continued.replayed(through: 60, gap: nil, sawLast: true, lastSeq: 60, jobEnded: true) == .ended)

        // A `/ws` viewer keeps its connection when a job ends.
        var multi = JobCursor(since: 0, lastSeq: 0, endsWithJob: false)
        let r20 = multi.live(seq: 1, isLast: true, flowing: true)
        #expect(r20 == .send)
        #expect(multi.state == .current)
    }

    @Test func aFinishedJobSeenToItsEndEndsTheStreamAtOnce() {
        var cursor = JobCursor(since: 9, lastSeq: 9, endsWithJob: true)
        let r21 = cursor.endIfFinished(jobEnded: false, lastSeq: 9)
        #expect(!r21)
        let r22 = cursor.endIfFinished(jobEnded: true, lastSeq: 9)
        #expect(r22)
        #expect(cursor.state == .ended)
        var behind = JobCursor(since: 3, lastSeq: 9, endsWithJob: true)
        let r23 = behind.endIfFinished(jobEnded: true, lastSeq: 9)
        #expect(!r23)
    }

    @Test func aGapMovesTheCursorPastTheMissingSeqs() {
        var cursor = JobCursor(since: 3, lastSeq: 20, endsWithJob: false)
        _ = cursor.nextRead()
        let r24 = cursor.replayed(through: nil, gap: 4...9, sawLast: false, lastSeq: 20, jobEnded: true)
        #expect(r24 == .behind)
        #expect(cursor.lastSent == 9)
        let r25 = cursor.nextRead()
        #expect(r25 == 9)
        cursor.readFailed()
        #expect(cursor.state == .behind)
    }
}

@Suite struct ViewerPacingTests {
    let timeouts = ViewerPacing.Timeouts(lagMilliseconds: 30_000, finishMilliseconds: 20_000, graceMilliseconds: 10_000)

    @Test func aPauseThatEndsInTimeIsForgiven() {
        var pacing = ViewerPacing(timeouts: timeouts)
        #expect(pacing.isFlowing && pacing.wakeAt == nil)
        pacing.overBound(now: 1_000)
        #expect(!pacing.isFlowing && pacing.isOpen)
        #expect(pacing.wakeAt == 31_000)
        let r26 = pacing.tick(now: 30_999)
        #expect(r26 == .none)
        pacing.drained()
        #expect(pacing.isFlowing && pacing.wakeAt == nil)
        let r27 = pacing.tick(now: 40_000)
        #expect(r27 == .none)
        // A new pause starts a new clock.
        pacing.overBound(now: 50_000)
        #expect(pacing.wakeAt == 80_000)
    }

    @Test func aViewerPausedPastItsLagTimeoutIsToldAndThenCutIfItStillDoesNotRead() {
        var pacing = ViewerPacing(timeouts: timeouts)
        pacing.overBound(now: 0)
        pacing.overBound(now: 20_000)  // still the first pause
        let r28 = pacing.tick(now: 30_000)
        #expect(r28 == .lag)
        #expect(pacing.phase == .lagging(deadline: 40_000))
        #expect(!pacing.isOpen)
        // Draining now does not reopen it: it was told to resume elsewhere.
        pacing.drained()
        #expect(!pacing.isFlowing)
        let r29 = pacing.tick(now: 39_999)
        #expect(r29 == .none)
        let r30 = pacing.tick(now: 40_000)
        #expect(r30 == .cut)
        #expect(pacing.phase == .closed)
        let r31 = pacing.tick(now: 90_000)
        #expect(r31 == .none)
    }

    @Test func anEndedStreamWaitsForItsReaderThenLagsInsteadOfHangingForEver() {
        var pacing = ViewerPacing(timeouts: timeouts)
        pacing.ending(now: 5_000)
        #expect(!pacing.isOpen)
        #expect(pacing.wakeAt == 25_000)
        pacing.overBound(now: 6_000)  // its last events are big: still ending
        #expect(pacing.phase == .ending(deadline: 25_000))
        let r32 = pacing.tick(now: 24_000)
        #expect(r32 == .none)
        let r33 = pacing.tick(now: 25_000)
        #expect(r33 == .lag)
        let r34 = pacing.tick(now: 35_000)
        #expect(r34 == .cut)
    }

    @Test func aClosedViewerHasNoDeadlines() {
        var pacing = ViewerPacing(timeouts: timeouts)
        pacing.overBound(now: 0)
        pacing.closed()
        #expect(pacing.wakeAt == nil)
        let r35 = pacing.tick(now: 1_000_000)
        #expect(r35 == .none)
        pacing.ending(now: 5)
        #expect(pacing.phase == .closed)
    }
}

@Suite struct RecentEventsTests {
    static func entry(_ seq: Int, bytes: Int) -> RecentEntry {
        RecentEntry(JobEvent(jobId: "j", seq: seq, time: 0, payload: .log(LogLine(.stdout, .text, ""))), [UInt8](repeating: 65, count: bytes))
    }

    @Test func theRingIsBoundedInEventsAndInBytesAndSaysWhenItNoLongerReachesBack() {
        var ring = RecentEvents(capacity: 100, maxBytes: 1 << 20)
        for key in 1...1_000 { ring.append(Self.entry(key, bytes: 10), key: key) }
        #expect(ring.count == 100)
        #expect(ring.oldestKey == 901)
        #expect(ring.after(950, limit: 5)?.map(\.key) == [951, 952, 953, 954, 955])
        #expect(ring.after(899, limit: 5) == nil)  // gone: the caller resets
        #expect(ring.after(1_000, limit: 5)?.isEmpty == true)
        // Big events: the byte bound takes over (each weighs 3 × 1,000 + 256).
        var big = RecentEvents(capacity: 100, maxBytes: 10_000)
        for key in 1...10 { big.append(Self.entry(key, bytes: 1_000), key: key) }
        #expect(big.bytes <= 10_000)
        #expect(big.count == 3)
        #expect(big.oldestKey == 8)
    }

    @Test func aKeyThatDoesNotFollowStartsTheRingOver() {
        var ring = RecentEvents(capacity: 10, maxBytes: 1 << 20)
        ring.append(Self.entry(1, bytes: 1), key: 1)
        ring.append(Self.entry(2, bytes: 1), key: 2)
        ring.append(Self.entry(9, bytes: 1), key: 9)
        #expect(ring.count == 1)
        #expect(ring.oldestKey == 9)
    }
}

/// How read-ahead is shared between replays.
@Suite struct ReplayReadAheadTests {
    static let slice = 128 * 1024

    static func grant(queued: Int = 0, outstanding: Int = 0, active: Int = 1, out: Int = 0) -> Int {
        ReplayReadAhead.slicesToGrant(queuedBytes: queued, outstanding: outstanding, activeReplays: active, slicesOut: out,
                                      sliceBytes: slice, perViewer: 8, total: 256)
    }

    @Test func aLoneLateViewerReadsEightSlicesAheadCountingWhatIsQueued() {
        #expect(Self.grant() == 8)
        #expect(Self.grant(outstanding: 3, out: 3) == 5)
        // Three and a bit slices still queued count as four.
        #expect(Self.grant(queued: 3 * Self.slice + 1, outstanding: 4, out: 4) == 0)
        #expect(Self.grant(queued: 3 * Self.slice, outstanding: 4, out: 4) == 1)
    }

    @Test func aCrowdSharesTheTotalDownToOneSliceEach() {
        // 1,000 replays: one slice each, however the total stands.
        #expect(Self.grant(active: 1_000, out: 999) == 1)
        #expect(Self.grant(outstanding: 1, active: 1_000, out: 300) == 0)
        #expect(Self.grant(queued: 1, active: 1_000, out: 10) == 0)
        // 64 replays: four each.
        #expect(Self.grant(outstanding: 1, active: 64, out: 64) == 3)
    }

    @Test func noViewerIsStarvedAndTheTotalHoldsBeyondEachOnesFirstSlice() {
        // The total is used up: a replay with nothing held still gets its one slice…
        #expect(Self.grant(active: 2, out: 256) == 1)
        // …and one already holding some gets no more.
        #expect(Self.grant(outstanding: 1, active: 2, out: 256) == 0)
        #expect(Self.grant(outstanding: 1, active: 2, out: 250) == 6)
    }
}
