import Foundation
import Glibc
import TestSupport
import Testing
import EventLoop
import WebSocketCore

@testable import Gateway

/// A viewer over a real WebSocket to the gateway.
final class Viewer {
    let client: RawClient

    init(_ gateway: RunningGateway, path: String = "/ws", token: String? = RunningGateway.token) throws {
        client = try RawClient(port: gateway.port)
        var headers: [(String, String)] = []
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        try client.handshake(path: path, headers: headers)
    }

    func send(_ json: String) { client.sendMessage(json) }

    /// The next JSON message (nil at close or timeout).
    func next() -> [String: Any]? {
        guard let text = client.nextMessage() else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    /// The text of every message until the server closes, and its close code.
    func textsUntilClose() -> (texts: [String], closeCode: CloseCode?) {
        var texts: [String] = []
        while let action = client.nextAction() {
            if case .deliver(let message) = action { texts.append(message.text ?? "") }
            if case .peerClosed(let code, _) = action { return (texts, code) }
        }
        return (texts, nil)
    }

    /// Messages of `job` until its job:completed; returns their seqs.
    func seqsUntilCompleted(job: String) -> [Int] {
        var seqs: [Int] = []
        while let message = next() {
            guard message["job"] as? String == job, let seq = message["seq"] as? Int, message["type"] as? String != "ack" else { continue }
            seqs.append(seq)
            if message["type"] as? String == "job:completed" { break }
        }
        return seqs
    }
}

func launch(_ gateway: RunningGateway, script: String) throws -> String {
    let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    let reply = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"\#(escaped)"}}"#)
    return try #require((reply.json["job"] as? [String: Any])?["id"] as? String)
}

