#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Durable jobs: metadata in SQLite (`<data>/agentgate.sqlite`), each job's events in a
/// `JobEventStore` (by default `<data>/jobs/<id>/events.ndjson`).
public final class JobStore {
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String

        public init(description: String) {
            self.description = description
        }
    }

    public let dataDirectory: String
    private let database: SQLiteDatabase
    /// Where the jobs' events are kept.
    public let events: any JobEventStore

    /// - Parameter events: the event store (default: the event files in the data dir).
    public init(dataDirectory: String, events: (any JobEventStore)? = nil) throws(Error) {
        self.dataDirectory = dataDirectory
        self.events = events ?? EventFiles(jobsDirectory: dataDirectory + "/jobs")
        do {
            try Self.makeDirectory(dataDirectory)
        } catch {
            throw Error(description: "cannot create data directory \(dataDirectory): \(error.message)")
        }
        try Self.makePrivate(dataDirectory)
        do {
            try Self.makeDirectory(dataDirectory + "/jobs")
        } catch {
            throw Error(description: "cannot create data directory \(dataDirectory): \(error.message)")
        }
        // Create the file 0600 first: SQLite gives its -wal and -shm files the same mode.
        let databasePath = dataDirectory + "/agentgate.sqlite"
        let created = open(databasePath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if created >= 0 { close(created) }
        do {
            database = try SQLiteDatabase(path: databasePath)
            try database.execute(
                """
                PRAGMA journal_mode=WAL;
                PRAGMA synchronous=NORMAL;
                CREATE TABLE IF NOT EXISTS jobs (
                    id TEXT PRIMARY KEY,
                    created_at INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    data TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
                """)
        } catch {
            throw Error(description: "cannot open job database in \(dataDirectory): \(error)")
        }
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

    public func save(_ job: Job) throws(SQLiteDatabase.Error) {
        try database.query(
            "INSERT INTO jobs (id, created_at, status, data) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, data = excluded.data",
            [.text(job.id), .int(job.createdAt), .text(job.status.rawValue), .text(JSONWriter.string(job.json))])
    }

    /// Every stored job, oldest first.
    public func loadJobs() throws(SQLiteDatabase.Error) -> [Job] {
        try database.query("SELECT data FROM jobs ORDER BY created_at, id").compactMap { row in
            guard case .text(let text)? = row.first, let value = try? JSONParser.parse(text) else { return nil }
            return Job(json: value)
        }
    }

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
