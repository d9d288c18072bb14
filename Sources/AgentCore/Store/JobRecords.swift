#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Where jobs' records are kept (what `Job.json` holds): today a SQLite table
/// (`SQLiteJobRecords`), in tests a dictionary, and later a PostgreSQL table when a
/// deployment outgrows one machine. Used on the loop.
public protocol JobRecords: AnyObject {
    /// Inserts or replaces a job's record.
    func save(_ job: Job) throws(JobStore.Error)
    /// One record, whole (nil: none).
    func load(_ id: String) -> Job?
    /// Every record, oldest first (by creation time, then id).
    func loadAll() throws(JobStore.Error) -> [Job]
    func delete(_ id: String) throws(JobStore.Error)
    /// A queued job's launch request (its JSON), kept with the records rather than in the
    /// job's directory, where an agent running as the same user could rewrite it.
    func saveRequest(_ request: String, of id: String) throws(JobStore.Error)
    func loadRequest(_ id: String) -> String?
    func deleteRequest(_ id: String)
}

/// The `jobs` table of `<data>/agentgate.sqlite` (WAL): id, created_at, status and the job's
/// JSON. Errors name the database's path.
final class SQLiteJobRecords: JobRecords {
    let path: String
    private let database: SQLiteDatabase

    /// Opens (creating it 0600: SQLite gives its -wal and -shm files the same mode) and checks
    /// the database, so a damaged one fails here, not at the first query.
    init(path: String) throws(SQLiteDatabase.Error) {
        self.path = path
        let created = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if created >= 0 { close(created) }
        database = try SQLiteDatabase(path: path)
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
            CREATE TABLE IF NOT EXISTS queued_requests (
                id TEXT PRIMARY KEY,
                request TEXT NOT NULL
            );
            """)
        let check = try database.query("PRAGMA quick_check(1)")
        guard case .text("ok")? = check.first?.first else {
            throw SQLiteDatabase.Error(code: 11, message: "quick_check: \(check.first?.first.map { "\($0)" } ?? "no answer")")
        }
    }

    private func failure(_ doing: String, _ error: SQLiteDatabase.Error) -> JobStore.Error {
        JobStore.Error(description: "cannot \(doing) in \(path): \(error)")
    }

    func save(_ job: Job) throws(JobStore.Error) {
        do {
            try database.query(
                "INSERT INTO jobs (id, created_at, status, data) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, data = excluded.data",
                [.text(job.id), .int(job.createdAt), .text(job.status.rawValue), .text(JSONWriter.string(job.json))])
        } catch {
            throw failure("save job \(job.id)", error)
        }
    }

    func load(_ id: String) -> Job? {
        guard let rows = try? database.query("SELECT data FROM jobs WHERE id = ?", [.text(id)]),
            case .text(let text)? = rows.first?.first, let value = try? JSONParser.parse(text)
        else { return nil }
        return Job(json: value)
    }

    func loadAll() throws(JobStore.Error) -> [Job] {
        let rows: [[SQLiteDatabase.Value]]
        do {
            rows = try database.query("SELECT data FROM jobs ORDER BY created_at, rowid")
        } catch {
            throw failure("read the jobs", error)
        }
        return rows.compactMap { row in
            guard case .text(let text)? = row.first, let value = try? JSONParser.parse(text) else { return nil }
            return Job(json: value)
        }
    }

    func delete(_ id: String) throws(JobStore.Error) {
        do {
            try database.query("DELETE FROM jobs WHERE id = ?", [.text(id)])
            try database.query("DELETE FROM queued_requests WHERE id = ?", [.text(id)])
        } catch {
            throw failure("delete job \(id)", error)
        }
    }

    func saveRequest(_ request: String, of id: String) throws(JobStore.Error) {
        do {
            try database.query(
                "INSERT INTO queued_requests (id, request) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET request = excluded.request",
                [.text(id), .text(request)])
        } catch {
            throw failure("keep the request of job \(id)", error)
        }
    }

    func loadRequest(_ id: String) -> String? {
        guard let rows = try? database.query("SELECT request FROM queued_requests WHERE id = ?", [.text(id)]),
            case .text(let text)? = rows.first?.first
        else { return nil }
        return text
    }

    func deleteRequest(_ id: String) {
        _ = try? database.query("DELETE FROM queued_requests WHERE id = ?", [.text(id)])
    }
}

/// Records in memory, for tests of the engine without a database.
public final class JobRecordsInMemory: JobRecords {
    private var jobs: [String: Job] = [:]

    public init() {}

    public func save(_ job: Job) throws(JobStore.Error) { jobs[job.id] = job }
    public func load(_ id: String) -> Job? { jobs[id] }
    public func loadAll() throws(JobStore.Error) -> [Job] {
        jobs.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }
    public func delete(_ id: String) throws(JobStore.Error) {
        jobs[id] = nil
        requests[id] = nil
    }
    private var requests: [String: String] = [:]
    public func saveRequest(_ request: String, of id: String) throws(JobStore.Error) { requests[id] = request }
    public func loadRequest(_ id: String) -> String? { requests[id] }
    public func deleteRequest(_ id: String) { requests[id] = nil }
}
