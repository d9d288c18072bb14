import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// The streams filter by project as the job list does: a `"*"` subscription with `project` and
/// the all-jobs SSE stream with `?project=` get that project's snapshot and events only.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(5)))
struct ProjectStreamTests {
    func launch(_ gateway: RunningGateway, project: String, script: String) throws -> String {
        let reply = try gateway.request(
            "POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","project":"\#(project)","env":{"FAKE_SCRIPT":"\#(script)"}}"#)
        return try #require((reply.json["job"] as? [String: Any])?["id"] as? String)
    }

    @Test func aProjectsViewersSeeOnlyItsJobs() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let earlier = try launch(gateway, project: "web", script: "echo hi")
        let other = try launch(gateway, project: "api", script: "echo hi")

        let viewer = try Viewer(gateway)
        viewer.send(#"{"op":"subscribe","job":"*","project":"web","req":1}"#)
        #expect(viewer.next()?["type"] as? String == "ack")
        let snapshot = try #require(viewer.next())
        let shown = (snapshot["jobs"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        #expect(snapshot["type"] as? String == "snapshot" && shown == [earlier] && snapshot["total"] as? Int == 1, "\(snapshot)")
        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream?project=web")
        #expect(stream.status == 200)
        #expect(stream.next()?.json["jobs"].map { ($0 as? [[String: Any]] ?? []).compactMap { $0["id"] as? String } } == [earlier])

        // New jobs of both projects: each viewer gets the web one's lifecycle only.
        let apiJob = try launch(gateway, project: "api", script: "echo hi")
        let webJob = try launch(gateway, project: "web", script: "echo hi")
        var seen = Set<String>()
        while let message = viewer.next(), !(message["type"] as? String == "job:completed" && message["job"] as? String == webJob) {
            if let job = message["job"] as? String { seen.insert(job) }
        }
        #expect(!seen.contains(apiJob) && !seen.contains(other), "\(seen)")
        var streamed = Set<String>()
        while let event = stream.next(), !(event.name == "job:completed" && event.json["job"] as? String == webJob) {
            if let job = event.json["job"] as? String { streamed.insert(job) }
        }
        #expect(streamed == [webJob], "\(streamed)")

        // A bad filter is refused, on either.
        viewer.send(#"{"op":"subscribe","job":"*","project":"../x","req":2}"#)
        #expect(viewer.next()?["code"] as? String == "invalid_message")
        #expect(try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream?project=a%20b").status == 400)
        // Given twice, or not decodable: refused, not the unfiltered stream.
        #expect(try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream?project=web&project=api").status == 400)
        #expect(try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream?project=%ZZ").status == 400)
    }
}
