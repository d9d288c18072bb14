import AgentCore
import ArgumentParser
import CSystemShims
import EventLoop
import Foundation

@main
struct AgentGate: ParsableCommand {
    /// The release, as `agentgate --version` prints it (and openapi.yaml's info.version).
    static let version = "0.2.0"

    static let configuration = CommandConfiguration(
        commandName: "agentgate",
        abstract: "Runs coding-agent CLIs as background jobs and streams what they do.",
        version: AgentGate.version,
        subcommands: [
            ServeCommand.self, RunCommand.self, SendCommand.self, AnswerCommand.self, JobsCommand.self, ShowCommand.self, TailCommand.self, KillCommand.self,
            DeleteCommand.self,
            DiffCommand.self, ApplyCommand.self, DiscardCommand.self,
            CapabilitiesCommand.self, TokenCommand.self, Probe.self, Exec.self, EchoServerCommand.self, ShimCommand.self, ACPClientCommand.self,
        ]
    )
}
