/// The pace of one viewer connection, with the clock passed in: flowing; paused while its
/// queue is over its bound (caught up from the store once it drains); told it lagged and
/// closed when it stays paused too long; and the deadlines that make sure a connection
/// that stops reading is let go. No I/O and no timers of its own: the hub calls `tick` at
/// the time `wakeAt` names and does what it answers.
///
/// ```
///  flowing ─ over bound ─▶ paused ─ drained ─▶ flowing
///     │                      └─ lagTimeout ─▶ lagging (lagged + 4008 queued after the bytes in flight)
///     └─ last event queued ─▶ ending (normal close queued)   │
///                               └─ finishTimeout, unread ─▶ lagging ─ graceTimeout ─▶ cut
/// ```
struct ViewerPacing: Equatable {
    struct Timeouts: Equatable {
        /// A paused viewer's time to start reading again (30 s).
        var lagMilliseconds = 30_000
        /// After the end of a stream is queued, its time to read it (30 s).
        var finishMilliseconds = 30_000
        /// After `lagged` is queued, its time to read it before the connection is cut (10 s).
        var graceMilliseconds = 10_000
    }

    enum Phase: Equatable {
        case flowing
        case paused(since: Int)
        case ending(deadline: Int)
        case lagging(deadline: Int)
        case closed
    }

    /// What `tick` asks for.
    enum Action: Equatable {
        case none
        /// Drop what is queued and unsent, queue `lagged` and a 4008 close.
        case lag
        /// Close the connection now.
        case cut
    }

    let timeouts: Timeouts
    private(set) var phase = Phase.flowing

    init(timeouts: Timeouts = Timeouts()) {
        self.timeouts = timeouts
    }

    /// Live events and replay go out only while flowing.
    var isFlowing: Bool { phase == .flowing }

    /// Whether it is still sending anything at all.
    var isOpen: Bool {
        switch phase {
        case .flowing, .paused: true
        case .ending, .lagging, .closed: false
        }
    }

    /// When `tick` must be called next (nil: no deadline).
    var wakeAt: Int? {
        switch phase {
        case .paused(let since): since + timeouts.lagMilliseconds
        case .ending(let deadline), .lagging(let deadline): deadline
        case .flowing, .closed: nil
        }
    }

    /// The queue went over its bound, or a replay waits for the viewer to read what it was
    /// sent (its read-ahead is used up and nothing more is on its way).
    mutating func overBound(now: Int) {
        if phase == .flowing { phase = .paused(since: now) }
    }

    /// The queue drained after being over its bound: flowing again, caught up from the store.
    mutating func drained() {
        if case .paused = phase { phase = .flowing }
    }

    /// The stream's last bytes and its close are queued.
    mutating func ending(now: Int) {
        guard isOpen else { return }
        phase = .ending(deadline: now + timeouts.finishMilliseconds)
    }

    /// The connection closed.
    mutating func closed() {
        phase = .closed
    }

    mutating func tick(now: Int) -> Action {
        switch phase {
        case .paused(let since) where now >= since + timeouts.lagMilliseconds:
            phase = .lagging(deadline: now + timeouts.graceMilliseconds)
            return .lag
        case .ending(let deadline) where now >= deadline:
            // Its last events are still unread: it is told so, like any viewer that lags.
            phase = .lagging(deadline: now + timeouts.graceMilliseconds)
            return .lag
        case .lagging(let deadline) where now >= deadline:
            phase = .closed
            return .cut
        default:
            return .none
        }
    }
}
