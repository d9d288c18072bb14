import AgentCore
import EventLoop
import Foundation
import Glibc
import HTTPCore
import TestSupport
import Testing

@testable import Gateway

/// The job engine, the gateway routes and the HTTP server on one loop thread, with fake
/// agents on PATH, reached over real sockets.
final class RunningGateway: @unchecked Sendable {
    static let token = "feedface0123"
    let agents = FakeAgents()
    let data = TemporaryDirectory("agentgate-gateway")
    let loop: EventLoop
    let server: GatewayServer
    let port: Int
    private let runner: LoopThread
    private let manager: JobManager

    /// - Parameter jobs: finished jobs put in the store before the server starts.
    /// Where its jobs are stored: `data`, or the directory the test gave.
    let dataPath: String

    /// - Parameter dataDirectory: a data dir of the test's own (a small file system).
    init(viewerQueueBytes: Int = 1 << 20, http: HTTPServer.Configuration = HTTPServer.Configuration(), webRoot: String? = nil,
         jobs: [Job] = [], dataDirectory: String? = nil, minFreeBytes: Int64 = 0, configure: (GatewayServer) -> Void = { _ in }) throws {
        loop = try EventLoop()
        dataPath = dataDirectory ?? data.path
        let store = try JobStore(dataDirectory: dataPath)
        for job in jobs { try store.save(job) }
        let detector = AgentDetector(configuration: .init(path: agents.searchPath, environment: ["PATH=\(agents.searchPath)"]))
        _ = detector.refresh()
        var configuration = JobManager.Configuration()
        configuration.baseEnvironment = ["PATH=\(agents.searchPath)"]
        configuration.killGraceMilliseconds = 300
        configuration.policy.environment = EnvironmentPolicy(allowed: ["FAKE_*"])
        configuration.minFreeBytes = minFreeBytes
        manager = JobManager(loop: loop, store: store, detector: detector, configuration: configuration)
        try manager.recover()
        var serverConfiguration = ServerConfiguration()
        serverConfiguration.http = http
        serverConfiguration.viewers.queueBytes = viewerQueueBytes
        serverConfiguration.jobs = configuration
        server = try GatewayServer(
            loop: loop, manager: manager, policy: AccessPolicy(token: Self.token), configuration: serverConfiguration, webRoot: webRoot)
        configure(server)
        try server.start()
        port = server.port
        runner = LoopThread(loop)
    }

