#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import Synchronization

/// Where jobs' events are kept: appended by the engine on the loop, read in slices from any
/// seq by the history thread. Today's implementation is a file per job (`EventFiles`); the
/// in-memory one serves tests, and a database-backed one can take its place when a
/// deployment outgrows one machine.
public protocol JobEventStore: AnyObject, Sendable {
    /// Makes room for a new job's events.
    func create(job: String) throws(SystemError)
    /// Appends whole encoded lines (each ending in "\n", seqs ascending) and returns the
    /// seq of the last event stored. A refused append keeps nothing of `lines`.
    func append(job: String, lines: [UInt8]) throws(SystemError) -> Int
    /// Nothing more will be appended for a while (a finished job): let its resources go.
    func close(job: String)
    /// A reader of the job's events, used by one thread at a time.
    func reader(job: String) -> any JobEventReader
    /// Removes a finished job's events.
    func delete(job: String)
    /// The job's event log as a file, when the store keeps one: files derived from it (the
    /// ready replay frames) are kept beside it and go with it.
    func eventsFile(job: String) -> String?
}

extension JobEventStore {
    public func eventsFile(job: String) -> String? { nil }
}

/// Reads one job's stored events from any seq.
public protocol JobEventReader: AnyObject {
    /// Whole events after `since`, up to about `maxBytes` (at least one) and `maxEvents`.
    func slice(after since: Int, maxBytes: Int, maxEvents: Int) -> EventSlice
    /// The last seq stored now (0: none).
    func lastSeq() -> Int
}

extension EventLogReader: JobEventReader {}

/// Events in `<data>/jobs/<id>/events.ndjson` with their index (`EventLog`,
/// `EventLogReader`). Appending is loop-confined; readers are made on any thread.
public final class EventFiles: JobEventStore, @unchecked Sendable {
    public let jobsDirectory: String
    /// Open logs of jobs being written (loop only).
    private var logs: [String: EventLog] = [:]

    public init(jobsDirectory: String) {
        self.jobsDirectory = jobsDirectory
    }

    public func path(job: String) -> String { jobsDirectory + "/" + job + "/events.ndjson" }

    public func create(job: String) throws(SystemError) {
        let directory = jobsDirectory + "/" + job
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw SystemError.last("mkdir \(directory)") }
        logs[job] = EventLog(path: path(job: job))
    }

    public func append(job: String, lines: [UInt8]) throws(SystemError) -> Int {
        let log = logs[job] ?? EventLog(path: path(job: job))
        logs[job] = log
        try log.append(lines)
        return log.lastSeq
    }

    public func close(job: String) {
        logs.removeValue(forKey: job)?.close()
    }

    public func reader(job: String) -> any JobEventReader {
        EventLogReader(path: path(job: job))
    }

    public func eventsFile(job: String) -> String? { path(job: job) }

    /// The files go with the job's directory (`JobStore.delete`); here the open log goes.
    public func delete(job: String) {
        close(job: job)
    }
}

/// Events in memory, for tests of the engine and the hub without files. Thread-safe: the
/// history thread reads while the loop appends.
public final class EventsInMemory: JobEventStore {
    private let jobs = Mutex<[String: [UInt8]]>([:])
    /// Makes the next appends fail, as a full disk does.
    public let refusingWrites = Mutex<Bool>(false)

    public init() {}

    public func create(job: String) throws(SystemError) {
        jobs.withLock { $0[job] = $0[job] ?? [] }
    }

    public func append(job: String, lines: [UInt8]) throws(SystemError) -> Int {
        if refusingWrites.withLock({ $0 }) { throw SystemError("write events of \(job)", errno: ENOSPC) }
        return jobs.withLock { all in
            all[job, default: []] += lines
            return EventLineScanner.seqOfLastLine(all[job]!) ?? 0
        }
    }

    public func close(job: String) {}

    public func reader(job: String) -> any JobEventReader { Reader(store: self, job: job) }

    public func delete(job: String) {
        _ = jobs.withLock { $0.removeValue(forKey: job) }
    }

    fileprivate func lines(of job: String) -> [UInt8] { jobs.withLock { $0[job] ?? [] } }

    private final class Reader: JobEventReader {
        let store: EventsInMemory
        let job: String

        init(store: EventsInMemory, job: String) {
            self.store = store
            self.job = job
        }

        func slice(after since: Int, maxBytes: Int, maxEvents: Int) -> EventSlice {
            let lines = store.lines(of: job)
            var slice = EventSlice.of(lines: lines, after: since, maxBytes: maxBytes, maxEvents: maxEvents) ?? EventSlice()
            slice.reachedEnd = slice.gap == nil && (slice.lines.last?.seq ?? since) >= lastSeq()
            return slice
        }

        func lastSeq() -> Int { EventLineScanner.seqOfLastLine(store.lines(of: job)) ?? 0 }
    }
}
