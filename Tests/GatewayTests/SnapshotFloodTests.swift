import AgentCore
import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// `subscribe "*"` answers with a snapshot of every job. Repeating it must not make the
/// loop rebuild that snapshot per message: 7 KB of such messages once stalled every other
/// client for 10 s with 500 jobs.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct SnapshotFloodTests {
    static let jobCount = 500

    /// Finished jobs the size real ones have: a prompt, an argv, a result.
    static var storedJobs: [Job] {
        (0..<jobCount).map { index in
            var job = Job(
                id: String(format: "%016x", index), provider: "claude",
                prompt: "refactor the parser in module \(index) and keep its tests green", createdAt: 1_700_000_000_000 + index)
            job.status = .done
            job.command = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--model", "opus"]
            job.startedAt = job.createdAt + 5
            job.endedAt = job.createdAt + 60_000
            job.exitCode = 0
            job.lastSeq = 3
            job.result = .object(["text": .string("Done: the parser of module \(index) is refactored."), "costUsd": .double(0.12)])
            return job
        }
    }

    static func milliseconds() -> Int { Int(MonotonicClock.nanoseconds() / 1_000_000) }

    @Test func aThousandStarSubscribesInOneWriteStallNobodyAndGetSensibleAnswers() throws {
        let gateway = try RunningGateway(jobs: Self.storedJobs)
        defer { gateway.stop() }
        let flooder = try Viewer(gateway)
        var flood: [UInt8] = []
        for request in 1...1_000 {
            flood += flooder.client.connection.encodeMessage(Array(#"{"op":"subscribe","job":"*","req":\#(request)}"#.utf8), isText: true)
        }
        let sentAt = Self.milliseconds()
        flooder.client.send(flood)

        // Another client meanwhile: every request answered promptly.
        var slowest = 0
        for _ in 0..<10 {
            let start = Self.milliseconds()
            let reply = try gateway.request("GET", "/api/agents/jobs/0000000000000007")
            slowest = max(slowest, Self.milliseconds() - start)
            #expect(reply.status == 200)
            usleep(20_000)
        }
        #expect(slowest < 200, "another client waited \(slowest) ms")

        // The flooder: every request acknowledged, in order; a few snapshots of all the jobs,
        // the last one after the last ack (newer than every request).
        var acks: [Int] = []
        var snapshots: [[String: Any]] = []
        var lastType = ""
        while (acks.count < 1_000 || lastType != "snapshot") && snapshots.count <= 10, Self.milliseconds() - sentAt < 20_000,
            let message = flooder.next()
        {
            lastType = message["type"] as? String ?? ""
            if lastType == "ack", let request = message["req"] as? Int { acks.append(request) }
            if lastType == "snapshot" { snapshots.append(message) }
        }
        #expect(acks == Array(1...1_000))
        #expect(lastType == "snapshot")
        #expect((1...4).contains(snapshots.count), "\(snapshots.count) snapshots for 1,000 subscribes")
        // Each holds the newest 100 finished jobs, and says how many there are in all.
        for snapshot in snapshots {
            #expect((snapshot["jobs"] as? [Any])?.count == 100)
            #expect(snapshot["total"] as? Int == Self.jobCount)
        }

        // A job that starts now reaches the flooder as a lifecycle event, once.
        let id = try launch(gateway, script: "echo hi")
        var started = 0
        while let message = flooder.next() {
            if message["job"] as? String == id, message["type"] as? String == "job:started" { started += 1 }
            if message["job"] as? String == id, message["type"] as? String == "job:completed" { break }
        }
        #expect(started == 1)
    }

    @Test func aRepeatedStarSubscribeAfterTheIntervalGetsAFreshSnapshot() throws {
        let gateway = try RunningGateway(jobs: Array(Self.storedJobs.prefix(3)))
        defer { gateway.stop() }
        let viewer = try Viewer(gateway)
        /// The snapshot that follows the request's ack (lifecycle events may come first).
        func subscribe(_ request: Int) -> [String: Any]? {
            viewer.send(#"{"op":"subscribe","job":"*","req":\#(request)}"#)
            var acknowledged = false
            while let message = viewer.next() {
                if message["type"] as? String == "ack", message["req"] as? Int == request { acknowledged = true }
                if acknowledged, message["type"] as? String == "snapshot" { return message }
            }
            return nil
        }
        let first = subscribe(1)
        #expect(first?["type"] as? String == "snapshot")
        #expect((first?["jobs"] as? [Any])?.count == 3)
        let id = try launch(gateway, script: "echo hi")
        usleep(300_000)
        let snapshot = subscribe(2)
        let jobs = (snapshot?["jobs"] as? [[String: Any]]) ?? []
        #expect(jobs.count == 4)
        #expect(jobs.last?["id"] as? String == id)
        #expect((snapshot?["version"] as? Int ?? 0) > (first?["version"] as? Int ?? 0))
    }
}
