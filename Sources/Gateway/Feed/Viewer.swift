import EventLoop
import WebSocketCore
import WebSocketServer

/// One viewer following one job. A class, so live delivery moves its cursor in place.
final class Subscription {
    let job: String
    var cursor: JobCursor
    /// Whether `job:event` (the agent's raw JSON) is wanted.
    let rawEvents: Bool
    /// Strong: the viewer's subscriptions are dropped when it closes, which breaks the cycle.
    let viewer: Viewer

    init(job: String, cursor: JobCursor, rawEvents: Bool, viewer: Viewer) {
        self.job = job
        self.cursor = cursor
        self.rawEvents = rawEvents
        self.viewer = viewer
    }
}

/// A viewer's replay of one job: the history stream reading it, and the slices granted to
/// it that have not arrived yet.
struct ActiveReplay {
    let stream: HistoryReader.Stream
    let subscription: Subscription
    /// The job's last stored seq when the replay began: a file that ends before it lost events.
    let stored: Int
    /// The size of its slices and how many may be read ahead of the viewer (file slices of
    /// ready frames are larger, and fewer fit under the viewer's bound).
    let sliceBytes: Int
    let readAhead: Int
    var outstanding = 0
}

/// One connection that receives events: a WebSocket (any number of subscriptions) or an SSE
/// stream (one job, or every job).
final class Viewer {
    enum Transport {
        case websocket(WebSocketSession)
        case sse(TCPConnection)
    }

    let transport: Transport
    /// What opened this connection: it ends when that credential does.
    let principal: Gateway.Principal
    var subscriptions: [String: Subscription] = [:]
    var pacing: ViewerPacing
    /// The replay under way for it, if any: one job at a time, so a viewer of many jobs
    /// never has more than one replay's read-ahead in memory.
    var replay: ActiveReplay?
    var readInFlight: Bool { replay != nil }
    /// The timer that calls the pacing's `tick`, and when.
    var wakeTimer: EventLoop.TimerID?
    var wakeAt: Int?
    /// All-jobs streams: the last version sent (nil for every other viewer).
    var allCursor: Int?
    var allRawEvents = false
    /// A `"*"` viewer or all-jobs stream that follows one project's jobs only.
    var projectFilter: String?
    var format = EventWire.Format.json
    var closesWhenJobEnds = false
    /// `"*"` snapshots: one was asked for and not sent yet; when the last one was sent
    /// (monotonic ms); the timer that sends the next when the interval allows.
    var snapshotWanted = false
    var snapshotSentAt: Int?
    var snapshotTimer: EventLoop.TimerID?
    /// This connection's id in `JobControl` (WebSocket connections; 0 for streams).
    var connection = 0
    /// Jobs it asked `presence` for (`subscribe` with `"presence": true`).
    var presenceJobs: Set<String> = []

    init(transport: Transport, principal: Gateway.Principal, timeouts: ViewerPacing.Timeouts) {
        self.transport = transport
        self.principal = principal
        pacing = ViewerPacing(timeouts: timeouts)
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

    /// How replay is framed for this viewer and subscription.
    func framing(rawEvents: Bool) -> EventWire.Framing {
        var framing = EventWire.Framing(format: format, rawEvents: rawEvents)
        if case .websocket(let session) = transport, let parameters = session.deflateParameters {
            let shared = parameters.serverNoContextTakeover && parameters.serverMaxWindowBits == 15
            framing.sharedDeflate = shared
            framing.perConnection = !shared
        }
        return framing
    }
}
