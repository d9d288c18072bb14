/// A page of the job list: newest first, filtered by the server, resumed with a cursor.
public struct JobQuery: Sendable, Equatable {
    /// Jobs per page: 100 unless asked, at most 1,000 (a page is built in well under a
    /// millisecond and stays a few hundred KiB).
    public static let defaultLimit = 100
    public static let maxLimit = 1_000

    public var limit = JobQuery.defaultLimit
    /// Only jobs older than this one (the previous page's `nextCursor`).
    public var cursor: Cursor?
    public var statuses: Set<JobStatus>?
    public var provider: String?
    public var label: String?
    public var project: String?

    public init() {}

    /// Where a page ended: the last job's creation time and id. Jobs are ordered by both, so
    /// a cursor stays valid when newer jobs arrive or that job is deleted.
    public struct Cursor: Sendable, Equatable, Comparable {
        public var createdAt: Int
        public var id: String

        public init(createdAt: Int, id: String) {
            self.createdAt = createdAt
            self.id = id
        }

        public init(_ job: Job) {
            self.init(createdAt: job.createdAt, id: job.id)
        }

        /// `<createdAt>.<id>`, as `nextCursor` carries it.
        public var text: String { "\(createdAt).\(id)" }

        public init?(text: String) {
            let parts = text.split(separator: ".", maxSplits: 1)
            guard parts.count == 2, parts[0].count <= 16, let createdAt = Int(parts[0]), createdAt >= 0,
                JobStore.isValidJobId(String(parts[1]))
            else { return nil }
            self.init(createdAt: createdAt, id: String(parts[1]))
        }

        public static func < (a: Cursor, b: Cursor) -> Bool {
            (a.createdAt, a.id) < (b.createdAt, b.id)
        }
    }

    /// Parses `limit`, `cursor`, `status` (comma-separated), `provider`, `label` and `project`; nil
    /// and the reason for a value past its limits.
    public static func parse(_ query: [String: String]) -> Result<JobQuery, QueryError> {
        var parsed = JobQuery()
        if let text = query["limit"] {
            guard let limit = Int(text), text.count <= 5, (1...maxLimit).contains(limit) else {
                return .failure(QueryError(field: "limit", message: "limit must be 1…\(maxLimit)"))
            }
            parsed.limit = limit
        }
        if let text = query["cursor"] {
            guard let cursor = Cursor(text: text) else {
                return .failure(QueryError(field: "cursor", message: "cursor must be a nextCursor from an earlier page"))
            }
            parsed.cursor = cursor
        }
        if let text = query["status"] {
            var statuses = Set<JobStatus>()
            for name in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let status = JobStatus(rawValue: String(name)) else {
                    return .failure(
                        QueryError(field: "status", message: "status must be one or more of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")), comma-separated"))
                }
                statuses.insert(status)
            }
            parsed.statuses = statuses
        }
        if let project = query["project"] {
            guard LaunchRequest.isProjectName(project) else {
                return .failure(QueryError(field: "project", message: "project must match \(LaunchRequest.projectPattern)"))
            }
            parsed.project = project
        }
        for (field, keyPath) in [("provider", \JobQuery.provider), ("label", \JobQuery.label)] {
            guard let text = query[field] else { continue }
            guard !text.isEmpty, text.utf8.count <= 1_024 else {
                return .failure(QueryError(field: field, message: "\(field) must be 1…1024 bytes"))
            }
            parsed[keyPath: keyPath] = text
        }
        return .success(parsed)
    }

    public struct QueryError: Error, Sendable, Equatable {
        public var field: String
        public var message: String
    }

    public func matches(_ job: Job) -> Bool {
        if let statuses, !statuses.contains(job.status) { return false }
        if let provider, job.provider != provider { return false }
        if let label, job.label != label { return false }
        if let project, job.project != project { return false }
        if let cursor, !(Cursor(job) < cursor) { return false }
        return true
    }

    /// The page this query asks for from `newestFirst`, and the cursor of the next page when
    /// there is one.
    public func page(of newestFirst: some Sequence<Job>) -> (jobs: [Job], next: Cursor?) {
        var found: [Job] = []
        for job in newestFirst where matches(job) {
            if found.count == limit { return (found, Cursor(found[found.count - 1])) }
            found.append(job)
        }
        return (found, nil)
    }
}
