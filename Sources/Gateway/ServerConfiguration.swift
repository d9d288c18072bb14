import AgentCore

/// Everything `agentgate serve` is told and every limit it keeps, in one value: the HTTP
/// server's (connections, requests, queues), the viewers' (queues, subscriptions, pace,
/// replay) and the job engine's (output, storage, kills). Each limit is declared once, with
/// its default and why it has that value: here for the viewers, in `HTTPServer.Configuration`
/// and `JobManager.Configuration` for the others. README "Limits" lists them for operators.
public struct ServerConfiguration: Sendable {
    /// Connections, requests, bodies, deadlines (see `HTTPServer.Configuration`).
    public var http = HTTPServer.Configuration()
    /// Viewers of jobs over WebSocket and SSE.
    public var viewers = ViewerLimits()
    /// The job engine: launch policy, kills, output and storage bounds.
    public var jobs = JobManager.Configuration()
    /// How often open streams and WebSockets are checked against the token file and the
    /// sessions (1 s): a rotation or an expiry ends them within this time.
    public var credentialCheckMilliseconds = 1_000

    public init() {}
}

/// The bounds of viewers: what one connection may hold and how long it may lag.
public struct ViewerLimits: Sendable, Equatable {
    /// Bytes queued for one viewer before its live delivery pauses and it is caught up from
    /// the store instead (1 MiB): a few seconds of a fast agent, and a viewer that stops
    /// reading costs no more than this.
    public var queueBytes = 1 << 20
    /// Subscriptions one WebSocket connection may hold (1,000; more get `too_many_subscriptions`).
    public var maxSubscriptionsPerConnection = 1_000
    /// A paused viewer's time to read again before it is told it lagged (30 s): long enough
    /// for a laptop's sleep or a slow link, short enough that a dead client does not pin
    /// its queue for long.
    public var lagMilliseconds = 30_000
    /// A finished stream's time to have its last bytes read before the viewer is told it
    /// lagged (30 s), and then its time to read that before it is cut (10 s).
    public var finishMilliseconds = 30_000
    public var graceMilliseconds = 10_000
    /// Bytes of stored events read and framed per replay step (128 KiB): a viewer that
    /// catches up holds at most one such slice beyond its queue, and the loop queues a slice
    /// in one append.
    public var replaySliceBytes = 128 * 1024
    /// Slices a viewer's replay may have read ahead of it, counting what is queued for it
    /// (8, 1 MiB): the next slice is ready while the loop writes this one, so a replay is
    /// not held to one slice per loop turn.
    public var replayReadAhead = 8
    /// Slices read ahead over all viewers (256, 32 MiB), beyond each replay's first: a crowd
    /// catching up at once holds one slice each, not eight.
    public var replaySlicesInFlight = 256
    /// Bytes per replay step from a finished job's ready frames (256 KiB): sent with
    /// `sendfile`, they take no memory, so a step can be larger and a loop turn moves more;
    /// as many are read ahead as fit in three quarters of the viewer's queue bound.
    public var replayFileSliceBytes = 256 * 1024
    /// A finished job's log gets ready frames when it has at least this many bytes (1 MiB):
    /// smaller ones replay fast enough read and framed, and frames take disk.
    public var replayFramesMinimumBytes = 1 << 20
    /// Comment lines on idle SSE streams, so proxies and clients keep them open (15 s).
    public var heartbeatMilliseconds = 15_000
    /// WebSocket pings, and how long a pong may take before the peer is dropped (30 s each).
    public var pingIntervalMilliseconds = 30_000
    public var pongTimeoutMilliseconds = 30_000
    /// Least time between two `"*"` snapshots to one connection (250 ms). A client that
    /// repeats subscribe "*" gets every ack at once and one snapshot for all the requests of
    /// an interval: a flood of them costs the loop acks, not snapshots of every job.
    public var snapshotIntervalMilliseconds = 250
    /// Finished jobs in a `"*"` snapshot (the newest 100, besides every unfinished one): the
    /// job list pages through the rest, so a snapshot stays small however many jobs there are.
    public var snapshotFinishedJobs = 100
    /// Events of all jobs kept for all-jobs SSE streams that reconnect (`Last-Event-ID`): at
    /// most 16,384 and 32 MiB with their encodings, and only while such a stream is attached
    /// or left less than a minute ago.
    public var allJobsRingEvents = 16_384
    public var allJobsRingBytes = 32 << 20

    public init() {}

    var pacing: ViewerPacing.Timeouts {
        ViewerPacing.Timeouts(lagMilliseconds: lagMilliseconds, finishMilliseconds: finishMilliseconds, graceMilliseconds: graceMilliseconds)
    }
}