let fastJob = "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done"

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct SubscriptionTests {
    @Test func viewersOfOneJobSeeIdenticalGaplessSequences() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let viewers = try (0..<5).map { _ in try Viewer(gateway) }
        let id = try launch(gateway, script: "sleep 0.2; " + fastJob)
        for viewer in viewers { viewer.send(#"{"op":"subscribe","job":"\#(id)","since":0,"req":1}"#) }
        let sequences = viewers.map { $0.seqsUntilCompleted(job: id) }
        #expect(sequences[0] == Array(1...3002))
        for sequence in sequences.dropFirst() { #expect(sequence == sequences[0]) }
    }

    @Test func resumingAtRandomSeqsWhileTheJobWritesLosesAndRepeatsNothing() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        // 3,000 lines over about half a second, so every viewer joins while it writes.
        let id = try launch(gateway, script: "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); [ $((i % 150)) -eq 0 ] && sleep 0.03; done")
        var generator = SystemRandomNumberGenerator()
        var joined: [(since: Int, viewer: Viewer)] = []
        for _ in 0..<8 {
            usleep(UInt32.random(in: 10_000...60_000, using: &generator))
            // A cursor the server has reached: any seq up to the job's last one so far.
            let lastSeq = (try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])?["lastSeq"] as? Int ?? 0
            let since = Int.random(in: 0...lastSeq, using: &generator)
            let viewer = try Viewer(gateway)
            viewer.send(#"{"op":"subscribe","job":"\#(id)","since":\#(since)}"#)
            joined.append((since, viewer))
        }
        for (since, viewer) in joined {
            #expect(viewer.seqsUntilCompleted(job: id) == Array((since + 1)...3002), "resumed at \(since)")
        }
    }

    @Test func theTextStreamIsTailDashFThatExitsWithTheJob() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let id = try launch(gateway, script: "echo one; echo two >&2; echo three; printf 'title \\033]0;pwned\\007 csi \\302\\23331m\\n'")
        let viewer = try Viewer(gateway, path: "/ws/jobs/\(id)?format=text&since=0")
        let (lines, closeCode) = viewer.textsUntilClose()
        #expect(lines.contains("one") && lines.contains("three") && lines.contains("[stderr] two"))
        // Read on terminals (websocat): an agent's escape sequences arrive escaped, as the CLI shows them.
        #expect(lines.contains(#"title \x1b]0;pwned\x07 csi \x9b31m"#), "\(lines)")
        #expect(lines.last?.hasPrefix("[agentgate] job \(id) done") == true)
        #expect(closeCode == .normalClosure)
    }

    @Test func aCursorFromTheFutureGetsAReset() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let id = try launch(gateway, script: "echo hi")
        usleep(300_000)
        let viewer = try Viewer(gateway)
        viewer.send(#"{"op":"subscribe","job":"\#(id)","since":999}"#)
        let reset = viewer.next()
        #expect(reset?["type"] as? String == "reset")
        #expect((reset?["seq"] as? Int ?? 0) > 0)
        viewer.send(#"{"op":"subscribe","job":"nope","req":7}"#)
        var error: [String: Any]?
        while error == nil, let message = viewer.next() {
            if message["type"] as? String == "error" { error = message }
        }
        #expect(error?["code"] as? String == "unknown_job")
        #expect(error?["req"] as? Int == 7)
    }

    @Test func upgradesNeedTheTokenAndOurOrigin() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let anonymous = try RawClient(port: gateway.port)
        #expect(throws: (any Error).self) { try anonymous.handshake(path: "/ws") }
        let foreign = try RawClient(port: gateway.port)
        #expect(throws: (any Error).self) {
            try foreign.handshake(path: "/ws", headers: [("Authorization", "Bearer \(RunningGateway.token)"), ("Origin", "http://evil.example")])
        }
        let viaSubprotocol = try RawClient(port: gateway.port)
        let head = try viaSubprotocol.handshake(
            path: "/ws", headers: [("Sec-WebSocket-Protocol", "agentgate.v1, agentgate.token.\(RunningGateway.token)")])
        // The credential is accepted, and never echoed back.
        #expect(head.headers["Sec-WebSocket-Protocol"] == "agentgate.v1")
        let onlyCredential = try RawClient(port: gateway.port)
        let bare = try onlyCredential.handshake(path: "/ws", headers: [("Sec-WebSocket-Protocol", "agentgate.token.\(RunningGateway.token)")])
        #expect(bare.headers["Sec-WebSocket-Protocol"] == nil)
    }

    /// 20,000 lines of about 100 bytes: far more than a 64 KiB viewer queue.
    static let floodJob = "sleep 0.2; i=0; while [ $i -lt 20000 ]; do echo \"a fairly long line of agent output number $i\"; i=$((i+1)); done"

    @Test func aStalledViewerIsCaughtUpWithoutLossAndDoesNotSlowOthers() throws {
        let gateway = try RunningGateway(viewerQueueBytes: 64 * 1024)
        defer { gateway.stop() }
        let stalled = try Viewer(gateway)
        var small = 64 * 1024
        setsockopt(stalled.client.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int>.size))
        let healthy = try Viewer(gateway)
        let id = try launch(gateway, script: Self.floodJob)
        stalled.send(#"{"op":"subscribe","job":"\#(id)","since":0}"#)
        healthy.send(#"{"op":"subscribe","job":"\#(id)","since":0}"#)
        // The healthy viewer gets everything while the stalled one reads nothing.
        #expect(healthy.seqsUntilCompleted(job: id) == Array(1...20002))
        let hub = LoopBound(gateway.server.hub)
        #expect(gateway.onLoop { hub.value.pauses } >= 1)  // the stalled one was paused, not buffered without bound
        // Now the stalled one reads: caught up from the store, in order, nothing lost.
        #expect(stalled.seqsUntilCompleted(job: id) == Array(1...20002))
    }

    @Test func aViewerStuckPastTheLagTimeoutIsToldWhereToResume() throws {
        let gateway = try RunningGateway(viewerQueueBytes: 64 * 1024) { $0.hub.limits.lagMilliseconds = 300 }
        defer { gateway.stop() }
        let stuck = try Viewer(gateway)
        var small = 64 * 1024
        setsockopt(stuck.client.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int>.size))
        // 500-byte lines: 10 MB, more than the kernel's socket buffers hold for a stuck reader.
        let id = try launch(gateway, script: "sleep 0.2; i=0; while [ $i -lt 20000 ]; do printf '%0500d\\n' $i; i=$((i+1)); done; sleep 2")
        stuck.send(#"{"op":"subscribe","job":"\#(id)","since":0}"#)
        usleep(1_500_000)  // never read during the lag timeout
        var lagged: [String: Any]?
        var closeCode: CloseCode?
        var lastSeq = 0
        while let action = stuck.client.nextAction() {
            if case .deliver(let message) = action,
                let json = (try? JSONSerialization.jsonObject(with: Data(message.payload))) as? [String: Any]
            {
                if json["type"] as? String == "lagged" {
                    lagged = json
                } else if json["type"] as? String != "ack", let seq = json["seq"] as? Int {
                    lastSeq = seq
                }
            }
            if case .peerClosed(let code, _) = action {
                closeCode = code
                break
            }
        }
        #expect(closeCode == SubscriptionHub.laggedCloseCode)
        #expect(lagged?["seq"] as? Int == lastSeq)  // resume point: the last seq it was sent
        #expect(lastSeq < 20002)
        // Resuming from there gets the rest, exactly.
        let again = try Viewer(gateway)
        again.send(#"{"op":"subscribe","job":"\#(id)","since":\#(lastSeq)}"#)
        #expect(again.seqsUntilCompleted(job: id) == Array((lastSeq + 1)...20002))
    }

    /// A replay reads slices ahead of its viewer; leaving the job midway stops it, the next
    /// job's replay starts, and coming back replays the first whole again.
    @Test func aReplayLeftMidwayStopsAndTheNextJobAndAReturnAreReplayedWhole() throws {
        let gateway = try RunningGateway { $0.hub.limits.replaySliceBytes = 4_096 }
        defer { gateway.stop() }
        let big = try launch(gateway, script: fastJob)
        let small = try launch(gateway, script: "echo one; echo two; echo three")
        let bigLast = StreamEndTests.waitForEnd(gateway, big)
        let smallLast = StreamEndTests.waitForEnd(gateway, small)
        #expect(bigLast > 3_000 && smallLast > 3)
        let viewer = try Viewer(gateway)
        viewer.send(#"{"op":"subscribe","job":"\#(big)","since":0}"#)
        var seen = 0
        while seen < 200, let message = viewer.next() {
            if message["job"] as? String == big { seen += 1 }
        }
        viewer.send(#"{"op":"unsubscribe","job":"\#(big)"}"#)
        viewer.send(#"{"op":"subscribe","job":"\#(small)","since":0}"#)
        #expect(viewer.seqsUntilCompleted(job: small) == Array(1...smallLast))
        // Again, left midway and resumed from 0 at once: slices of the stopped replay still on
        // their way are not taken for the new one (nothing twice, nothing lost).
        viewer.send(#"{"op":"subscribe","job":"\#(big)","since":0}"#)
        seen = 0
        while seen < 100, let message = viewer.next() {
            if message["job"] as? String == big { seen += 1 }
        }
        viewer.send(#"{"op":"unsubscribe","job":"\#(big)"}"#)
        viewer.send(#"{"op":"subscribe","job":"\#(big)","since":0,"req":9}"#)
        while let message = viewer.next(), !(message["type"] as? String == "ack" && message["req"] as? Int == 9) {}
        #expect(viewer.seqsUntilCompleted(job: big) == Array(1...bigLast))
        let metrics = try gateway.request("GET", "/metrics").body
        #expect(metrics.contains("agentgate_replays_in_flight 0\n"))
    }

    /// A finished job's replay is sent from its ready frames (sendfile), exactly: from seq 0,
    /// from cursors across it, and two jobs on one socket; frames found damaged are never
    /// sent (the log serves the replay) and are rebuilt.
    @Test func aFinishedJobIsReplayedFromItsReadyFramesExactlyFromAnyCursor() throws {
        let gateway = try RunningGateway {
            $0.hub.limits.replayFramesMinimumBytes = 0
            $0.hub.limits.replayFileSliceBytes = 4_096
        }
        defer { gateway.stop() }
        let big = try launch(gateway, script: fastJob)
        let small = try launch(gateway, script: "echo one; echo two; echo three")
        let bigLast = StreamEndTests.waitForEnd(gateway, big)
        let smallLast = StreamEndTests.waitForEnd(gateway, small)
        let index = { (job: String) in gateway.dataPath + "/jobs/" + job + "/" + ReplayFrames.indexName }
        func waitForFrames(_ job: String) -> Bool {
            for _ in 0..<500 {
                if FileManager.default.contents(atPath: index(job)).map({ $0.prefix(8) == Data("AGFRAME1".utf8) }) ?? false { return true }
                usleep(10_000)
            }
            return false
        }
        func fromFrames() -> Int {
            let metrics = (try? gateway.request("GET", "/metrics").body) ?? ""
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("agentgate_replay_frames_bytes_total ") }
            return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? -1
        }
        // Built when the jobs ended, before anyone asked.
        #expect(waitForFrames(big) && waitForFrames(small))
        // Damaged before their first use (the frames garbled, the index's mark changed): they
        // are never sent, the log serves the replay exactly, and they are rebuilt (the end of
        // this replay may already come from the new ones).
        let framesPath = gateway.dataPath + "/jobs/" + big + "/" + ReplayFrames.framesName
        let framesSize = try #require(FileManager.default.contents(atPath: framesPath)).count
        try Data(repeating: 0x41, count: framesSize).write(to: URL(fileURLWithPath: framesPath))
        var damaged = try #require(FileManager.default.contents(atPath: index(big)))
        damaged[0] ^= 0xFF
        try damaged.write(to: URL(fileURLWithPath: index(big)))
        let viewer = try Viewer(gateway)
        viewer.send(#"{"op":"subscribe","job":"\#(big)","since":5}"#)
        #expect(viewer.seqsUntilCompleted(job: big) == Array(6...bigLast))
        #expect(waitForFrames(big))
        viewer.send(#"{"op":"subscribe","job":"\#(big)","since":0}"#)
        #expect(viewer.seqsUntilCompleted(job: big) == Array(1...bigLast))
        #expect(fromFrames() > 100_000)
        for since in [1, 7, bigLast / 3, bigLast / 2 + 1, bigLast - 2, bigLast - 1] {
            viewer.send(#"{"op":"subscribe","job":"\#(big)","since":\#(since)}"#)
            #expect(viewer.seqsUntilCompleted(job: big) == Array((since + 1)...bigLast), "since \(since)")
        }
        // Two jobs on one socket at once.
        let both = try Viewer(gateway)
        both.send(#"{"op":"subscribe","job":"\#(small)","since":0}"#)
        both.send(#"{"op":"subscribe","job":"\#(big)","since":10}"#)
        var seqs: [String: [Int]] = [:]
        var ended = 0
        while ended < 2, let message = both.next() {
            guard let job = message["job"] as? String, let seq = message["seq"] as? Int, message["type"] as? String != "ack" else { continue }
            seqs[job, default: []].append(seq)
            if message["type"] as? String == "job:completed" { ended += 1 }
        }
        #expect(seqs[small] == Array(1...smallLast))
        #expect(seqs[big] == Array(11...bigLast))
    }
}
