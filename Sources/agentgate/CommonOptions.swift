import AgentCore
import ArgumentParser
import Foundation

/// Options that shape how jobs run, shared by every command that runs them.
struct EngineOptions: ParsableArguments {
    @Option(help: "Where jobs and their events are stored (default: ~/.agentgate).")
    var dataDir: String?

    @Flag(help: "Allow provider 'custom' (an explicit argv). Off by default: it runs any program.")
    var allowCustomCommands = false

    @Option(help: "Shell command run when a job ends; gets the job JSON on stdin, prints JSON for result.hook.")
    var onComplete: String?

    @Option(help: "Seconds the on-complete hook may run.")
    var hookTimeout: Int = 30

    @Option(help: "claude --permission-mode for every job (e.g. acceptEdits, bypassPermissions).")
    var claudePermissionMode: String?

    @Option(help: "codex --sandbox for every job (read-only, workspace-write, danger-full-access).")
    var codexSandbox: String?

    @Option(help: "Seconds between SIGTERM and SIGKILL when a job is killed.")
    var killGrace: Double = 5

    var resolvedDataDirectory: String { dataDir ?? defaultDataDirectory() }

    var detectorConfiguration: AgentDetector.Configuration {
        .fromProcessEnvironment(allowCustomCommands: allowCustomCommands)
    }

    func managerConfiguration(environment: [String]) -> JobManager.Configuration {
        var configuration = JobManager.Configuration()
        configuration.policy = LaunchPolicy(
            claudePermissionMode: claudePermissionMode, codexSandbox: codexSandbox,
            allowCustomCommands: allowCustomCommands)
        configuration.killGraceMilliseconds = Int(killGrace * 1000)
        configuration.baseEnvironment = environment
        configuration.useCgroups = ProcessInfo.processInfo.environment["AGENTGATE_NO_CGROUP"] != "1"
        if let onComplete {
            configuration.onComplete = ExternalHook.Configuration(command: onComplete, timeoutMilliseconds: hookTimeout * 1000)
        }
        return configuration
    }
}

/// `~/.agentgate`: where the server keeps jobs and its token unless told otherwise.
func defaultDataDirectory() -> String {
    (ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()) + "/.agentgate"
}

/// Prints one line to stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
