#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import EventLoop
import Foundation

/// Durable jobs: their records in a `JobRecords` (by default SQLite, `<data>/agentgate.sqlite`),
/// their events in a `JobEventStore` (by default `<data>/jobs/<id>/events.ndjson`), and each
/// job's directory for what its agent writes.
public final class JobStore {
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String

        public init(description: String) {
            self.description = description
        }
    }

    public let dataDirectory: String
    /// Where the jobs' records are kept.
    public private(set) var records: any JobRecords
    /// Where the jobs' events are kept.
    public let events: any JobEventStore

    /// - Parameters:
    ///   - records: the job records (default: `<data>/agentgate.sqlite`, rebuilt from the job
    ///     directories when it is empty or damaged).
    ///   - events: the event store (default: the event files in the data dir).
    public init(dataDirectory: String, records: (any JobRecords)? = nil, events: (any JobEventStore)? = nil) throws(Error) {
        self.dataDirectory = dataDirectory
        self.events = events ?? EventFiles(jobsDirectory: dataDirectory + "/jobs")
        try Self.prepare(dataDirectory: dataDirectory)
        // What deletions interrupted by a crash left behind.
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/jobs")) ?? []).filter { $0.hasPrefix(".deleted-") }
        Self.removeInBackground(leftovers.map { dataDirectory + "/jobs/" + $0 })
        if let records {
            self.records = records
            return
        }
        let databasePath = dataDirectory + "/agentgate.sqlite"
        var info = stat()
        let wasEmpty = stat(databasePath, &info) != 0 || info.st_size == 0
        self.records = JobRecordsInMemory()
        do {
            self.records = try SQLiteJobRecords(path: databasePath)
            if wasEmpty, Self.hasJobDirectories(dataDirectory + "/jobs") {
                try rebuild(reason: "\(databasePath) was empty")
            }
        } catch let error as SQLiteDatabase.Error where error.code == 11 || error.code == 26 {
            // SQLITE_CORRUPT, SQLITE_NOTADB: the database is an index of the job directories,
            // so it is put aside (never deleted) and made again from them.
            let aside = databasePath + ".damaged-\(WallClock.milliseconds())"
            for suffix in ["", "-wal", "-shm"] { rename(databasePath + suffix, aside + suffix) }
            do {
                self.records = try SQLiteJobRecords(path: databasePath)
                try rebuild(reason: "\(databasePath) was damaged (\(error.message)); it is kept as \(aside)")
            } catch {
                throw Error(description: "cannot rebuild the job database \(databasePath): \(error)")
            }
        } catch {
            throw Error(description: "cannot open the job database \(databasePath): \(error)")
        }
    }

    /// Makes the data dir (0700, ours) and its `jobs/`: what taking its lock needs. A process
    /// takes the lock before it opens the store, because opening may rebuild the database.
    public static func prepare(dataDirectory: String) throws(Error) {
        do {
            try makeDirectory(dataDirectory)
        } catch {
            throw Error(description: "cannot create data directory \(dataDirectory): \(error.message)")
        }
        try makePrivate(dataDirectory)
        do {
            try makeDirectory(dataDirectory + "/jobs")
        } catch {
            throw Error(description: "cannot create data directory \(dataDirectory): \(error.message)")
        }
    }

    /// What happened to the store while it opened (a rebuilt database), for the operator's log.
    public private(set) var startupNotes: [String] = []

    private static func hasJobDirectories(_ path: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).contains(where: isValidJobId)
    }

    /// Makes every job's record again from its directory: the last `job:completed` of its
    /// events, or else its `job:started` (a job that was running; recovery then marks it
    /// interrupted), with its last seq.
    private func rebuild(reason: String) throws(Error) {
        var rebuilt = 0
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/jobs")) ?? []
        for id in names.sorted() where Self.isValidJobId(id) {
            guard var job = completedEvent(for: id) ?? startedJob(id) else { continue }
            job.lastSeq = max(job.lastSeq, lastSeq(for: id))
            try save(job)
            rebuilt += 1
        }
        startupNotes.append("\(reason): rebuilt \(rebuilt) job record(s) from \(dataDirectory)/jobs")
    }

    /// The job as its first event (`job:started`) describes it.
    private func startedJob(_ id: String) -> Job? {
        let slice = events.reader(job: id).slice(after: 0, maxBytes: 1, maxEvents: 1)
        guard let line = slice.lines.first, let value = try? JSONParser.parse(Array(slice.bytes[line.range])),
            let event = JobEvent(json: value), case .started(var job) = event.payload
        else { return nil }
        job.lastSeq = event.seq
        return job
    }

    /// `mkdir -p` with mode 0700: job data holds prompts and agent output.
    static func makeDirectory(_ path: String) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST { throw SystemError.last("mkdir \(prefix)") }
        }
    }

    /// The data dir holds the token, prompts and agent output: one that already existed is
    /// made 0700 when it is ours, and refused when another user owns it (they could read
    /// everything, or swap files under us).
    static func makePrivate(_ path: String) throws(Error) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Error(description: "cannot use data directory \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw Error(description: "data directory \(path) is not a directory") }
        let user = geteuid()
        guard info.st_uid == user else {
            throw Error(description: "data directory \(path) is owned by uid \(info.st_uid), not by you (uid \(user)); refusing it (use --data-dir with a directory of your own)")
        }
        guard info.st_mode & 0o077 != 0 else { return }
        guard chmod(path, info.st_mode & 0o700) == 0 else {
            throw Error(description: "cannot make data directory \(path) private (chmod 700 \(path)): \(String(cString: strerror(errno)))")
        }
    }

    /// Job ids are ours (`JobID.make()`), but anything read from a client is checked before
    /// it becomes part of a path.
    public static func isValidJobId(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 }
    }

    public func jobDirectory(_ id: String) -> String { dataDirectory + "/jobs/" + id }

    public func save(_ job: Job) throws(Error) {
        try records.save(job)
    }

    /// Removes a job for good: its record, its events and its directory (whatever the agent
    /// left there; links are removed, never followed). The directory is first renamed to
    /// `jobs/.deleted-<id>` (one rename, so a crash never leaves half a job that a rebuild
    /// would bring back), then removed on a background thread: a job with gigabytes of events
    /// costs the loop no more than a small one.
    public func delete(_ id: String) throws(Error) {
        guard Self.isValidJobId(id) else { return }
        events.delete(job: id)
        let directory = jobDirectory(id)
        let doomed = dataDirectory + "/jobs/.deleted-" + id
        var info = stat()
        let hasDirectory = lstat(directory, &info) == 0
        if hasDirectory, rename(directory, doomed) != 0 {
            throw Error(description: "cannot remove \(directory): \(String(cString: strerror(errno)))")
        }
        try records.delete(id)
        if hasDirectory { Self.removeInBackground([doomed]) }
    }

    /// Removes directories on a background thread (deleted jobs' files).
    static func removeInBackground(_ paths: [String]) {
        guard !paths.isEmpty else { return }
        DispatchQueue.global(qos: .utility).async {
            for path in paths { try? FileManager.default.removeItem(atPath: path) }
        }
    }

    /// One stored job as saved, whole.
    public func loadJob(_ id: String) -> Job? { records.load(id) }

    /// A queued job's launch request, kept with the records until it is admitted or ends.
    public func saveRequest(_ request: String, of id: String) throws(Error) { try records.saveRequest(request, of: id) }
    public func loadRequest(_ id: String) -> String? { records.loadRequest(id) }
    public func deleteRequest(_ id: String) { records.deleteRequest(id) }

    /// Every stored job, oldest first.
    public func loadJobs() throws(Error) -> [Job] { try records.loadAll() }

    /// Stored events of a job with seq > `since`, at most `limit`.
    public func events(for id: String, since: Int = 0, limit: Int = .max) -> [JobEvent] {
        encodedEvents(for: id, since: since, limit: limit).map(\.event)
    }

    /// Like `events(for:since:limit:)`, with each event's stored line (the bytes viewers get).
    public func encodedEvents(for id: String, since: Int = 0, limit: Int = .max) -> [(event: JobEvent, line: [UInt8])] {
        guard Self.isValidJobId(id) else { return [] }
        let reader = events.reader(job: id)
        var found: [(event: JobEvent, line: [UInt8])] = []
        var cursor = since
        while found.count < limit {
            let slice = reader.slice(after: cursor, maxBytes: 1 << 20, maxEvents: limit - found.count)
            for line in slice.lines {
                let bytes = Array(slice.bytes[line.range])
                if let value = try? JSONParser.parse(bytes), let event = JobEvent(json: value) { found.append((event, bytes)) }
            }
            if let gap = slice.gap {
                cursor = gap.upperBound
                continue
            }
            guard let last = slice.lines.last else { break }
            cursor = last.seq
        }
        return found
    }

    /// The job as its last event left it, when that event is its `job:completed`.
    public func completedEvent(for id: String) -> Job? {
        guard Self.isValidJobId(id) else { return nil }
        let reader = events.reader(job: id)
        let last = reader.lastSeq()
        let slice = reader.slice(after: last - 1, maxBytes: 1, maxEvents: 1)
        guard last > 0, let line = slice.lines.first, let value = try? JSONParser.parse(Array(slice.bytes[line.range])), let event = JobEvent(json: value),
            case .completed(var job) = event.payload
        else { return nil }
        job.lastSeq = event.seq
        return job
    }

    public func lastSeq(for id: String) -> Int {
        guard Self.isValidJobId(id) else { return 0 }
        return events.reader(job: id).lastSeq()
    }
}
