import AgentCore
import EventLoop
import HTTPCore

/// The REST routes over the job engine, behind the access policy. Runs on the loop that
/// runs the jobs, so a handler reads and changes jobs without locks.
///
/// Every `/api/` request must name a loopback (or configured) Host and carry the token;
/// state-changing ones must also come from our own Origin when a browser sends one.
public final class Gateway {
    public let manager: JobManager
    public var policy: AccessPolicy

    public init(manager: JobManager, policy: AccessPolicy) {
        self.manager = manager
        self.policy = policy
    }

    /// Routes one request.
    public func handle(_ request: HTTPRequest) -> HTTPServer.Response {
        let headers = request.head.headers
        guard policy.isAllowedHost(headers["Host"]) else {
            return .error(403, code: "forbidden_host", "Host is not a loopback name or a configured one")
        }
        let path = request.path
        let method = request.head.method
        if path == "/healthz" {
            return method == "GET" ? .json(200, Array("{\"status\":\"ok\"}".utf8)) : Self.methodNotAllowed("GET")
        }
        guard path.hasPrefix("/api/") else { return .error(404, code: "not_found", "no route for \(path)") }
        guard policy.isAuthenticated(headers) else {
            // Said the same way for every route: no hint whether a job exists.
            return .error(401, code: "unauthorized", "missing or wrong token")
        }
        if method != "GET" && method != "HEAD", !policy.isAllowedOrigin(headers["Origin"], host: headers["Host"]) {
            return .error(403, code: "forbidden_origin", "Origin is not allowed to change state here")
        }
        switch (method, Route(path: path)) {
        case ("GET", .capabilities):
            return .json(200, JSONWriter.serialize(manager.detector.current().json))
        case ("GET", .jobs):
            let jobs = JSONValue.array(manager.jobs.map(\.json))
            return .json(200, JSONWriter.serialize(.object(["jobs": jobs, "version": .int(manager.jobs.map(\.lastSeq).reduce(0, +))])))
        case ("POST", .jobs):
            return launch(request)
        case ("DELETE", .jobs):
            return .json(200, JSONWriter.serialize(.object(["killed": .int(manager.killAll())])))
        case ("GET", .job(let id)):
            guard let job = manager.job(id) else { return Self.unknownJob(id) }
            return .json(200, JSONWriter.serialize(.object(["job": job.json])))
        case ("DELETE", .job(let id)):
            do throws(JobManager.KillError) {
                try manager.kill(id)
            } catch {
                switch error {
                case .notFound: return Self.unknownJob(id)
                case .alreadyFinished(_, let status):
                    return .error(409, code: "already_finished", "job \(id) already finished (\(status.rawValue))")
                }
            }
            return .json(200, JSONWriter.serialize(.object(["job": manager.job(id)!.json])))
        case ("GET", .jobEvents(let id)):
            guard manager.job(id) != nil else { return Self.unknownJob(id) }
            let query = Self.query(request.head.target)
            guard let since = Self.nonNegative(query["since"], default: 0), let limit = Self.nonNegative(query["limit"], default: 1000),
                limit > 0, limit <= 10_000
            else {
                return .error(400, code: "invalid_query", "since and limit must be non-negative integers (limit 1…10000)")
            }
            var body: [UInt8] = Array("{\"events\":[".utf8)
            for (index, event) in manager.events(for: id, since: since, limit: limit).enumerated() {
                if index > 0 { body.append(UInt8(ascii: ",")) }
                body += event.encoded()
            }
            body += Array("]}".utf8)
            return .json(200, body)
        case (_, .jobs):
            return Self.methodNotAllowed("GET, POST, DELETE")
        case (_, .job):
            return Self.methodNotAllowed("GET, DELETE")
        case (_, .capabilities), (_, .jobEvents):
            return Self.methodNotAllowed("GET")
        case (_, .unknown):
            return .error(404, code: "not_found", "no route for \(path)")
        }
    }

    /// The API's paths.
    enum Route: Equatable {
        case capabilities
        case jobs
        case job(String)
        case jobEvents(String)
        case unknown

        init(path: Substring) {
            let parts = path.split(separator: "/").map(String.init)
            guard parts.count >= 3, parts[0] == "api", parts[1] == "agents" else {
                self = .unknown
                return
            }
            switch (parts.count, parts[2]) {
            case (3, "capabilities"): self = .capabilities
            case (3, "jobs"): self = .jobs
            case (4, "jobs"): self = .job(parts[3])
            case (5, "jobs") where parts[4] == "events": self = .jobEvents(parts[3])
            default: self = .unknown
            }
        }
    }

    private func launch(_ request: HTTPRequest) -> HTTPServer.Response {
        let value: JSONValue
        do {
            value = try JSONParser.parse(request.body)
        } catch {
            return .error(400, code: "invalid_json", "the body is not valid JSON: \(error)")
        }
        do {
            let launch = try LaunchRequest(json: value)
            let job = try manager.launch(launch)
            return .json(201, JSONWriter.serialize(.object(["job": job.json])))
        } catch {
            var body: [JSONValue.Member] = [.init("error", .string(error.message)), .init("code", .string(error.code.rawValue))]
            if let field = error.field { body.append(.init("field", .string(field))) }
            return .json(400, JSONWriter.serialize(.object(body)))
        }
    }

    static func unknownJob(_ id: String) -> HTTPServer.Response {
        .error(404, code: "unknown_job", "no job \(id)")
    }

    static func methodNotAllowed(_ allowed: String) -> HTTPServer.Response {
        var response = HTTPServer.Response.error(405, code: "method_not_allowed", "use \(allowed)")
        response.headers.add("Allow", allowed)
        return response
    }

    /// `a=1&b=2` → ["a": "1", "b": "2"] (no percent-decoding needed for our integer params).
    static func query(_ target: String) -> [String: String] {
        guard let mark = target.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            result[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return result
    }

    static func nonNegative(_ text: String?, default value: Int) -> Int? {
        guard let text else { return value }
        guard !text.isEmpty, text.count <= 15, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(text)
    }
}
