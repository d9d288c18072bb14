import AgentCore
import Dispatch
import EventLoop
import Foundation
import HTTPCore

/// The routes of a job's change: `GET …/{id}/diff`, `POST …/{id}/apply`, `POST …/{id}/discard`.
extension Gateway {
    /// The unified diff (`text/x-diff`, the default) or `?format=json`: the per-file summary
    /// with each file's piece of the diff. Read off the loop: the diff may be megabytes.
    func diff(_ request: HTTPRequest, id: String) -> HTTPServer.Response {
        guard let job = manager.job(id) else { return APIError.unknownJob(id).response }
        guard let worktree = job.worktree else {
            return APIError(409, "no_worktree", "job \(id) did not run in a worktree, so it has no diff").response
        }
        guard worktree.headCommit != nil, let summary = manager.diff(of: id) else {
            return APIError(409, "diff_not_ready", "job \(id)'s change is recorded when its agent exits (it is \(job.status.rawValue))").response
        }
        let format = (Self.query(request.head.target) ?? [:])["format"] ?? "patch"
        guard format == "patch" || format == "json" else {
            return APIError.invalidQuery("format must be patch or json").response
        }
        let path = manager.diffPath(id)
        let listPath = manager.diffListPath(id)
        let loop = manager.loop
        return .later { complete in
            let bound = LoopBound(complete)
            DispatchQueue.global(qos: .utility).async {
                let patch = (try? Data(contentsOf: URL(fileURLWithPath: path))).map { [UInt8]($0) } ?? []
                // The whole file list (the job's result holds the first files only).
                let whole = (try? Data(contentsOf: URL(fileURLWithPath: listPath))).flatMap { try? JSONParser.parse([UInt8]($0)) }
                    .flatMap(WorktreeDiff.init(json:)) ?? summary
                let body = format == "patch" ? patch : JSONWriter.serialize(Self.perFileJSON(whole, patch: patch))
                loop.execute {
                    var headers = HTTPHeaders()
                    headers.add("Cache-Control", "no-store")
                    headers.add("X-Diff-Truncated", summary.truncated ? "true" : "false")
                    if format == "patch" {
                        headers.add("Content-Type", "text/x-diff; charset=utf-8")
                        bound.value(HTTPServer.Response(status: 200, headers: headers, body: body))
                    } else {
                        bound.value(.json(200, body, headers: headers))
                    }
                }
            }
        }
    }

    /// The summary's members with `patch` added to each file: the file's piece of the diff,
    /// matched in order (git lists both the same way); null past the cap.
    static func perFileJSON(_ summary: WorktreeDiff, patch: [UInt8]) -> JSONValue {
        let pieces = WorktreeDiff.perFile(patch)
        let files: [JSONValue] = summary.files.enumerated().map { index, file in
            var members: [JSONValue.Member] = []
            if case .object(let fields) = file.json { members = fields }
            let piece = index < pieces.count ? JSONValue.string(String(decoding: pieces[index], as: UTF8.self)) : .null
            members.append(.init("patch", piece))
            return .object(members)
        }
        guard case .object(var members) = summary.json else { return summary.json }
        members.removeAll { $0.key == "files" }
        members.append(.init("files", .array(files)))
        return .object(members)
    }

    /// `{"mode":"merge"|"patch"}` (merge when absent): the job's change into its source checkout.
    func apply(_ request: HTTPRequest, id: String) -> HTTPServer.Response {
        var mode = WorktreeOperations.ApplyMode.merge
        if !request.body.isEmpty {
            guard let body = try? JSONParser.parse(request.body), case .object(let members) = body else {
                return APIError.invalidJSON("expected an object such as {\"mode\":\"merge\"}").response
            }
            for member in members where member.key != "mode" {
                return APIError(400, "unknown_field", "unknown field '\(String(member.key.prefix(64)))'; known fields: mode", field: member.key).response
            }
            if let value = body["mode"], !value.isNull {
                guard let text = value.stringValue, let chosen = WorktreeOperations.ApplyMode(rawValue: text) else {
                    return APIError(400, "invalid_field", "mode must be merge or patch", field: "mode").response
                }
                mode = chosen
            }
        }
        let manager = self.manager
        return .later { complete in
            manager.applyChange(of: id, mode: mode) { result in
                // What was applied: the newest change of the worktree (a follow-up's, in a chain).
                let applied = (try? result.get()).flatMap { _ in manager.newestChange(of: id) }
                complete(Self.reviewResponse(result, applied: applied))
            }
        }
    }

    /// Removes the job's worktree and branch.
    func discard(_ id: String) -> HTTPServer.Response {
        let manager = self.manager
        return .later { complete in
            manager.discardChange(of: id) { result in complete(Self.reviewResponse(result)) }
        }
    }

    static func reviewResponse(_ result: Result<Job, JobManager.ReviewError>, applied: Worktree? = nil) -> HTTPServer.Response {
        switch result {
        case .success(let job):
            var members: [JSONValue.Member] = [.init("job", job.json)]
            if let applied { members.append(.init("applied", applied.json)) }
            return .json(200, JSONWriter.serialize(.object(members)))
        case .failure(let error): return APIError(error).response
        }
    }
}
