import AgentCore
import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// The routes of a job's change over real sockets, with real git: what each answers before,
/// during and after, and how each refuses what it cannot do.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct WorktreeRouteTests {
    func waitFor(_ gateway: RunningGateway, _ id: String, status wanted: String) throws -> [String: Any] {
        var job: [String: Any] = [:]
        for _ in 0..<500 where job["status"] as? String != wanted {
            usleep(20_000)
            job = (try gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any]) ?? [:]
        }
        #expect(job["status"] as? String == wanted)
        return job
    }

    func launch(_ gateway: RunningGateway, _ fields: String) throws -> String {
        let created = try gateway.request("POST", "/api/agents/jobs", body: fields)
        #expect(created.status == 201, "\(created.body)")
        return try #require((created.json["job"] as? [String: Any])?["id"] as? String)
    }

    @Test func theDiffApplyAndDiscardRoutesAnswerAndRefuseAsDocumented() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let repository = GitRepository(files: ["a.txt": "one\n"])
        let id = try launch(
            gateway, #"{"provider":"claude","prompt":"x","cwd":"\#(repository.path)","isolation":"worktree","env":{"FAKE_SCRIPT":"echo two >> a.txt; echo new > b.txt; sleep 1"}}"#)
        _ = try waitFor(gateway, id, status: "running")
        let early = try gateway.request("GET", "/api/agents/jobs/\(id)/diff")
        #expect(early.status == 409 && early.json["code"] as? String == "diff_not_ready")
        #expect(try gateway.request("POST", "/api/agents/jobs/\(id)/apply", body: "{}").json["code"] as? String == "worktree_busy")
        let job = try waitFor(gateway, id, status: "done")
        let worktree = try #require(job["worktree"] as? [String: Any])
        #expect(worktree["state"] as? String == "ready" && worktree["summary"] as? String == "2 files changed, +2 \u{2212}0")
        #expect(((job["result"] as? [String: Any])?["diff"] as? [String: Any])?["filesChanged"] as? Int == 2)

        let metrics = try gateway.request("GET", "/metrics").body
        #expect(metrics.contains("agentgate_worktree_tasks 0") && metrics.contains("agentgate_jobs{status=\"preparing\"} 0"), "\(metrics)")
        let patch = try gateway.request("GET", "/api/agents/jobs/\(id)/diff")
        #expect(patch.status == 200 && patch.header("Content-Type") == "text/x-diff; charset=utf-8")
        #expect(patch.header("X-Diff-Truncated") == "false")
        #expect(patch.body.hasPrefix("diff --git a/a.txt b/a.txt") && patch.body.contains("+new"))
        let perFile = try gateway.request("GET", "/api/agents/jobs/\(id)/diff?format=json")
        let files = try #require(perFile.json["files"] as? [[String: Any]])
        #expect(files.map { $0["path"] as? String } == ["a.txt", "b.txt"])
        #expect(files.map { $0["status"] as? String } == ["modified", "added"])
        #expect((files[1]["patch"] as? String)?.hasPrefix("diff --git a/b.txt b/b.txt") == true)
        #expect(try gateway.request("GET", "/api/agents/jobs/\(id)/diff?format=xml").status == 400)

        // Bodies the apply route refuses, before any git runs.
        let badMode = try gateway.request("POST", "/api/agents/jobs/\(id)/apply", body: #"{"mode":"rebase"}"#)
        #expect(badMode.status == 400 && badMode.json["field"] as? String == "mode")
        #expect(try gateway.request("POST", "/api/agents/jobs/\(id)/apply", body: #"{"force":true}"#).json["code"] as? String == "unknown_field")
        #expect(try gateway.request("POST", "/api/agents/jobs/\(id)/apply", body: "[1]").status == 400)
        let wrongMethod = try gateway.request("GET", "/api/agents/jobs/\(id)/apply")
        #expect(wrongMethod.status == 405 && wrongMethod.header("Allow") == "POST")
        #expect(try gateway.request("DELETE", "/api/agents/jobs/\(id)/diff").status == 405)

        // Unreviewed work is not deleted; discarded, the job may go.
        let delete = try gateway.request("POST", "/api/agents/jobs/\(id)/delete")
        #expect(delete.status == 409 && delete.json["code"] as? String == "unreviewed_work")
        let conflictRepo = repository
        conflictRepo.write(["b.txt": "the user's own b\n"])
        let inTheWay = try gateway.request("POST", "/api/agents/jobs/\(id)/apply", body: #"{"mode":"merge"}"#)
        #expect(inTheWay.status == 409 && inTheWay.json["code"] as? String == "apply_conflict")
        #expect(inTheWay.json["conflicts"] as? [String] == ["b.txt"])
        #expect(conflictRepo.read("b.txt") == "the user's own b\n" && conflictRepo.read("a.txt") == "one\n")
        let discarded = try gateway.request("POST", "/api/agents/jobs/\(id)/discard")
        #expect(discarded.status == 200 && ((discarded.json["job"] as? [String: Any])?["worktree"] as? [String: Any])?["state"] as? String == "discarded")
        #expect(try gateway.request("POST", "/api/agents/jobs/\(id)/apply").json["code"] as? String == "no_worktree")
        #expect(try gateway.request("POST", "/api/agents/jobs/\(id)/delete").status == 200)

        // What is not a worktree job, or no job at all.
        let plain = try launch(gateway, #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"true"}}"#)
        _ = try waitFor(gateway, plain, status: "done")
        let noDiff = try gateway.request("GET", "/api/agents/jobs/\(plain)/diff")
        #expect(noDiff.status == 409 && noDiff.json["code"] as? String == "no_worktree")
        #expect(try gateway.request("POST", "/api/agents/jobs/\(plain)/discard").json["code"] as? String == "no_worktree")
        #expect(try gateway.request("GET", "/api/agents/jobs/ffffffffffffffff/diff").status == 404)
        #expect(try gateway.request("POST", "/api/agents/jobs/ffffffffffffffff/apply").status == 404)
        let unknown = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","worktreeOf":"ffffffffffffffff"}"#)
        #expect(unknown.status == 404 && unknown.json["field"] as? String == "worktreeOf")
        let noWorktree = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","worktreeOf":"\#(plain)"}"#)
        #expect(noWorktree.status == 409 && noWorktree.json["code"] as? String == "no_worktree")
        let outside = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","cwd":"/","isolation":"worktree"}"#)
        #expect(outside.status == 400 && outside.json["code"] as? String == "not_a_repository" && outside.json["field"] as? String == "cwd")
        #expect(try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","isolation":"sandbox"}"#).json["field"] as? String == "isolation")
    }
}
