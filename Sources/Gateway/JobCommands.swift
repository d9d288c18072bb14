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

    /// Deletes a finished job with its events and files (`POST …/{id}/delete`, op `delete`).
    func delete(_ id: String) throws(APIError) {
        do throws(JobManager.DeleteError) {
            try manager.delete(id)
        } catch {
            throw APIError(error)
        }
    }

    /// Kills every running job; how many were asked to stop.
    func killAll() -> Int { manager.killAll() }
}
