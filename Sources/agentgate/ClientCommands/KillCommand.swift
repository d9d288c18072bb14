import ArgumentParser

/// `agentgate kill`: stop one job or all of them.
struct KillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill", abstract: "Kill a job (SIGTERM to its group, SIGKILL after the grace period), or --all.",
        discussion: "Exit status: 0 asked to stop, 5 no such job, 7 already finished.")

    @Argument(help: "The job id.")
    var id: String?

    @Flag(help: "Kill every running job.")
    var all = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard (id != nil) != all else { throw ValidationError("name one job id, or --all") }
        if let id { try validateJobID(id) }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            if all {
                let reply = try api.call("DELETE", "/api/agents/jobs")
                print("killed \(reply["killed"]?.intValue ?? 0) job(s)")
            } else if let id {
                _ = try api.call("DELETE", "/api/agents/jobs/\(id)")
                print("killing \(id)")
            }
            return 0
        }
    }
}
