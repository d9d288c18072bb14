import AgentCore
import HTTPCore

/// Why a request is refused, said the same way wherever it was made: a REST answer
/// (`{"error","code","field"}` with the status) or a WebSocket message (`{"type":"error",…}`
/// with the request's `req`). Every refusal the API makes is one of these, built here.
public struct APIError: Error, Sendable, Equatable {
    public let status: Int
    /// Stable, for programs (`unknown_job`); `message` is for people.
    public let code: String
    public let message: String
    /// The request field at fault, when one is.
    public var field: String?
    /// For 405: the methods the route takes (the `Allow` header).
    public var allowed: String?
    /// For `apply_conflict`: the files that kept the change from applying.
    public var conflicts: [String] = []

    public init(_ status: Int, _ code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    /// A launch refused by the engine (400 naming the field, or 507 for a full disk).
    public init(_ error: LaunchError) {
        self.init(error.httpStatus, error.code.rawValue, error.message, field: error.field)
    }

    /// The engine's kill refused.
    init(_ error: JobManager.KillError) {
        switch error {
        case .notFound(let id): self = .unknownJob(id)
        case .alreadyFinished(let id, let status): self.init(409, "already_finished", "job \(id) already finished (\(status.rawValue))")
        }
    }

    /// The engine's delete refused.
    init(_ error: JobManager.DeleteError) {
        switch error {
        case .notFound(let id): self = .unknownJob(id)
        case .stillRunning(let id, let status):
            self.init(409, "still_running", "job \(id) has not finished (\(status.rawValue)); kill it first")
        case .storage(let message): self.init(507, "insufficient_storage", message)
        case .unreviewedWork(let id, let branch):
            self.init(
                409, "unreviewed_work",
                "job \(id)'s worktree holds a change nobody applied or discarded (\(branch)); apply or discard it first")
        }
    }

    /// A follow-up message refused.
    init(_ error: JobManager.MessageError, job id: String) {
        switch error {
        case .unknownJob: self = .unknownJob(id)
        case .invalidText(let message): self.init(400, "invalid_field", message, field: "text")
        case .notConversational(let provider):
            self.init(409, "not_conversational", "job \(id)'s agent (\(provider)) takes no messages while it runs")
        case .notAccepting(let status):
            let why = status == .running ? "its agent has answered every message and is ending" : "it is \(status.rawValue)"
            self.init(409, "not_accepting_messages", "job \(id) takes no messages now: \(why)")
        case .tooMany(let message):
            self.init(429, "too_many_messages", message)
        case .cannotContinue(let launch):
            self.init(launch.httpStatus == 400 ? 409 : launch.httpStatus, "cannot_continue", "job \(id) cannot be continued: \(launch.message)", field: launch.field)
        case .busy(let message):
            self.init(503, "server_busy", message)
        }
    }

    /// A permission answer refused.
    init(_ error: JobManager.PermissionError, job id: String) {
        switch error {
        case .unknownJob: self = .unknownJob(id)
        case .noQuestion(let request): self.init(409, "no_question", "job \(id) has no open permission question \(request) (answered, expired, or never asked)")
        case .unknownOption(let option): self.init(400, "invalid_field", "the question has no option \(option)", field: "optionId")
        case .notRunning(let status): self.init(409, "not_running", "job \(id) is \(status.rawValue)")
        }
    }

    /// An apply or discard refused; a conflict names its files (`conflicts`).
    init(_ error: JobManager.ReviewError) {
        switch error {
        case .notFound(let id): self = .unknownJob(id)
        case .noWorktree(let message): self.init(409, "no_worktree", message)
        case .busy(let message): self.init(409, "worktree_busy", message)
        case .alreadyApplied(let message): self.init(409, "already_applied", message)
        case .failed(let failure):
            self.init(409, failure.conflicts.isEmpty ? "git_failed" : "apply_conflict", failure.message)
            conflicts = failure.conflicts
        }
    }

    // MARK: the catalogue

    static func unknownJob(_ id: String) -> APIError { APIError(404, "unknown_job", "no job \(id)") }
    static func notFound(_ what: String) -> APIError { APIError(404, "not_found", what) }
    static func invalidQuery(_ message: String) -> APIError { APIError(400, "invalid_query", message) }
    static func invalidMessage(_ message: String) -> APIError { APIError(400, "invalid_message", message) }
    static func invalidJSON(_ detail: String) -> APIError { APIError(400, "invalid_json", "the body is not valid JSON: \(detail)") }
    static let unauthorized = APIError(401, "unauthorized", "missing or wrong token")
    static let forbiddenHost = APIError(403, "forbidden_host", "Host is not a loopback name or a configured one")
    static let forbiddenOrigin = APIError(403, "forbidden_origin", "Origin is not allowed to change state here")
    static let unsupportedMediaType = APIError(415, "unsupported_media_type", "send the body as Content-Type: application/json")

    static func methodNotAllowed(_ allowed: String) -> APIError {
        var error = APIError(405, "method_not_allowed", "use \(allowed)")
        error.allowed = allowed
        return error
    }

    // MARK: rendering

    /// `{"error":…,"code":…,"field":…}`.
    var members: [JSONValue.Member] {
        var members: [JSONValue.Member] = [.init("error", .string(message)), .init("code", .string(code))]
        if let field { members.append(.init("field", .string(field))) }
        if !conflicts.isEmpty { members.append(.init("conflicts", .array(conflicts.map(JSONValue.string)))) }
        return members
    }

    /// The REST answer.
    var response: HTTPServer.Response {
        var response = HTTPServer.Response.json(status, JSONWriter.serialize(.object(members)))
        if let allowed { response.headers.add("Allow", allowed) }
        return response
    }

    /// The WebSocket (or SSE) message, echoing the request's `req`.
    func message(request: JSONValue?) -> JSONValue {
        var all: [JSONValue.Member] = [.init("type", "error")]
        all += members
        if let request { all.append(.init("req", request)) }
        return .object(all)
    }
}
