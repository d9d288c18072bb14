import AgentCore
import ArgumentParser

/// `agentgate answer ID REQUEST OPTION`: answers a job's permission question (an ACP agent
/// under `serve --agent-permissions ask`); the log says which request and options.
struct AnswerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "answer", abstract: "Answer a job's permission question with one of its options (or --cancel).",
        discussion: """
            A job whose agent asks for permission (serve --agent-permissions ask) shows the \
            question in its log with the command to answer it. Past the server's \
            --permission-timeout its --permission-default answers instead.

            Exit status: 0 answered, 2 no such option, 5 no such job, 7 no such open question \
            (answered, expired, never asked) or the job is not running.
            """)

    @Argument(help: "The job id.")
    var id: String

    @Argument(help: "The question's request id, as the log shows it.")
    var request: String

    @Argument(help: "The option to answer with (its optionId).")
    var option: String?

    @Flag(help: "Cancel the question instead of choosing an option.")
    var cancel = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        try validateJobID(id)
        guard (option != nil) != cancel else { throw ValidationError("give an option, or --cancel") }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            var body: [JSONValue.Member] = [.init("request", .string(request))]
            body.append(.init("optionId", option.map(JSONValue.string) ?? .null))
            _ = try client.api().call("POST", "/api/agents/jobs/\(id)/permissions", body: .object(body))
            print(cancel ? "cancelled question \(request) of \(id)" : "answered question \(request) of \(id): \(option ?? "")")
            return 0
        }
    }
}
