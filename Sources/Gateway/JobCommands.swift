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

    /// Sends a user's message to a running job's agent (`POST …/{id}/messages`, op `send`):
    /// the seq of the log line that shows it.
    func send(_ id: String, text: String) throws(APIError) -> Int {
        do throws(JobManager.MessageError) {
            return try manager.sendMessage(id, text: text)
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
