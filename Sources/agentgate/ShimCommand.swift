import AgentCore
import ArgumentParser
import CSystemShims
import Foundation

/// `agentgate shim <job dir> -- <agent> <args…>`: the per-job supervisor of jobs that survive a
/// restart (issue 14; README "Jobs that survive a restart"). Its agent writes straight into
/// the job directory's `stdout` and `stderr` spool files; it records `agent.json`, passes a
/// SIGTERM on to the agent's group (SIGKILL after the grace period), clears what the agent
/// left in its group when it exits, and writes `exit.json` last. Meant to be started by the
/// server, so it is not listed in the help.
struct ShimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shim",
        abstract: "Supervise one job's agent with its output spooled to files (started by the server).",
        shouldDisplay: false)

    @Argument(help: "The job's directory: spools, agent.json and exit.json are written there.")
    var directory: String

    @Option(help: "The agent's working directory.")
    var cwd: String?

    @Option(name: .customLong("grace-ms"), help: "Time between SIGTERM and SIGKILL, in milliseconds.")
    var graceMilliseconds = 5_000

    @Option(help: "A file the server touches while it runs: with --orphan-timeout-ms, the agent is stopped once it is older than that.")
    var heartbeat: String?

    @Option(name: .customLong("orphan-timeout-ms"), help: "Stop the agent when --heartbeat has not been touched for this long (0: never).")
    var orphanTimeoutMilliseconds = 0

    @Option(name: .customLong("deadline-ms"), help: "Stop the agent at this time (milliseconds since the Unix epoch: the job's timeout), server or not.")
    var deadlineMilliseconds: Int64 = 0

    @Flag(help: "Feed the agent's stdin from the directory's input file as it grows, until input.closed exists (a conversation).")
    var input = false

    @Argument(parsing: .postTerminator, help: "The agent's executable (a path) and its arguments.")
    var command: [String] = []

    func validate() throws {
        guard let executable = command.first else { throw ValidationError("give the agent after --: agentgate shim DIR -- /path/to/agent ARGS…") }
        guard executable.contains("/") else { throw ValidationError("the agent must be a path (no PATH search): \(executable)") }
        guard (0...600_000).contains(graceMilliseconds) else { throw ValidationError("--grace-ms must be 0…600000") }
        guard orphanTimeoutMilliseconds >= 0 else { throw ValidationError("--orphan-timeout-ms must be 0 or more") }
        if orphanTimeoutMilliseconds > 0 && heartbeat == nil { throw ValidationError("--orphan-timeout-ms needs --heartbeat") }
        guard deadlineMilliseconds >= 0 else { throw ValidationError("--deadline-ms must be 0 (none) or a time") }
    }

    func run() throws {
        let error = SupervisedProcess.withCStrings(command) { argv in
            ag_supervise(
                directory, command[0], argv, environ, cwd, Int32(graceMilliseconds), heartbeat, Int64(orphanTimeoutMilliseconds), deadlineMilliseconds, input ? 1 : 0)
        }
        guard error == 0 else {
            FileHandle.standardError.write(Data("agentgate shim: \(directory): \(String(cString: strerror(error)))\n".utf8))
            throw ExitCode(1)
        }
    }
}
