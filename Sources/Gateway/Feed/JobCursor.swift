/// Where one viewer is in one job's events, and how it gets the next ones: live (each new
/// event goes straight out) or catching up (the store is read a slice at a time until the
/// viewer is current again). No I/O: the hub feeds it events and slices, and does what it
/// answers.
///
/// ```
///  subscribe(since) ─▶ behind ─▶ nextRead ─▶ reading ─▶ replayed ─┬▶ current ─▶ live: send
///                        ▲                                         └▶ behind (more to read)
///                        └──── live event it cannot take now (paused, gap) ◀── current
///  the job's last event sent (a stream that ends with its job) ─▶ ended
/// ```
///
/// A seq is sent at most once and in order: live events at or below `lastSent` are skipped,
/// and one that does not follow `lastSent` puts the cursor behind instead of leaving a hole.
struct JobCursor: Equatable {
    enum State: Equatable {
        /// Live events go straight out.
        case current
        /// Events after `lastSent` are stored and not sent yet.
        case behind
        /// A slice of the store is being read.
        case reading
        /// The job's last event went out to a stream that ends with its job.
        case ended
    }

    /// What to do with a live event.
    enum Step: Equatable {
        case send
        /// Send it, then end the stream: it was the job's last event.
        case sendAndEnd
        case skip
    }

    /// What a slice changed.
    enum Outcome: Equatable {
        /// Current now: live events go straight out again.
        case current
        /// More to read.
        case behind
        /// The job's last event went out: end the stream.
        case ended
    }

    private(set) var lastSent: Int
    private(set) var state: State
    /// Whether the stream ends with the job (SSE job streams, `/ws/jobs/{id}`).
    let endsWithJob: Bool

    /// A cursor after `since` for a job whose last event is `lastSeq`. A cursor past the
    /// end (another server's, a wiped store's) starts at the end: `reset` says so.
    init(since: Int, lastSeq: Int, endsWithJob: Bool) {
        lastSent = min(since, lastSeq)
        state = lastSent < lastSeq ? .behind : .current
        self.endsWithJob = endsWithJob
    }

    static func isReset(since: Int, lastSeq: Int) -> Bool { since > lastSeq }

    /// A job that has ended, followed by a stream that ends with it, with nothing left to
    /// send: the stream ends at once.
    mutating func endIfFinished(jobEnded: Bool, lastSeq: Int) -> Bool {
        guard endsWithJob, jobEnded, lastSent >= lastSeq, state != .ended else { return false }
        state = .ended
        return true
    }

    /// A new event of the job. `flowing`: the viewer's connection takes events now.
    mutating func live(seq: Int, isLast: Bool, flowing: Bool) -> Step {
        guard seq > lastSent, state != .ended else { return .skip }
        guard state == .current, flowing, seq == lastSent + 1 else {
            if state == .current { state = .behind }
            return .skip
        }
        lastSent = seq
        if isLast, endsWithJob {
            state = .ended
            return .sendAndEnd
        }
        return .send
    }

    /// The seq to read after, when the cursor is behind (it is then reading).
    mutating func nextRead() -> Int? {
        guard state == .behind else { return nil }
        state = .reading
        return lastSent
    }

    /// A slice went out: events through `through` (nil: none), after saying `gap` was
    /// missing; `sawLast`: it held a `job:completed`. That ends a stream that ends with its
    /// job only when it is the job's last event and the job has ended (`jobEnded`): a job
    /// continued by a follow-up has the `job:completed` of each earlier run in its log.
    mutating func replayed(through: Int?, gap: ClosedRange<Int>?, sawLast: Bool, lastSeq: Int, jobEnded: Bool) -> Outcome {
        if let gap, gap.upperBound > lastSent { lastSent = gap.upperBound }
        if let through, through > lastSent { lastSent = through }
        if sawLast, endsWithJob, jobEnded, lastSent >= lastSeq {
            state = .ended
            return .ended
        }
        state = lastSent < lastSeq ? .behind : .current
        return state == .current ? .current : .behind
    }

    /// A read came back with nothing (it will be tried again): behind, not reading.
    mutating func readFailed() {
        if state == .reading { state = .behind }
    }
}
