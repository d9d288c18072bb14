import ArgumentParser

/// Launch options that `run` (through a server) and `exec` (in this process) both take.
struct AgentSessionOptions: ParsableArguments {
    @Option(help: "Stop after this many agent turns (claude and goose take it as a flag; agentgate counts codex and opencode turns).")
    var maxTurns: Int?

    @Option(name: [.customLong("resume"), .customLong("session")], help: "Continue this agent session (claude, codex, opencode, goose).")
    var resume: String?

    @Option(parsing: .singleValue, help: "KEY=VALUE for the agent's environment (repeatable; only keys the operator allows with --pass-env).")
    var env: [String] = []

    func validate() throws {
        for entry in env where !entry.contains("=") {
            throw ValidationError("--env \(entry): write KEY=VALUE")
        }
    }

    /// The `--env` entries split at their first `=`, in the order given.
    var environment: [(key: String, value: String)] {
        env.map { entry in
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
    }
}
