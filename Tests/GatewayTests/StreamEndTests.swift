import Foundation
import Glibc
import TestSupport
import Testing
import WebSocketCore

@testable import Gateway

/// Every stream of a job ends with every event up to `job:completed` and a normal close, or
/// with an explicit reason, whatever the viewer's speed: over real sockets, with small socket
/// buffers so a pause of a few seconds fills the server's queue.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct StreamEndTests {
    /// 20,000 lines (about 2 MB of events) written as fast as the shell can.
    static let bigJob = "sleep 0.3; i=0; while [ $i -lt 20000 ]; do echo \"line $i of a job that writes a lot of output quickly\"; i=$((i+1)); done"

    static func slowViewerGateway(lagMilliseconds: Int = 30_000) throws -> RunningGateway {
        var http = HTTPServer.Configuration()
        http.socketSendBufferBytes = 16 * 1024
        return try RunningGateway(viewerQueueBytes: 64 * 1024, http: http) { $0.hub.limits.lagMilliseconds = lagMilliseconds }
    }

    /// Every seq a viewer reads until the server closes, the `lagged` message if one came,
    /// and the close code; a frame cut in the middle fails the connection (and the test).
    static func readUntilClosed(_ client: RawClient) -> (seqs: [Int], lagged: [String: Any]?, closeCode: CloseCode?) {
        var seqs: [Int] = []
        var lagged: [String: Any]?
        while let action = client.nextAction() {
            if case .deliver(let message) = action, let text = message.text,
                let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            {
                if json["type"] as? String == "lagged" { lagged = json } else if let seq = json["seq"] as? Int, json["type"] as? String != "ack" { seqs.append(seq) }
            }
            if case .peerClosed(let code, _) = action { return (seqs, lagged, code) }
            if case .closeTransport = action {
                Issue.record("the client failed the connection: a broken frame")
                break
            }
        }
        return (seqs, lagged, nil)
    }

    static func waitForEnd(_ gateway: RunningGateway, _ id: String) -> Int {
        for _ in 0..<300 {
            let job = (try? gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any]) ?? nil
            if let status = job?["status"] as? String, ["done", "failed", "killed"].contains(status) { return job?["lastSeq"] as? Int ?? 0 }
            usleep(50_000)
        }
        return 0
    }

    @Test func anSSEViewerThatPausesWhileTheJobEndsStillGetsEveryEventAndTheEnd() throws {
        let gateway = try Self.slowViewerGateway()
        defer { gateway.stop() }
        let id = try launch(gateway, script: Self.bigJob)
        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream", receiveBufferBytes: 8 * 1024)
        #expect(stream.status == 200)
        // The viewer stops reading while the job writes everything and ends.
        let lastSeq = Self.waitForEnd(gateway, id)
        #expect(lastSeq > 20_000)
        sleep(2)
        var seqs: [Int] = []
        var last: EventStreamClient.Event?
        while let event = stream.next() {
            if let id = event.id, let seq = Int(id) { seqs.append(seq) }
            last = event
        }
        #expect(seqs == Array(1...lastSeq))
        #expect(last?.name == "job:completed")
    }

    @Test func aSlowWebSocketFollowerGetsTheEndOfTheJobAndANormalClose() throws {
        let gateway = try Self.slowViewerGateway()
        defer { gateway.stop() }
        // 3,000 lines of 2 KB: the server's queue holds few of them.
        let id = try launch(gateway, script: "sleep 0.3; i=0; while [ $i -lt 3000 ]; do printf '%02000d\\n' $i; i=$((i+1)); done")
        let client = try RawClient(port: gateway.port, timeoutSeconds: 10, receiveBufferBytes: 8 * 1024)
        try client.handshake(path: "/ws/jobs/\(id)?format=json&since=0", headers: [("Authorization", "Bearer \(RunningGateway.token)")])
        let lastSeq = Self.waitForEnd(gateway, id)
        var seqs: [Int] = []
        var closeCode: CloseCode?
        var paused = false
        while let action = client.nextAction() {
            // Near the end (the close is queued behind the last events now), the reader stalls
            // for longer than the WebSocket close timeout (5 s), which used to throw the rest away.
            if !paused, let last = seqs.last, last >= lastSeq - 40 {
                paused = true
                sleep(6)
            }
            if case .deliver(let message) = action, let text = message.text,
                let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], let seq = json["seq"] as? Int
            {
                seqs.append(seq)
            }
            if case .peerClosed(let code, _) = action {
                closeCode = code
                break
            }
        }
        #expect(seqs.count == lastSeq)
        #expect(seqs == Array(1...lastSeq))
        #expect(closeCode == .normalClosure)
    }

    /// A job continued by a follow-up has its first run's `job:completed` in its log: a
    /// stream opened while the next run is under way replays past it and ends at the job's
    /// real end (it used to end as soon as it caught up, mid-run).
    @Test func aStreamOpenedDuringAContinuedRunEndsAtTheJobsLastEnd() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let script = #"echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'; "#
            + #"case "$*" in *--resume=s1*) i=0; while [ $i -lt 15 ]; do echo "resumed step $i"; sleep 0.1; i=$((i+1)); done ;; *) echo first ;; esac; "#
            + #"echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"s1"}'"#
        let id = try launch(gateway, script: script)
        let first = Self.waitForEnd(gateway, id)
        #expect(first > 0)
        let sent = try gateway.request("POST", "/api/agents/jobs/\(id)/messages", body: #"{"text":"more"}"#)
        #expect(sent.status == 202 && sent.json["resumed"] as? Bool == true)
        usleep(400_000)
        let client = try RawClient(port: gateway.port, timeoutSeconds: 10)
        try client.handshake(path: "/ws/jobs/\(id)?format=json&since=0", headers: [("Authorization", "Bearer \(RunningGateway.token)")])
        let (seqs, _, closeCode) = Self.readUntilClosed(client)
        let job = try #require(try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])
        let lastSeq = try #require(job["lastSeq"] as? Int)
        #expect(job["status"] as? String == "done" && lastSeq > first + 15)
        // Every stored event but the agent's raw ones (not asked for), once, in order.
        let events = try #require(try gateway.request("GET", "/api/agents/jobs/\(id)/events?limit=1000").json["events"] as? [[String: Any]])
        let wanted = events.filter { $0["type"] as? String != "job:event" }.compactMap { $0["seq"] as? Int }
        #expect(seqs == wanted && seqs.last == lastSeq)
        #expect(events.filter { $0["type"] as? String == "job:completed" }.count == 2)
        #expect(closeCode == .normalClosure)
    }

    @Test func aViewerThatStopsReadingIsToldItLaggedRightBehindWholeFrames() throws {
        let gateway = try Self.slowViewerGateway(lagMilliseconds: 300)
        defer { gateway.stop() }
        let id = try launch(gateway, script: Self.bigJob)
        let client = try RawClient(port: gateway.port, timeoutSeconds: 10, receiveBufferBytes: 8 * 1024)
        try client.handshake(path: "/ws", headers: [("Authorization", "Bearer \(RunningGateway.token)")])
        client.sendMessage(#"{"op":"subscribe","job":"\#(id)","since":0}"#)
        _ = Self.waitForEnd(gateway, id)
        // Not reading for longer than the lag timeout and the old close timeout together.
        sleep(7)
        let (seqs, lagged, closeCode) = Self.readUntilClosed(client)
        #expect(closeCode == SubscriptionHub.laggedCloseCode)
        let told = try #require(lagged)
        #expect(told["job"] as? String == id)
        // What it got is gapless, and `lagged` says exactly where to resume.
        #expect(!seqs.isEmpty && seqs == Array(1...seqs.count))
        #expect(told["seq"] as? Int == seqs.last)
    }

    /// A late viewer of a finished job that stops reading while it is replayed to — from the
    /// log, or from ready frames (file ranges, sendfile) — is told it lagged and closed on
    /// time: a replay waiting for it to read counts as paused.
    @Test(arguments: [false, true])
    func aViewerThatStopsReadingDuringAReplayIsToldItLagged(fromFrames: Bool) throws {
        var http = HTTPServer.Configuration()
        http.socketSendBufferBytes = 16 * 1024
        let gateway = try RunningGateway(viewerQueueBytes: 64 * 1024, http: http) {
            $0.hub.limits.lagMilliseconds = 300
            $0.hub.limits.replayFramesMinimumBytes = fromFrames ? 0 : .max
            $0.hub.limits.replayFileSliceBytes = 16 * 1024
            $0.hub.limits.replaySliceBytes = 4 * 1024
        }
        defer { gateway.stop() }
        let id = try launch(gateway, script: Self.bigJob)
        let last = Self.waitForEnd(gateway, id)
        let index = gateway.dataPath + "/jobs/" + id + "/" + ReplayFrames.indexName
        for _ in 0..<(fromFrames ? 500 : 0) where !FileManager.default.fileExists(atPath: index) { usleep(10_000) }
        #expect(FileManager.default.fileExists(atPath: index) == fromFrames)
        let client = try RawClient(port: gateway.port, timeoutSeconds: 10, receiveBufferBytes: 8 * 1024)
        try client.handshake(path: "/ws", headers: [("Authorization", "Bearer \(RunningGateway.token)")])
        client.sendMessage(#"{"op":"subscribe","job":"\#(id)","since":0}"#)
        sleep(3)
        let (seqs, lagged, closeCode) = Self.readUntilClosed(client)
        #expect(closeCode == SubscriptionHub.laggedCloseCode)
        let told = try #require(lagged)
        #expect(!seqs.isEmpty && seqs.count < last && seqs == Array(1...seqs.count))
        #expect(told["seq"] as? Int == seqs.last)
        let metrics = try gateway.request("GET", "/metrics").body
        #expect(metrics.contains("agentgate_replay_frames_bytes_total 0\n") == !fromFrames)
    }

    @Test func aFinishedJobWhoseEventFileIsMissingOrTornStillEndsItsStreams() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let missing = try launch(gateway, script: "echo one; echo two")
        let torn = try launch(gateway, script: "echo one; echo two; echo three")
        let missingLast = Self.waitForEnd(gateway, missing)
        let tornLast = Self.waitForEnd(gateway, torn)
        try FileManager.default.removeItem(atPath: gateway.dataPath + "/jobs/\(missing)/events.ndjson")
        // The last line (job:completed) torn in the middle, as a crash mid-write leaves it.
        let tornPath = gateway.dataPath + "/jobs/\(torn)/events.ndjson"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: tornPath)[.size] as? Int)
        #expect(truncate(tornPath, off_t(size - 40)) == 0)

        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(missing)/stream")
        let events = stream.events(until: "job:completed")
        #expect(events.map(\.name) == ["gap", "job:completed"])
        #expect(events.first?.json["from"] as? Int == 1)
        #expect(events.first?.json["to"] as? Int == missingLast - 1)
        #expect(events.last?.id == String(missingLast))
        #expect(stream.next() == nil)  // and then it closes

        let tornStream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(torn)/stream")
        let tornEvents = tornStream.events(until: "job:completed")
        #expect(tornEvents.compactMap(\.id) == (1...tornLast).map(String.init))
        #expect(!tornEvents.contains { $0.name == "gap" })
        #expect(tornStream.next() == nil)

        // The text follower of `websocat` ends too, with the job's status line.
        let follower = try Viewer(gateway, path: "/ws/jobs/\(missing)?format=text&since=0")
        let (lines, closeCode) = follower.textsUntilClose()
        #expect(lines.last?.hasPrefix("[agentgate] job \(missing) done") == true)
        #expect(closeCode == .normalClosure)
    }
}
