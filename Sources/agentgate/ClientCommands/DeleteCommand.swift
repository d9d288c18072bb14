import ArgumentParser

/// `agentgate delete`: remove finished jobs with their events and files.
struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete finished jobs: their records, events and files.",
        discussion: "Exit status: 0 all deleted, 5 no such job, 7 a job has not finished (kill it first); the first failure stops.")

    @Argument(help: "The job ids.")
    var ids: [String]

    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("name at least one job id") }
        for id in ids { try validateJobID(id) }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            for id in ids {
                _ = try api.call("POST", "/api/agents/jobs/\(id)/delete")
                print("deleted \(id)")
            }
            return 0
        }
    }
}
