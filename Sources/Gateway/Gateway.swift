import AgentCore
import Dispatch
import Foundation
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
    /// Streams (SSE) are served by the hub; nil until the server wires one in.
    public var hub: SubscriptionHub?
    /// The dashboard's files (nil: not installed).
    public var staticFiles: StaticFiles?
    /// `/metrics` text, supplied by the server that knows its connections.
    public var metrics: (() -> String)?
    private var idempotency = IdempotencyCache()
    private var commands: JobCommands { JobCommands(manager: manager) }
    /// Dashboard sessions (credentials traded for the token).
    public var sessions = SessionStore()
    /// Watches the token file, when the token came from one.
    public var tokenWatcher: TokenWatcher?
    /// Where sessions are saved so they outlive a restart (nil: memory only).
    public var sessionFile: String?
    private var refreshWaiters: [(HTTPServer.Response) -> Void] = []

    public init(manager: JobManager, policy: AccessPolicy) {
        self.manager = manager
        self.policy = policy
    }

    /// Routes one request. Only an answer to a request with a valid credential lets its
    /// connection outlive the HTTP server's short first-request deadline: loading the
    /// dashboard's public files or failing to sign in keeps a connection "unproven".
    /// Called with each request refused for its credential, Host or Origin (401, 403), and
    /// each launch or kill refused (4xx), with the error code, for the operator's log.
    public var onRefused: ((HTTPRequest, Int, String) -> Void)?

    public func handle(_ request: HTTPRequest) -> HTTPServer.Response {
        // Checked once: the credential check looks up a session and may look at the token file.
        let principal = authenticate(request.head.headers)
        var response = route(request, principal: principal)
        if response.later == nil, response.proves == nil {
            response.proves = response.status < 400 && principal != nil
        }
        // Refused for the credential, Host or Origin, or a change (launch, kill) refused.
        let method = request.head.method
        if response.status == 401 || response.status == 403 || (400..<500).contains(response.status) && method != "GET" && method != "HEAD" {
            let code = (try? JSONParser.parse(response.body))?["code"]?.stringValue ?? ""
            onRefused?(request, response.status, code)
        }
        return response
    }

    private func route(_ request: HTTPRequest, principal: Principal?) -> HTTPServer.Response {
        let headers = request.head.headers
        guard policy.isAllowedHost(headers["Host"]) else {
            return APIError.forbiddenHost.response
        }
        let path = request.path
        let method = request.head.method
        if path == "/healthz" {
            return method == "GET" ? .json(200, Array("{\"status\":\"ok\"}".utf8)) : Self.methodNotAllowed("GET")
        }
        let isAPI = path.hasPrefix("/api/")
        guard isAPI || path == "/metrics" else { return serveFile(path, method: method) }
        if method != "GET" && method != "HEAD", !policy.isAllowedOrigin(headers["Origin"], host: headers["Host"]) {
            return APIError.forbiddenOrigin.response
        }
        if let failure = Self.mediaTypeFailure(request, route: Route(path: path)) { return failure }
        if path == "/api/session" { return session(request, principal: principal) }
        guard let principal else {
            // Said the same way for every route: no hint whether a job exists.
            return APIError.unauthorized.response
        }
        if path == "/metrics" {
            guard method == "GET" else { return Self.methodNotAllowed("GET") }
            var textHeaders = HTTPHeaders()
            textHeaders.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            return HTTPServer.Response(status: 200, headers: textHeaders, body: Array((metrics?() ?? "").utf8))
        }
        switch (method, Route(path: path)) {
        case ("GET", .capabilities):
            return .json(200, capabilitiesBody(manager.detector.current()))
        case ("POST", .capabilitiesRefresh):
            return refreshCapabilities()
        case ("GET", .jobs):
            return listJobs(request)
        case ("POST", .jobs):
            return launch(request)
        case ("DELETE", .jobs):
            return .json(200, JSONWriter.serialize(.object(["killed": .int(commands.killAll())])))
        case ("GET", .jobsStream):
            return allJobsStream(request, principal: principal)
        case ("GET", .job(let id)):
            guard let job = manager.details(of: id) else { return APIError.unknownJob(id).response }
            return .json(200, JSONWriter.serialize(.object(["job": job.json])))
        case ("DELETE", .job(let id)):
            do throws(APIError) {
                return .json(200, JSONWriter.serialize(.object(["job": try commands.kill(id).json])))
            } catch {
                return error.response
            }
        case ("GET", .jobEvents(let id)):
            guard manager.job(id) != nil else { return APIError.unknownJob(id).response }
            let query = Self.query(request.head.target) ?? [:]
            guard let since = Self.nonNegative(query["since"], default: 0), let limit = Self.nonNegative(query["limit"], default: 1000),
                limit > 0, limit <= 10_000
            else {
                return APIError.invalidQuery("since and limit must be non-negative integers (limit 1…10000)").response
            }
            return eventsPage(job: id, since: since, limit: limit)
        case ("GET", .jobStream(let id)):
            return jobStream(request, id: id, principal: principal)
        case ("POST", .jobDelete(let id)):
            do throws(APIError) {
                try commands.delete(id)
                return .json(200, JSONWriter.serialize(.object(["deleted": .string(id)])))
            } catch {
                return error.response
            }
        case ("GET", .jobDiff(let id)):
            return diff(request, id: id)
        case ("POST", .jobApply(let id)):
            return apply(request, id: id)
        case ("POST", .jobDiscard(let id)):
            return discard(id)
        case ("POST", .jobMessages(let id)):
            return sendMessage(request, id: id)
        case ("POST", .jobPermissions(let id)):
            do throws(APIError) {
                let body: JSONValue
                do { body = try JSONParser.parse(request.body) } catch { throw APIError.invalidJSON("\(error)") }
                try commands.answer(id, body)
                return .json(202, JSONWriter.serialize(.object(["answered": .string(body["request"]?.stringValue ?? "")])))
            } catch {
                return error.response
            }
        case (_, .jobs):
            return Self.methodNotAllowed("GET, POST, DELETE")
        case (_, .job):
            return Self.methodNotAllowed("GET, DELETE")
        case (_, .capabilitiesRefresh), (_, .jobDelete), (_, .jobApply), (_, .jobDiscard), (_, .jobMessages), (_, .jobPermissions):
            return Self.methodNotAllowed("POST")
        case (_, .capabilities), (_, .jobEvents), (_, .jobsStream), (_, .jobStream), (_, .jobDiff):
            return Self.methodNotAllowed("GET")
        case (_, .unknown):
            return APIError.notFound("no route for \(path)").response
        }
    }

    // MARK: jobs

    /// `POST /api/agents/jobs/{id}/messages` `{"text": "…"}`: 202 `{"job", "seq", "resumed"}`
    /// once the message is on its way to the agent (`seq`: the log line that shows it;
    /// `resumed`: the job had finished and its agent's session resumes as its next run).
    private func sendMessage(_ request: HTTPRequest, id: String) -> HTTPServer.Response {
        do throws(APIError) {
            let body: JSONValue
            do { body = try JSONParser.parse(request.body) } catch { throw APIError.invalidJSON("\(error)") }
            let (seq, resumed) = try commands.send(id, text: try JobCommands.messageText(body))
            let job = manager.job(id).map(\.summaryJSON) ?? .null
            return .json(202, JSONWriter.serialize(.object(["job": job, "seq": .int(seq), "resumed": .bool(resumed)])))
        } catch {
            return error.response
        }
    }

    /// `{jobs, version, nextCursor}`: a page of the job list, newest first (`limit`, 100 by
    /// default), filtered by `status`, `provider` and `label`, the next page after `cursor`;
    /// `?since=<version>` answers 304 while nothing changed, so a poller pays for a body only
    /// when there is news.
    private func listJobs(_ request: HTTPRequest) -> HTTPServer.Response {
        guard let query = Self.query(request.head.target) else {
            return APIError.invalidQuery("the query string is not valid percent-encoded UTF-8").response
        }
        guard let since = Self.nonNegative(query["since"], default: -1) else {
            return APIError.invalidQuery("since must be a non-negative integer (a version from an earlier answer)").response
        }
        let jobQuery: JobQuery
        switch JobQuery.parse(query) {
        case .success(let parsed): jobQuery = parsed
        case .failure(let failure): return APIError(400, "invalid_query", failure.message, field: failure.field).response
        }
        var headers = HTTPHeaders()
        headers.add("Cache-Control", "no-store")
        if since == manager.version { return HTTPServer.Response(status: 304, headers: headers) }
        let page = jobQuery.page(of: manager.jobsNewestFirst)
        let body: JSONValue = .object([
            "jobs": .array(page.jobs.map(\.summaryJSON)), "version": .int(manager.version),
            "nextCursor": page.next.map { .string($0.text) } ?? .null,
        ])
        return .json(200, JSONWriter.serialize(body), headers: headers)
    }

    private func launch(_ request: HTTPRequest) -> HTTPServer.Response {
        let key = request.head.headers["Idempotency-Key"]
        if let key {
            guard IdempotencyCache.isValidKey(key) else {
                return APIError(400, "invalid_idempotency_key", "Idempotency-Key must be 1…255 visible ASCII characters").response
            }
            switch idempotency.lookup(key, body: request.body, now: WallClock.milliseconds()) {
            case .new:
                break
            case .replay(let jobId):
                guard let job = manager.job(jobId) else { break }
                var headers = HTTPHeaders()
                headers.add("Idempotent-Replayed", "true")
                return .json(201, JSONWriter.serialize(.object(["job": job.summaryJSON])), headers: headers)
            case .conflict:
                return APIError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different body").response
            }
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(request.body)
        } catch {
            return APIError.invalidJSON("\(error)").response
        }
        do throws(APIError) {
            let job = try commands.launch(value)
            if let key { idempotency.store(key, body: request.body, jobId: job.id, now: WallClock.milliseconds()) }
            return .json(201, JSONWriter.serialize(.object(["job": job.summaryJSON])))
        } catch {
            return error.response
        }
    }

    /// `{"events":[…]}`: the stored lines as they are (a seek through the index, no
    /// re-encoding), read off the loop: up to 10,000 events is megabytes of reading.
    private func eventsPage(job id: String, since: Int, limit: Int) -> HTTPServer.Response {
        manager.flushLogs()
        let store = manager.store.events
        let loop = manager.loop
        return .later { complete in
            let bound = LoopBound(complete)
            DispatchQueue.global(qos: .utility).async {
                let reader = store.reader(job: id)
                var body: [UInt8] = Array("{\"events\":[".utf8)
                var cursor = since
                var count = 0
                while count < limit {
                    let slice = reader.slice(after: cursor, maxBytes: 1 << 20, maxEvents: limit - count)
                    for line in slice.lines {
                        if count > 0 { body.append(UInt8(ascii: ",")) }
                        body += slice.bytes[line.range]
                        count += 1
                    }
                    if let gap = slice.gap {
                        cursor = gap.upperBound
                        continue
                    }
                    guard let last = slice.lines.last else { break }
                    cursor = last.seq
                }
                body += Array("]}".utf8)
                let page = body
                loop.execute { bound.value(.json(200, page)) }
            }
        }
    }

    // MARK: capabilities

    /// The agent CLIs found, with the operator's launch profiles (`profiles`, by name).
    func capabilitiesBody(_ capabilities: AgentCapabilities) -> [UInt8] {
        var value = capabilities.json
        if case .object(var members) = value {
            let profiles = manager.configuration.profiles.values.sorted { $0.name < $1.name }
            members.append(.init("profiles", .array(profiles.map(\.json))))
            // The caps, so a dashboard can show "3 of 4 running"; the budgets' defaults and
            // maxima, so a client can offer what this server accepts.
            let limits = manager.admission.limits
            let budgets = manager.configuration.budgets
            func caps(_ named: [String: Int]) -> JSONValue? {
                named.isEmpty ? nil : .object(named.sorted { $0.key < $1.key }.map { .init($0.key, .int($0.value)) })
            }
            members.append(.init("admission", .object([
                "maxRunning": limits.maxRunning.map(JSONValue.int), "maxQueued": .int(limits.maxQueued),
                "maxRunningPerProvider": caps(limits.maxPerProvider), "maxRunningPerWorkspace": limits.maxPerWorkspace.map(JSONValue.int),
                "maxRunningPerProject": limits.maxPerProject.map(JSONValue.int), "maxRunningInProject": caps(limits.maxPerNamedProject),
                "maxPriority": .int(manager.configuration.maxPriority),
                "defaultTimeoutSeconds": budgets.defaultTimeoutSeconds.map(JSONValue.int), "maxTimeoutSeconds": budgets.maxTimeoutSeconds.map(JSONValue.int),
                "defaultMaxTurns": budgets.defaultMaxTurns.map(JSONValue.int), "maxTurnsLimit": budgets.maxMaxTurns.map(JSONValue.int),
                "defaultBudgetUsd": budgets.defaultBudgetUsd.map(JSONValue.double), "maxBudgetUsd": budgets.maxBudgetUsd.map(JSONValue.double),
            ])))
            value = .object(members)
        }
        return JSONWriter.serialize(value)
    }

    /// Probes off the loop (each `--version` may take up to its timeout) and answers when
    /// done; concurrent refreshes share one probe.
    private func refreshCapabilities() -> HTTPServer.Response {
        .later { [self] complete in
            refreshWaiters.append(complete)
            guard refreshWaiters.count == 1 else { return }
            let detector = manager.detector
            let loop = manager.loop
            let bound = LoopBound(self)
            Thread.detachNewThread {
                let capabilities = detector.refresh()
                loop.execute {
                    let body = bound.value.capabilitiesBody(capabilities)
                    let waiters = bound.value.refreshWaiters
                    bound.value.refreshWaiters.removeAll()
                    for waiter in waiters { waiter(.json(200, body)) }
                }
            }
        }
    }

    // MARK: streams

    private func allJobsStream(_ request: HTTPRequest, principal: Principal) -> HTTPServer.Response {
        guard let hub else { return APIError.notFound("streams are not served here").response }
        // A filter that does not parse is refused, not dropped: the stream would show all.
        guard let query = Self.query(request.head.target) else {
            return APIError(400, "invalid_query", "the query string is not valid (bad percent-encoding, or a parameter given twice)").response
        }
        let lastEventID = ServerSentEvents.lastEventID(request.head.headers)
        let raw = query["events"] == "true"
        let project = query["project"]
        if let project, !LaunchRequest.isProjectName(project) {
            return APIError(400, "invalid_query", "project must match \(LaunchRequest.projectPattern)", field: "project").response
        }
        return .stream(200, headers: Self.streamHeaders) { tcp in
            hub.attachAllJobsStream(tcp, lastEventID: lastEventID, rawEvents: raw, principal: principal, project: project)
        }
    }

    private func jobStream(_ request: HTTPRequest, id: String, principal: Principal) -> HTTPServer.Response {
        guard let hub else { return APIError.notFound("streams are not served here").response }
        guard let job = manager.job(id) else { return APIError.unknownJob(id).response }
        let query = Self.query(request.head.target) ?? [:]
        guard let sinceQuery = Self.nonNegative(query["since"], default: 0) else {
            return APIError.invalidQuery("since must be a non-negative integer").response
        }
        let since = ServerSentEvents.lastEventID(request.head.headers) ?? sinceQuery
        if hub.streamIsFinished(job: job, since: since) {
            // Nothing more will come: 204 tells an EventSource to stop reconnecting.
            return HTTPServer.Response(status: 204)
        }
        let raw = query["events"] == "true"
        return .stream(200, headers: Self.streamHeaders) { tcp in
            hub.attachJobStream(tcp, job: id, since: since, rawEvents: raw, principal: principal)
        }
    }

    static var streamHeaders: HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/event-stream")
        headers.add("Cache-Control", "no-store")
        headers.add("X-Accel-Buffering", "no")
        return headers
    }

    // MARK: browser session and files

    // MARK: authentication

    /// Who a request is: the holder of the master token, or of a live session (kept by its
    /// key, the SHA-1 of its credential). Streams and WebSockets keep theirs, so they end
    /// when it does.
    public enum Principal: Hashable, Sendable {
        case token
        case session(key: String)
    }

    /// Checks the presented credentials against the token (picking up a rotated token file
    /// first) and the live sessions.
    public func authenticate(_ headers: HTTPHeaders) -> Principal? {
        defer { saveSessionsIfNeeded() }
        let now = WallClock.milliseconds()
        pickUpRotatedToken()
        if policy.presentsToken(headers) { return .token }
        for credential in AccessPolicy.presentedCredentials(headers) {
            if let key = sessions.use(credential, now: now) { return .session(key: key) }
        }
        return nil
    }

    /// A new token in the token file ends everything made with the old one: every session,
    /// and every stream and WebSocket, whatever credential opened it.
    private func pickUpRotatedToken() {
        guard let token = tokenWatcher?.changedToken(now: MonotonicClock.milliseconds()), token != policy.token else {
            return
        }
        policy.token = token
        sessions.revokeAll()
        hub?.endConnections(reason: "the token was rotated; sign in again") { _ in true }
    }

    /// Run about once a second (and at once after a sign-out): picks up a rotated token even
    /// when no request comes, and ends the streams and WebSockets whose session ended (signed
    /// out, expired, forgotten at the cap). A session that an open connection holds counts as
    /// in use, so a dashboard left watching is not signed out as idle; its absolute age
    /// still ends it.
    public func checkCredentials(now: Int) {
        defer { saveSessionsIfNeeded() }
        pickUpRotatedToken()
        guard let hub else { return }
        var ended = Set<String>()
        for key in hub.sessionKeysInUse() where !sessions.touch(key, now: now) { ended.insert(key) }
        sessions.expire(now: now)
        guard !ended.isEmpty else { return }
        hub.endConnections(reason: "the session ended (signed out or expired); sign in again") { principal in
            if case .session(let key) = principal { return ended.contains(key) }
            return false
        }
    }

    /// Reads back the sessions saved by an earlier run (those made under this token).
    public func restoreSessions() {
        guard let sessionFile else { return }
        sessions.restore(SessionFile.load(path: sessionFile, token: policy.token), now: WallClock.milliseconds())
    }

    private func saveSessionsIfNeeded() {
        guard sessions.needsSaving else { return }
        sessions.saved()
        guard let sessionFile else { return }
        do {
            try SessionFile.save(sessions.sessions, path: sessionFile, token: policy.token)
        } catch {
            FileHandle.standardError.write(Data("agentgate: cannot save sessions: \(error)\n".utf8))
        }
    }

    /// `POST /api/session` with the master token as Bearer: a new session credential for a
    /// dashboard, which keeps it in localStorage and sends it like the token. No cookie is
    /// set (one left by an older version is removed). `GET` says whether the caller is
    /// signed in; `DELETE` with a session credential signs it out, with the token signs every
    /// session out.
    private func session(_ request: HTTPRequest, principal: Principal?) -> HTTPServer.Response {
        var headers = HTTPHeaders()
        headers.add("Cache-Control", "no-store")
        switch request.head.method {
        case "POST":
            guard principal == .token else {
                return APIError(401, "unauthorized", "a session is made with the token (Authorization: Bearer <token>)").response
            }
            let (credential, session) = sessions.create(now: WallClock.milliseconds())
            saveSessionsIfNeeded()
            headers.add("Set-Cookie", "\(AccessPolicy.legacyCookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
            let body = JSONValue.object([
                "session": .string(credential), "expiresAt": .int(session.expiresAt),
                "idleSeconds": .int(sessions.limits.idleMilliseconds / 1000),
            ])
            return .json(201, JSONWriter.serialize(body), headers: headers)
        case "DELETE":
            switch principal {
            case .session(let key)?: sessions.revoke(key: key)
            case .token?: sessions.revokeAll()
            case nil: return APIError.unauthorized.response
            }
            // Its streams and WebSockets end now, not at the next check.
            checkCredentials(now: WallClock.milliseconds())
            // Signed out: this connection is no longer one of ours.
            var response = HTTPServer.Response(status: 204, headers: headers)
            response.proves = false
            return response
        case "GET":
            guard let principal else { return APIError.unauthorized.response }
            let kind = principal == .token ? "token" : "session"
            return .json(200, Array("{\"authenticated\":true,\"kind\":\"\(kind)\"}".utf8), headers: headers)
        default:
            return Self.methodNotAllowed("GET, POST, DELETE")
        }
    }

    /// A body sent to the API must be declared JSON (415 otherwise): an HTML form can only
    /// send the form and text types, so this closes the last door a cross-site form could use
    /// even where the Origin check does not apply. A launch always has a body.
    static func mediaTypeFailure(_ request: HTTPRequest, route: Route) -> HTTPServer.Response? {
        let method = request.head.method
        guard method != "GET", method != "HEAD" else { return nil }
        var takesBody = route == .jobs
        if case .jobMessages = route { takesBody = true }
        if case .jobPermissions = route { takesBody = true }
        let needsJSON = !request.body.isEmpty || (method == "POST" && takesBody)
        guard needsJSON else { return nil }
        let contentType = request.head.headers["Content-Type"] ?? ""
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingSpaces().lowercasedASCII() } ?? ""
        guard mediaType == "application/json" else {
            return APIError.unsupportedMediaType.response
        }
        return nil
    }

    /// The dashboard: public files (the page must load to read its token), framed by no one.
    private func serveFile(_ path: Substring, method: String) -> HTTPServer.Response {
        guard method == "GET" || method == "HEAD" else { return Self.methodNotAllowed("GET") }
        guard let staticFiles else { return APIError.notFound("no route for \(path) (the dashboard is not installed)").response }
        guard let file = staticFiles.file(for: path) else { return APIError.notFound("no file at \(path)").response }
        var headers = HTTPHeaders()
        headers.add("Content-Type", file.contentType)
        headers.add("Cache-Control", "no-cache")
        headers.add("X-Content-Type-Options", "nosniff")
        headers.add("X-Frame-Options", "DENY")
        headers.add("Referrer-Policy", "no-referrer")
        headers.add("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'")
        var response = HTTPServer.Response(status: 200, headers: headers, body: method == "HEAD" ? [] : file.bytes)
        if method == "HEAD" { response.headers.add("Content-Length", String(file.bytes.count)) }
        return response
    }

    /// The API's paths.
    enum Route: Equatable {
        case capabilities
        case capabilitiesRefresh
        case jobs
        case jobsStream
        case job(String)
        case jobEvents(String)
        case jobStream(String)
        case jobDelete(String)
        case jobDiff(String)
        case jobApply(String)
        case jobDiscard(String)
        case jobMessages(String)
        case jobPermissions(String)
        case unknown

        /// Exact paths only: an empty segment (`/api/agents/jobs/`, `//`) names no route, so a
        /// job id that is empty or a lone `?` cannot turn a request for one job into one for all.
        init(path: Substring) {
            let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard path.hasPrefix("/"), !parts.contains(""), parts.count >= 3, parts[0] == "api", parts[1] == "agents" else {
                self = .unknown
                return
            }
            switch (parts.count, parts[2]) {
            case (3, "capabilities"): self = .capabilities
            case (4, "capabilities") where parts[3] == "refresh": self = .capabilitiesRefresh
            case (3, "jobs"): self = .jobs
            case (4, "jobs") where parts[3] == "stream": self = .jobsStream
            case (4, "jobs"): self = .job(parts[3])
            case (5, "jobs") where parts[4] == "events": self = .jobEvents(parts[3])
            case (5, "jobs") where parts[4] == "stream": self = .jobStream(parts[3])
            case (5, "jobs") where parts[4] == "delete": self = .jobDelete(parts[3])
            case (5, "jobs") where parts[4] == "diff": self = .jobDiff(parts[3])
            case (5, "jobs") where parts[4] == "apply": self = .jobApply(parts[3])
            case (5, "jobs") where parts[4] == "discard": self = .jobDiscard(parts[3])
            case (5, "jobs") where parts[4] == "messages": self = .jobMessages(parts[3])
            case (5, "jobs") where parts[4] == "permissions": self = .jobPermissions(parts[3])
            default: self = .unknown
            }
        }
    }

    static func methodNotAllowed(_ allowed: String) -> HTTPServer.Response {
        APIError.methodNotAllowed(allowed).response
    }

    /// `a=1&b=x%20y` → ["a": "1", "b": "x y"], percent-decoded (`+` is a space); nil when a
    /// value is not valid percent-encoded UTF-8, or a name comes twice (`?project=a&project=b`
    /// would otherwise filter by whichever came last).
    static func query(_ target: String) -> [String: String]? {
        guard let mark = target.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = percentDecoded(parts[0]), let value = percentDecoded(parts.count > 1 ? parts[1] : ""), result[key] == nil else {
                return nil
            }
            result[key] = value
        }
        return result
    }

    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(0x20)
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else { return nil }
                bytes.append(high << 4 | low)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 48...57: byte - 48
        case 65...70: byte - 55
        case 97...102: byte - 87
        default: nil
        }
    }

    static func nonNegative(_ text: String?, default value: Int) -> Int? {
        guard let text else { return value }
        guard !text.isEmpty, text.count <= 15, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(text)
    }
}
