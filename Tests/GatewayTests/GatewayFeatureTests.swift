import AgentCore
import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct GatewayFeatureTests {
    func waitUntilFinished(_ gateway: RunningGateway, _ id: String) throws {
        for _ in 0..<300 {
            let status = (try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])?["status"] as? String
            if let status, ["done", "failed", "killed"].contains(status) { return }
            usleep(20_000)
        }
    }

    @Test func theJobListAnswers304WhileNothingChanged() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let empty = try gateway.request("GET", "/api/agents/jobs")
        let version = try #require(empty.json["version"] as? Int)
        #expect(try gateway.request("GET", "/api/agents/jobs?since=\(version)").status == 304)
        let id = try launch(gateway, script: "echo hi")
        try waitUntilFinished(gateway, id)
        let changed = try gateway.request("GET", "/api/agents/jobs?since=\(version)")
        #expect(changed.status == 200)
        let newVersion = try #require(changed.json["version"] as? Int)
        #expect(newVersion > version)
        #expect(try gateway.request("GET", "/api/agents/jobs?since=\(newVersion)").status == 304)
        #expect(try gateway.request("GET", "/api/agents/jobs?since=abc").status == 400)
    }

    @Test func anIdempotencyKeyMakesALaunchRetrySafe() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let body = #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"echo hi"}}"#
        let key = [("Idempotency-Key", "launch-7f3a")]
        let first = try gateway.request("POST", "/api/agents/jobs", body: body, headers: key)
        let again = try gateway.request("POST", "/api/agents/jobs", body: body, headers: key)
        #expect(first.status == 201)
        #expect(again.status == 201)
        let firstID = (first.json["job"] as? [String: Any])?["id"] as? String
        #expect(firstID != nil)
        #expect((again.json["job"] as? [String: Any])?["id"] as? String == firstID)
        #expect(again.header("Idempotent-Replayed") == "true")
        #expect(first.header("Idempotent-Replayed") == nil)
        let other = try gateway.request("POST", "/api/agents/jobs", body: body.replacingOccurrences(of: "\"x\"", with: "\"y\""), headers: key)
        #expect(other.status == 422)
        #expect(other.json["code"] as? String == "idempotency_key_reused")
        #expect(try gateway.request("POST", "/api/agents/jobs", body: body, headers: [("Idempotency-Key", String(repeating: "k", count: 300))]).status == 400)
        #expect((try gateway.request("GET", "/api/agents/jobs").json["jobs"] as? [Any])?.count == 1)
    }

    @Test func refreshingCapabilitiesDoesNotBlockTheLoop() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        // A CLI whose --version takes a second: the refresh waits for it, nobody else does.
        gateway.agents.installRaw("goose", "#!/bin/sh\nsleep 1\necho goose 9.9\n")
        let refreshed = LoopResult<Date>()
        let thread = Thread {
            let reply = try? gateway.request("POST", "/api/agents/capabilities/refresh")
            refreshed.value = Date()
            #expect(reply?.status == 200)
            let goose = (reply?.json["providers"] as? [[String: Any]])?.first { $0["id"] as? String == "goose" }
            #expect(goose?["version"] as? String == "goose 9.9")
        }
        thread.start()
        usleep(200_000)
        #expect(try gateway.request("GET", "/healthz").status == 200)
        let answered = Date()
        while thread.isExecuting { usleep(10_000) }
        #expect(try #require(refreshed.value) > answered)
    }

    @Test func metricsAreInPrometheusTextFormat() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let viewer = try Viewer(gateway)
        let id = try launch(gateway, script: "echo one; echo two")
        viewer.send(#"{"op":"subscribe","job":"\#(id)"}"#)
        _ = viewer.seqsUntilCompleted(job: id)
        let reply = try gateway.request("GET", "/metrics")
        #expect(reply.status == 200)
        #expect(reply.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let lines = reply.body.split(separator: "\n")
        func value(_ name: String) -> Int? {
            lines.first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ").last ?? "") }
        }
        #expect(value("agentgate_jobs{status=\"done\"}") == 1)
        #expect(value("agentgate_websocket_connections") == 1)
        #expect(value("agentgate_subscriptions") == 1)
        #expect((value("agentgate_events_sent_total") ?? 0) >= 3)
        #expect((value("agentgate_event_bytes_sent_total") ?? 0) > 100)
        #expect(value("agentgate_slow_consumer_pauses_total") == 0)
        #expect(lines.contains("# TYPE agentgate_jobs gauge"))
        #expect(try gateway.request("GET", "/metrics", token: nil).status == 401)
    }

    @Test func theDashboardIsServedWithoutLettingAnyoneOutOfItsFolder() throws {
        let web = TemporaryDirectory("agentgate-web")
        try "<!doctype html><title>t</title>".write(toFile: web.path + "/index.html", atomically: true, encoding: .utf8)
        try "export {}".write(toFile: web.path + "/app.js", atomically: true, encoding: .utf8)
        try "secret".write(toFile: web.path + "/.env", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: web.path + "/passwd", withDestinationPath: "/etc/passwd")
        let gateway = try RunningGateway(webRoot: web.path)
        defer { gateway.stop() }
        let index = try gateway.request("GET", "/", token: nil)
        #expect(index.status == 200)
        #expect(index.header("Content-Type") == "text/html; charset=utf-8")
        #expect(index.header("Content-Security-Policy")?.contains("frame-ancestors 'none'") == true)
        #expect(index.body.contains("<title>t</title>"))
        #expect(try gateway.request("GET", "/app.js", token: nil).header("Content-Type") == "text/javascript; charset=utf-8")
        for path in ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/.env", "/passwd", "/nope.js", "/a/../index.html", "/%00"] {
            #expect(try gateway.request("GET", path, token: nil).status == 404, "\(path)")
        }
        #expect(try gateway.request("POST", "/", token: nil).status == 405)
        #expect(try gateway.request("GET", "/", token: nil, host: "evil.example").status == 403)
    }

    /// Loading the dashboard's public files or being refused does not let a connection live on:
    /// only a request with a valid credential does.
    @Test func onlyAnAuthenticatedRequestProvesAConnection() throws {
        var http = HTTPServer.Configuration()
        http.firstRequestTimeoutMilliseconds = 600
        let web = TemporaryDirectory("agentgate-web")
        web.write("index.html", "<!doctype html><title>agentgate</title>")
        let gateway = try RunningGateway(http: http, webRoot: web.path)
        defer { gateway.stop() }
        func ask(_ fd: Int32, _ path: String, token: Bool) -> String {
            let auth = token ? "Authorization: Bearer \(RunningGateway.token)\r\n" : ""
            return sendAndReceive(fd, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(auth)\r\n")
        }
        let anonymous = try connectLoopback(port: gateway.port, receiveTimeoutSeconds: 3)
        defer { close(anonymous) }
        let member = try connectLoopback(port: gateway.port, receiveTimeoutSeconds: 3)
        defer { close(member) }
        #expect(ask(anonymous, "/", token: false).hasPrefix("HTTP/1.1 200"))
        #expect(ask(anonymous, "/healthz", token: false).hasPrefix("HTTP/1.1 200"))
        #expect(ask(member, "/api/agents/jobs", token: true).hasPrefix("HTTP/1.1 200"))
        usleep(900_000)
        #expect(ask(anonymous, "/healthz", token: false).isEmpty)  // closed at its deadline
        #expect(ask(member, "/api/agents/jobs", token: true).hasPrefix("HTTP/1.1 200"))
    }

    @Test func aBodySentToTheAPIMustBeDeclaredJSON() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let body = #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"true"}}"#
        func launch(contentType: String?) throws -> Int {
            var text = "POST /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            text += "Authorization: Bearer \(RunningGateway.token)\r\nContent-Length: \(body.utf8.count)\r\n"
            if let contentType { text += "Content-Type: \(contentType)\r\n" }
            let response = try exchange(port: gateway.port, text + "\r\n" + body)
            return Int(response.dropFirst(9).prefix(3)) ?? 0
        }
        // What an HTML form can send without a preflight, and nothing at all, are refused.
        for type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", nil] as [String?] {
            #expect(try launch(contentType: type) == 415, "\(type ?? "none")")
        }
        #expect(try launch(contentType: "Application/JSON; charset=utf-8") == 201)
    }

    @Test func aBrowserTradesTheTokenForARevocableSessionAndNoCookieCarriesEither() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let traded = try gateway.request("POST", "/api/session", origin: "http://127.0.0.1")
        #expect(traded.status == 201)
        let session = try #require(traded.json["session"] as? String)
        #expect(session.count == 64 && session != RunningGateway.token)
        // The only cookie said is the one that erases what older versions set.
        let cookie = try #require(traded.header("Set-Cookie"))
        #expect(cookie.hasPrefix("agentgate_session=;") && cookie.contains("Max-Age=0"))
        #expect(try gateway.request("GET", "/api/agents/jobs", token: session).status == 200)
        #expect(try gateway.request("GET", "/api/session", token: session).json["kind"] as? String == "session")
        // A cookie holding the token, or the session, is not a credential.
        for value in [RunningGateway.token, session] {
            #expect(try gateway.request("GET", "/api/agents/jobs", token: nil, headers: [("Cookie", "agentgate_session=\(value)")]).status == 401)
        }
        // A session cannot make sessions; signing out ends it.
        #expect(try gateway.request("POST", "/api/session", token: session).status == 401)
        #expect(try gateway.request("DELETE", "/api/session", token: session).status == 204)
        #expect(try gateway.request("GET", "/api/agents/jobs", token: session).status == 401)
        #expect(try gateway.request("POST", "/api/session", token: "wrong").status == 401)
        #expect(try gateway.request("POST", "/api/session", origin: "http://evil.example").status == 403)
        #expect(try gateway.request("GET", "/api/session", token: nil).status == 401)
    }

    /// A WebSocket or stream opened with a credential ends when the credential does: signed
    /// out, past its age, or the token rotated. Before, an open socket kept its rights.
    @Test func aSocketOrStreamEndsWhenTheCredentialThatOpenedItEnds() throws {
        let files = TemporaryDirectory("agentgate-rotation")
        let token = String(repeating: "ab", count: 32)
        try TokenFile.write(token, to: files.file("token"))
        let gateway = try RunningGateway { server in
            server.gateway.policy.token = token
            server.gateway.tokenWatcher = TokenWatcher(path: files.file("token"))
            server.credentialCheckMilliseconds = 100
        }
        defer { gateway.stop() }
        func newSession() throws -> String {
            try #require(try gateway.request("POST", "/api/session", token: token).json["session"] as? String)
        }
        func closeCode(_ viewer: Viewer) -> UInt16? {
            while let action = viewer.client.nextAction() {
                if case .peerClosed(let code, _) = action { return code?.rawValue }
            }
            return nil
        }
        func stream(_ credential: String) throws -> RawClient {
            let client = try RawClient(port: gateway.port)
            client.send(Array("GET /api/agents/jobs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(credential)\r\n\r\n".utf8))
            #expect(String(decoding: client.readSome() ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            return client
        }
        // Signing out ends that session's socket and stream, and nobody else's.
        let signedOut = try newSession()
        let server = LoopBound(gateway.server)
        gateway.onLoop { server.value.gateway.sessions.limits.maxAgeMilliseconds = 3_000 }
        let other = try newSession()
        let socket = try Viewer(gateway, token: signedOut), stream = try stream(signedOut)
        let otherSocket = try Viewer(gateway, token: other), tokenSocket = try Viewer(gateway, token: token)
        #expect(try gateway.request("DELETE", "/api/session", token: signedOut).status == 204)
        #expect(closeCode(socket) == 4401)
        #expect(stream.readUntilClosed())
        for viewer in [otherSocket, tokenSocket] {
            viewer.send(#"{"op":"subscribe","job":"*","req":7}"#)
            #expect(viewer.next()?["type"] as? String == "ack")
        }
        // A session past its absolute age ends with its socket, however busy the socket is.
        #expect(closeCode(otherSocket) == 4401)
        // A rotated token file ends every socket, the token's own included, with no request.
        try TokenFile.write(String(repeating: "cd", count: 32), to: files.file("token.new"))
        #expect(rename(files.file("token.new"), files.file("token")) == 0)
        #expect(closeCode(tokenSocket) == 4401)
        #expect(try gateway.request("GET", "/api/agents/jobs", token: token).status == 401)
    }

    /// Found by the second attacker trial: a WebSocket session or an SSE stream took the
    /// connection's close callback over, so the connection count never went down and 4,096
    /// refused upgrades (no token needed) locked every local client out until a restart.
    @Test func closedSocketsAndStreamsGiveTheirConnectionSlotsBack() throws {
        var http = HTTPServer.Configuration()
        http.maxConnectionsPerClient = 20
        let gateway = try RunningGateway(http: http)
        defer { gateway.stop() }
        for round in 0..<30 {
            _ = try? Viewer(gateway, token: round % 2 == 0 ? nil : RunningGateway.token)  // refused (401) or admitted
            let stream = try RawClient(port: gateway.port)
            stream.send(Array("GET /api/agents/jobs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(RunningGateway.token)\r\n\r\n".utf8))
            _ = stream.readSome()
        }
        #expect(gateway.openConnectionsAfterClosing(within: 2) == 0)
        #expect(try gateway.request("GET", "/api/agents/jobs").status == 200)
    }

    /// Found by the second attacker trial: answers queued unread, then an upgrade without a
    /// token. The upgrade proved the connection before it was refused and the refusal waited
    /// for a flush that never came: each such socket pinned ~2 MB forever. Now the upgrade is
    /// refused outright, and a connection no request proved closes at its deadline, read or not.
    @Test func anUpgradeBehindUnreadAnswersIsRefusedAndTheConnectionClosesAtItsDeadline() throws {
        let web = TemporaryDirectory("agentgate-web")
        try String(repeating: "x", count: 200_000).write(toFile: web.path + "/big.js", atomically: true, encoding: .utf8)
        var http = HTTPServer.Configuration()
        http.firstRequestTimeoutMilliseconds = 800
        let gateway = try RunningGateway(http: http, webRoot: web.path)
        defer { gateway.stop() }
        let fd = try connectLoopback(port: gateway.port, receiveTimeoutSeconds: 5)
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var pipelined = String(repeating: "GET /big.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", count: 10)
        pipelined += "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        pipelined += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        sendText(fd, pipelined)
        let started = Date()
        let open = gateway.openConnectionsAfterClosing(within: 3)
        #expect(open == 0, "still open after \(Date().timeIntervalSince(started)) s")
        #expect(Date().timeIntervalSince(started) < 2)
    }

    /// Found by the third attacker trial: 78 jobs with 1 MiB prompts made every job list and
    /// snapshot 80 MB, and a few viewers that did not read took the server to gigabytes.
    /// Lists, snapshots and launch replies carry the first 2,000 characters; the job itself
    /// has the whole prompt.
    @Test func listsAndSnapshotsCarryAPromptsBeginningNotAllOfIt() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let prompt = String(repeating: "é", count: 5_000)  // 10,000 bytes
        let launched = try gateway.request(
            "POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"\#(prompt)","env":{"FAKE_SCRIPT":"echo hi"}}"#)
        let reply = try #require(launched.json["job"] as? [String: Any])
        let id = try #require(reply["id"] as? String)
        #expect((reply["prompt"] as? String)?.count == 2_000 && reply["promptTruncated"] as? Bool == true)
        let listed = (try gateway.request("GET", "/api/agents/jobs").json["jobs"] as? [[String: Any]])?.first
        #expect((listed?["prompt"] as? String)?.count == 2_000 && listed?["promptTruncated"] as? Bool == true)
        let whole = try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any]
        #expect(whole?["prompt"] as? String == prompt && whole?["promptTruncated"] == nil)
        let viewer = try Viewer(gateway)
        viewer.send(#"{"op":"subscribe","job":"*","req":1}"#)
        var snapshot: [String: Any]?
        while snapshot == nil, let message = viewer.next(), message["type"] as? String != "error" {
            if message["type"] as? String == "snapshot" { snapshot = (message["jobs"] as? [[String: Any]])?.first }
        }
        #expect((snapshot?["prompt"] as? String)?.count == 2_000)
    }

    /// Found by the third attacker trial: 256 unauthenticated connections, each pipelining 16
    /// public files and reading nothing, held ~550 MB for as long as they were reopened. A
    /// connection no request proved now takes one request at a time.
    @Test func anUnprovenConnectionHasOneAnswerQueuedAtMost() throws {
        let web = TemporaryDirectory("agentgate-web")
        try String(repeating: "x", count: 1 << 20).write(toFile: web.path + "/big.js", atomically: true, encoding: .utf8)
        let gateway = try RunningGateway(webRoot: web.path)
        defer { gateway.stop() }
        let fd = try connectLoopback(port: gateway.port, receiveTimeoutSeconds: 5)
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        sendText(fd, String(repeating: "GET /big.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", count: 16))
        usleep(300_000)
        let server = LoopBound(gateway.server)
        let queued = gateway.onLoop { server.value.http.unprovenQueuedBytes }
        #expect(queued > 0 && queued <= (1 << 20) + 4096, "\(queued) bytes queued")
    }

    @Test func oneClientCannotHoldMoreConnectionsThanItsLimit() throws {
        var http = HTTPServer.Configuration()
        http.maxConnectionsPerClient = 3
        let gateway = try RunningGateway(http: http)
        defer { gateway.stop() }
        let held = try (0..<3).map { _ in try connectLoopback(port: gateway.port) }
        usleep(100_000)
        let refused = try exchange(port: gateway.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(refused.hasPrefix("HTTP/1.1 503"))
        #expect(refused.contains("too_many_connections"))
        close(held[0])
        usleep(100_000)
        #expect(try gateway.request("GET", "/healthz").status == 200)
        held.dropFirst().forEach { close($0) }
    }

    @Test func aConnectionCannotHoldMoreSubscriptionsThanItsLimit() throws {
        let gateway = try RunningGateway { $0.hub.limits.maxSubscriptionsPerConnection = 2 }
        defer { gateway.stop() }
        let ids = try (0..<3).map { _ in try launch(gateway, script: "echo hi") }
        let viewer = try Viewer(gateway)
        for (index, id) in ids.enumerated() { viewer.send(#"{"op":"subscribe","job":"\#(id)","req":\#(index)}"#) }
        var errors: [[String: Any]] = []
        var acks = 0
        while acks + errors.count < 3, let message = viewer.next() {
            if message["type"] as? String == "ack" { acks += 1 }
            if message["type"] as? String == "error" { errors.append(message) }
        }
        #expect(acks == 2)
        #expect(errors.first?["code"] as? String == "too_many_subscriptions")
        #expect(errors.first?["req"] as? Int == 2)
    }
}