    /// Reads a value on the loop thread.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        runner.onLoop(body)
    }

    /// The server's open connections once they reach none, or after `seconds` (what is left).
    func openConnectionsAfterClosing(within seconds: Double) -> Int {
        let http = LoopBound(server.http)
        let deadline = Date().addingTimeInterval(seconds)
        var open = onLoop { http.value.connectionCount }
        while open != 0 && Date() < deadline {
            usleep(20_000)
            open = onLoop { http.value.connectionCount }
        }
        return open
    }

    func stop() {
        runner.stop()
    }

    struct Reply {
        var status: Int
        var json: [String: Any]
        /// The response head's lines after the status line.
        var headers: [String]
        var body: String

        func header(_ name: String) -> String? {
            headers.first { $0.lowercased().hasPrefix(name.lowercased() + ":") }.map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
        }
    }

    /// One request with the token (unless `token` is nil); the JSON body of the answer.
    func request(_ method: String, _ path: String, body: String? = nil, token: String? = RunningGateway.token,
                 host: String = "127.0.0.1", origin: String? = nil, headers extra: [(String, String)] = []) throws -> Reply {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n"
        for (name, value) in extra { text += "\(name): \(value)\r\n" }
        if let token { text += "Authorization: Bearer \(token)\r\n" }
        if let origin { text += "Origin: \(origin)\r\n" }
        if let body { text += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        let response = try exchange(port: port, text)
        let status = Int(response.dropFirst(9).prefix(3)) ?? 0
        let bodyText = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        let json = (try? JSONSerialization.jsonObject(with: Data(bodyText.utf8))) as? [String: Any] ?? [:]
        let head = response.components(separatedBy: "\r\n\r\n").first ?? ""
        return Reply(status: status, json: json, headers: Array(head.components(separatedBy: "\r\n").dropFirst()), body: bodyText)
    }
}

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct GatewayRouteTests {
    @Test func launchFollowAndReadBackAJob() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let body = #"{"provider":"claude","prompt":"hi","label":"demo","env":{"FAKE_SCRIPT":"cat '\#(Fixtures.transcript("claude-stream-json-simple-text.jsonl"))'"}}"#
        let created = try gateway.request("POST", "/api/agents/jobs", body: body)
        #expect(created.status == 201)
        let job = try #require(created.json["job"] as? [String: Any])
        let id = try #require(job["id"] as? String)
        #expect(job["label"] as? String == "demo")

        var status = ""
        for _ in 0..<200 where status != "done" {
            usleep(20_000)
            status = (try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])?["status"] as? String ?? ""
        }
        #expect(status == "done")
        let events = try gateway.request("GET", "/api/agents/jobs/\(id)/events?since=0").json["events"] as? [[String: Any]] ?? []
        #expect(events.map { $0["seq"] as? Int } == Array(1...events.count))
        #expect(events.last?["type"] as? String == "job:completed")
        let later = try gateway.request("GET", "/api/agents/jobs/\(id)/events?since=2&limit=2").json["events"] as? [[String: Any]] ?? []
        #expect(later.map { $0["seq"] as? Int } == [3, 4])
        let list = try gateway.request("GET", "/api/agents/jobs")
        #expect((list.json["jobs"] as? [[String: Any]])?.count == 1)
        #expect(try gateway.request("GET", "/api/agents/capabilities").json["available"] as? [String] == ["claude", "codex", "opencode", "goose", "opencode-acp"])
        #expect(try gateway.request("DELETE", "/api/agents/jobs/\(id)").status == 409)
    }

    @Test func killAndKillAll() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let body = #"{"provider":"codex","prompt":"x","env":{"FAKE_SCRIPT":"exec sleep 300"}}"#
        let ids = try (0..<2).map { _ in
            try #require((try gateway.request("POST", "/api/agents/jobs", body: body).json["job"] as? [String: Any])?["id"] as? String)
        }
        // An empty or query-only id names no route: it once reached "kill every job".
        for path in ["/api/agents/jobs/", "/api/agents/jobs/?", "/api/agents/jobs//", "//api/agents/jobs"] {
            #expect(try gateway.request("DELETE", path).status >= 400, "\(path)")
        }
        #expect(try gateway.request("DELETE", "/api/agents/jobs/\(ids[0])").status == 200)
        #expect(try gateway.request("DELETE", "/api/agents/jobs").json["killed"] as? Int == 1)
        for id in ids {
            var status = ""
            for _ in 0..<200 where status != "killed" {
                usleep(20_000)
                status = (try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])?["status"] as? String ?? ""
            }
            #expect(status == "killed")
        }
    }

    @Test func badRequestsNameTheField() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let unknown = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"gemini","prompt":"x"}"#)
        #expect(unknown.status == 400)
        #expect(unknown.json["field"] as? String == "provider")
        #expect(unknown.json["code"] as? String == "unknown_provider")
        let env = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"1X":"y"}}"#)
        #expect(env.json["field"] as? String == "env.1X")
        #expect(try gateway.request("POST", "/api/agents/jobs", body: "{not json").json["code"] as? String == "invalid_json")
        #expect(try gateway.request("GET", "/api/agents/jobs/nope").status == 404)
        #expect(try gateway.request("GET", "/api/agents/jobs/nope/events?since=-1").status == 404)
        #expect(try gateway.request("PUT", "/api/agents/jobs").status == 405)
    }

    @Test func tokenHostAndOriginAreEnforced() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        #expect(try gateway.request("GET", "/api/agents/jobs", token: nil).status == 401)
        #expect(try gateway.request("GET", "/api/agents/jobs", token: "wrong").status == 401)
        // 401 whether or not the job exists.
        #expect(try gateway.request("GET", "/api/agents/jobs/nope", token: nil).status == 401)
        #expect(try gateway.request("GET", "/api/agents/jobs", host: "evil.example").status == 403)
        let body = #"{"provider":"claude","prompt":"x"}"#
        let foreign = try gateway.request("POST", "/api/agents/jobs", body: body, origin: "http://evil.example")
        #expect(foreign.status == 403)
        #expect(foreign.json["code"] as? String == "forbidden_origin")
        #expect(try gateway.request("GET", "/api/agents/jobs").json["jobs"] as? [Any] != nil)
        #expect(try gateway.request("GET", "/healthz", token: nil).status == 200)
    }
}

final class LoopResult<T>: @unchecked Sendable {
    var value: T?
}
