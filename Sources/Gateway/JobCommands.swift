import AgentCore

/// What a client may ask of the job engine, shared by the REST routes and the WebSocket
/// ops: the same checks, the same answers, the same refusals.
struct JobCommands {
    let manager: JobManager

    /// Launches from the request's fields (`POST /api/agents/jobs`, op `launch`).
    func launch(_ fields: JSONValue) throws(APIError) -> Job {
        do throws(LaunchError) {
            return try manager.launch(LaunchRequest(json: fields))
        } catch {
            throw APIError(error)
        }
    }

    /// Kills a running job (`DELETE /api/agents/jobs/{id}`, op `kill`); its state after.
    func kill(_ id: String) throws(APIError) -> Job {
        do throws(JobManager.KillError) {
            try manager.kill(id)
        } catch {
            throw APIError(error)
        }
        guard let job = manager.job(id) else { throw .unknownJob(id) }
        return job
    }

    /// Sends a user's message to a job's agent (`POST …/{id}/messages`, op `send`): the seq of
    /// the log line that shows it; `resumed`: the job had finished, and its agent's session
    /// resumes as its next run.
    func send(_ id: String, text: String) throws(APIError) -> (seq: Int, resumed: Bool) {
        let resumed = manager.job(id)?.status.isFinished == true
        do throws(JobManager.MessageError) {
            return (try manager.sendMessage(id, text: text), resumed)
        } catch {
            throw APIError(error, job: id)
        }
    }

    /// Answers a job's open permission question (`POST …/{id}/permissions`, op `answer`).
    func answer(_ id: String, _ body: JSONValue) throws(APIError) {
        guard case .object(let members) = body else { throw APIError(400, "invalid_json", "send {\"request\": \"…\", \"optionId\": \"…\"}") }
        if let other = members.first(where: { !["request", "optionId", "op", "req", "job"].contains($0.key) }) {
            throw APIError(400, "unknown_field", "unknown field \(other.key); an answer has request and optionId", field: other.key)
        }
        guard let request = body["request"]?.stringValue else {
            throw APIError(400, "missing_field", "request is required: the question's request (from its job:permission)", field: "request")
        }
        guard request.utf8.count <= 256 else { throw APIError(400, "invalid_field", "request is at most 256 characters", field: "request") }
        if let option = body["optionId"], option.stringValue == nil, !option.isNull {
            throw APIError(400, "invalid_field", "optionId must be a string (or null to cancel the question)", field: "optionId")
        }
        do throws(JobManager.PermissionError) {
            try manager.answerPermission(id, request: request, optionId: body["optionId"]?.stringValue)
        } catch {
            throw APIError(error, job: id)
        }
    }

    /// The `text` of a message body (`{"text": "…"}`).
    static func messageText(_ body: JSONValue) throws(APIError) -> String {
        guard case .object(let members) = body else { throw APIError(400, "invalid_json", "send {\"text\": \"…\"}") }
        if let other = members.first(where: { $0.key != "text" && $0.key != "op" && $0.key != "req" && $0.key != "job" }) {
            throw APIError(400, "unknown_field", "unknown field \(other.key); a message has text", field: other.key)
        }
        guard let text = body["text"]?.stringValue else { throw APIError(400, "missing_field", "text is required (a string)", field: "text") }
        return text
    }

    /// Deletes a finished job with its events and files (`POST …/{id}/delete`, op `delete`).
    func delete(_ id: String) throws(APIError) {
        do throws(JobManager.DeleteError) {
            try manager.delete(id)
        } catch {
            throw APIError(error)
        }
    }

    /// Kills every running job (that `allowed` lets go); how many were asked to stop.
    func killAll(allowed: (String) -> Bool = { _ in true }) -> Int { manager.killAll(allowed: allowed) }
}
