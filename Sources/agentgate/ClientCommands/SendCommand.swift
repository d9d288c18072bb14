import AgentCore
import ArgumentParser
import Foundation

/// `agentgate send ID "…"`: a follow-up message to a running job's agent (a conversation).
struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send a follow-up message to a job's agent.",
        discussion: """
            The message reaches the agent while it works (Claude Code takes it after the turn it \
            is in) and shows in the job's log as your turn (› …). To a finished job, the agent's \
            session is resumed (claude --resume, codex exec resume, …) as the job's next run: \
            same job, same directory or worktree, its log going on. Give - to read the message \
            from stdin.

            Exit status: 0 sent, 2 bad message, 5 no such job, 7 the job takes no messages now \
            (its agent takes none while it runs, it is queued or ending, or a finished job cannot \
            be continued: no session to resume, its worktree discarded), 8 the server runs as many \
            jobs as it may (send it again later).
            """)

    @Argument(help: "The job id.")
    var id: String

    @Argument(help: "The message (- reads it from stdin).")
    var text: String

    @OptionGroup var client: ClientOptions

    func validate() throws {
        try validateJobID(id)
    }

    func run() throws {
        let message = text == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : text
        try runClient { () throws(ClientFailure) -> Int32 in
            let reply = try client.api().call("POST", "/api/agents/jobs/\(id)/messages", body: .object(["text": .string(message)]))
            let line = reply["seq"]?.intValue ?? 0
            if reply["resumed"]?.boolValue == true {
                print("sent to \(id): it had finished, so its agent's session resumes as the job's next run (log line \(line))")
            } else {
                print("sent to \(id) (log line \(line))")
            }
            return 0
        }
    }
}
