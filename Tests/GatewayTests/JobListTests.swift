import AgentCore
import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// The job list at scale, deletion and retention, over real sockets and a real store.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct JobListTests {
    /// `count` finished jobs, one second apart, providers and labels in turn.
    static func storedJobs(_ count: Int) -> [Job] {
        (0..<count).map { index in
            var job = Job(id: String(format: "%016x", index + 1), provider: index % 3 == 0 ? "codex" : "claude", prompt: "job \(index)", createdAt: 1_700_000_000_000 + index * 1_000)
            job.status = index % 2 == 0 ? .done : .failed
            job.label = index % 5 == 0 ? "nightly build" : nil
            job.lastSeq = 0
            return job
        }
    }

    static func page(_ gateway: RunningGateway, _ query: String) throws -> (ids: [String], next: String?, status: Int, reply: [String: Any]) {
        let reply = try gateway.request("GET", "/api/agents/jobs?" + query)
        let jobs = reply.json["jobs"] as? [[String: Any]] ?? []
        return (jobs.compactMap { $0["id"] as? String }, reply.json["nextCursor"] as? String, reply.status, reply.json)
    }

    @Test func tenThousandJobsPageNewestFirstWithServerFiltersAndStableCursors() throws {
        let stored = Self.storedJobs(10_000)
        let gateway = try RunningGateway(jobs: stored)
        defer { gateway.stop() }
        let newestFirst = stored.reversed().map(\.id)
        // The default page: the newest 100, and a cursor.
        let first = try Self.page(gateway, "")
        #expect(first.ids == Array(newestFirst.prefix(100)))
        #expect(first.next != nil)
        // Every job once, in order, page after page.
        var seen: [String] = []
        var cursor: String? = nil
        repeat {
            let page = try Self.page(gateway, "limit=1000" + (cursor.map { "&cursor=\($0)" } ?? ""))
            seen += page.ids
            cursor = page.next
        } while cursor != nil
        #expect(seen == newestFirst)
        // A new job while paging does not shift the pages after the cursor.
        let second = try Self.page(gateway, "limit=100&cursor=\(first.next!)")
        _ = try launch(gateway, script: "echo new")
        let again = try Self.page(gateway, "limit=100&cursor=\(first.next!)")
        #expect(again.ids == second.ids)
        // Filters on the server: status (several), provider, label (percent-encoded).
        let failedCodex = try Self.page(gateway, "status=failed&provider=codex&limit=1000")
        let expected = stored.reversed().filter { $0.status == .failed && $0.provider == "codex" }.map(\.id)
        #expect(failedCodex.ids == Array(expected.prefix(1000)))
        let labelled = try Self.page(gateway, "label=nightly%20build&limit=1000&status=done,failed")
        #expect(labelled.ids == stored.reversed().filter { $0.label == "nightly build" }.prefix(1000).map(\.id))
        #expect(try Self.page(gateway, "label=nightly+build&limit=5").ids.count == 5)
    }

    @Test func badPageQueriesAreRefusedNamingTheField() throws {
        let gateway = try RunningGateway(jobs: Self.storedJobs(3))
        defer { gateway.stop() }
        for (query, field) in [
            ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"), ("limit=99999999999999999999", "limit"),
            ("cursor=nope", "cursor"), ("cursor=1.../../x", "cursor"), ("status=sleeping", "status"), ("status=done,", "status"),
            ("label=", "label"), ("provider=\(String(repeating: "x", count: 1_025))", "provider"),
        ] {
            let reply = try gateway.request("GET", "/api/agents/jobs?" + query)
            #expect(reply.status == 400, "\(query)")
            #expect(reply.json["code"] as? String == "invalid_query", "\(query)")
            #expect(reply.json["field"] as? String == field, "\(query)")
        }
        #expect(try gateway.request("GET", "/api/agents/jobs?label=%ZZ").status == 400)
        #expect(try gateway.request("GET", "/api/agents/jobs?label=%FF").status == 400)
    }

    @Test func aFinishedJobIsDeletedWithItsFilesAndItsViewersAreTold() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let running = try launch(gateway, script: "sleep 30")
        let finished = try launch(gateway, script: "echo bye")
        _ = StreamEndTests.waitForEnd(gateway, finished)
        let watcher = try Viewer(gateway)
        watcher.send(#"{"op":"subscribe","job":"*"}"#)
        let follower = try Viewer(gateway, path: "/ws/jobs/\(finished)?format=json&since=999")

        #expect(try gateway.request("POST", "/api/agents/jobs/\(running)/delete").json["code"] as? String == "still_running")
        #expect(try gateway.request("POST", "/api/agents/jobs/0000000000000000/delete").status == 404)
        #expect(try gateway.request("DELETE", "/api/agents/jobs/\(finished)/delete").status == 405)
        let before = try #require(try gateway.request("GET", "/api/agents/jobs").json["version"] as? Int)
        let deleted = try gateway.request("POST", "/api/agents/jobs/\(finished)/delete")
        #expect(deleted.status == 200)
        #expect(deleted.json["deleted"] as? String == finished)
        #expect(try gateway.request("GET", "/api/agents/jobs/\(finished)").status == 404)
        #expect(!FileManager.default.fileExists(atPath: gateway.dataPath + "/jobs/\(finished)"))
        // A poller that saw the list before hears of it.
        #expect(try gateway.request("GET", "/api/agents/jobs?since=\(before)").status == 200)
        #expect(try gateway.request("POST", "/api/agents/jobs/\(finished)/delete").status == 404)
        #expect(!(try Self.page(gateway, "").ids.contains(finished)))
        // `"*"` viewers hear of it.
        var told = false
        while !told, let message = watcher.next() {
            told = message["type"] as? String == "job:deleted" && message["job"] as? String == finished
        }
        #expect(told)
        _ = follower
        // Over a WebSocket too, with the same refusals.
        watcher.send(#"{"op":"delete","job":"\#(running)","req":5}"#)
        var refusal: [String: Any]?
        while refusal == nil, let message = watcher.next() {
            if message["type"] as? String == "error" { refusal = message }
        }
        #expect(refusal?["code"] as? String == "still_running")
        #expect(refusal?["req"] as? Int == 5)
        _ = try gateway.request("DELETE", "/api/agents/jobs/\(running)")
    }

    @Test func retentionDeletesTheOldestFinishedJobsAndNeverARunningOne() throws {
        let stored = Self.storedJobs(50)
        let gateway = try RunningGateway(jobs: stored)
        defer { gateway.stop() }
        let running = try launch(gateway, script: "sleep 30")
        let manager = LoopBound(gateway.server.gateway.manager)
        // In batches, the oldest first.
        let batch = gateway.onLoop { manager.value.prune(JobManager.Retention(maxFinishedJobs: 10), limit: 15) }
        #expect(batch == stored.prefix(15).map(\.id))
        let deleted = gateway.onLoop { manager.value.prune(JobManager.Retention(maxFinishedJobs: 10)) }
        #expect(Set(deleted) == Set(stored[15..<40].map(\.id)))
        let left = try Self.page(gateway, "limit=1000").ids
        #expect(left == [running] + stored.suffix(10).reversed().map(\.id))
        // By age: these jobs ended (were created) in 2023.
        let aged = gateway.onLoop { manager.value.prune(JobManager.Retention(maxAgeMilliseconds: 86_400_000)) }
        #expect(aged.count == 10)
        #expect(try Self.page(gateway, "").ids == [running])
        _ = try gateway.request("DELETE", "/api/agents/jobs/\(running)")
    }
}
