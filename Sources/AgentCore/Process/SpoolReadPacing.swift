/// How long a supervised job's spools wait after a read before a wake reads them again
/// (`SupervisedAgent`'s batch window), from how many jobs are writing: 4 ms while a few write,
/// longer as more do, so the server's wake-ups stay near `readsPerSecond` in all. Each read
/// costs syscalls (the inotify read, the spool read, an append to the event log, a send to
/// each viewer) whatever it carries: at 100 jobs writing 1,000 lines a second, a window of
/// 4 ms read ten lines at a time and the syscalls took a quarter of the server's loop; a
/// wider window takes more lines per read for a few milliseconds more latency. A quiet
/// job's first line is still read at once.
///
/// No I/O and no clock of its own: reads are noted with the time (milliseconds), and a job
/// counts as writing in the 100 ms bucket it last read in.
public struct SpoolReadPacing: Sendable {
    public static let minimumMilliseconds = 4
    public static let maximumMilliseconds = 25
    /// Wake-up reads per second over all jobs that the window aims at.
    public static let readsPerSecond = 4_000
    static let bucketMilliseconds = 100

    /// One job's mark: the bucket it was last counted in.
    public struct Mark: Sendable {
        var bucket = Int.min
        public init() {}
    }

    private var bucket = Int.min
    private var writingNow = 0
    private var writingBefore = 0

    public init() {}

    /// A woken read of a job's spools at `now`.
    public mutating func noteRead(_ mark: inout Mark, now: Int) {
        let current = now / Self.bucketMilliseconds
        if current != bucket {
            // The bucket just past counts; one left empty means nothing wrote in it.
            writingBefore = current == bucket + 1 ? writingNow : 0
            writingNow = 0
            bucket = current
        }
        if mark.bucket != current {
            mark.bucket = current
            writingNow += 1
        }
    }

    /// Jobs that read in the last full bucket, or more in the current one so far.
    public func writingJobs(now: Int) -> Int {
        let current = now / Self.bucketMilliseconds
        if current == bucket { return max(writingBefore, writingNow) }
        return current == bucket + 1 ? writingNow : 0
    }

    /// The batch window at `now`.
    public func windowMilliseconds(now: Int) -> Int {
        let wanted = writingJobs(now: now) * 1_000 / Self.readsPerSecond
        return min(Self.maximumMilliseconds, max(Self.minimumMilliseconds, wanted))
    }
}

/// The one pacing every supervised job of a runner shares (loop-confined).
public final class SpoolReadPacer {
    public private(set) var pacing = SpoolReadPacing()

    public init() {}

    func noteRead(_ mark: inout SpoolReadPacing.Mark, now: Int) {
        pacing.noteRead(&mark, now: now)
    }

    func windowMilliseconds(now: Int) -> Int {
        pacing.windowMilliseconds(now: now)
    }
}
