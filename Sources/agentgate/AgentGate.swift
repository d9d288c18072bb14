import AgentCore
import ArgumentParser
import CSystemShims
import EventLoop
import Foundation

@main
struct AgentGate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentgate",
        abstract: "Runs coding-agent CLIs as background jobs and streams what they do.",
        subcommands: [
            ServeCommand.self, RunCommand.self, JobsCommand.self, ShowCommand.self, TailCommand.self, KillCommand.self,
            CapabilitiesCommand.self, TokenCommand.self, Probe.self, Exec.self, EchoServerCommand.self,
        ]
    )
}
