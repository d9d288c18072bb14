import AgentCore
import ArgumentParser
import Foundation

/// `serve`'s admission control: how many jobs run at once, and how many may wait.
struct AdmissionOptions: ParsableArguments {
    @Option(help: "Jobs that may run at once; a launch past it waits, queued (default: twice the cores, at least 4; 0: no cap).")
    var maxRunning: Int?

    @Option(
        name: .customLong("max-running-per-provider"), parsing: .singleValue,
        help: "PROVIDER=N: jobs of that provider that may run at once (repeatable), e.g. claude=2.")
    var maxRunningPerProvider: [String] = []

    @Option(help: "Jobs that may run at once in one workspace (the --workspace their cwd is in).")
    var maxRunningPerWorkspace: Int?

    @Option(help: "Jobs that may run at once in one project (a launch's \"project\").")
    var maxRunningPerProject: Int?

    @Option(
        name: .customLong("max-running-in-project"), parsing: .singleValue,
        help: "PROJECT=N: jobs that may run at once in that project, instead of --max-running-per-project (repeatable).")
    var maxRunningInProject: [String] = []

    @Option(help: "Jobs that may wait in the queue; launches past it are refused (503 queue_full).")
    var maxQueued = 1_000

    @Option(help: "The largest priority a launch may ask for, either way (higher starts first; default priority 0).")
    var maxPriority = 10

    /// Twice the cores, at least 4: agents mostly wait on their model, but the builds and
    /// tests they run take cores.
    static var defaultMaxRunning: Int { max(4, 2 * ProcessInfo.processInfo.activeProcessorCount) }

    func limits() throws -> AdmissionQueue.Limits {
        var limits = AdmissionQueue.Limits()
        let running = maxRunning ?? Self.defaultMaxRunning
        guard running >= 0 else { throw ValidationError("--max-running must be 0 (no cap) or more") }
        limits.maxRunning = running == 0 ? nil : running
        limits.maxPerProvider = try Self.pairs(maxRunningPerProvider, option: "--max-running-per-provider") { name in
            AgentProvider.named(name) != nil ? nil : "no provider '\(name)' (\(AgentProvider.all.map(\.id).joined(separator: ", ")))"
        }
        limits.maxPerNamedProject = try Self.pairs(maxRunningInProject, option: "--max-running-in-project") { name in
            LaunchRequest.isProjectName(name) ? nil : "a project name matches \(LaunchRequest.projectPattern)"
        }
        for (option, value) in [("--max-running-per-workspace", maxRunningPerWorkspace), ("--max-running-per-project", maxRunningPerProject)] {
            if let value, value < 1 { throw ValidationError("\(option) must be 1 or more") }
        }
        limits.maxPerWorkspace = maxRunningPerWorkspace
        limits.maxPerProject = maxRunningPerProject
        guard (0...1_000_000).contains(maxQueued) else { throw ValidationError("--max-queued must be 0…1000000") }
        limits.maxQueued = maxQueued
        guard (0...LaunchRequest.maxPriority).contains(maxPriority) else {
            throw ValidationError("--max-priority must be 0…\(LaunchRequest.maxPriority)")
        }
        return limits
    }

    /// `NAME=N` values, each name checked by `problem` (nil: fine).
    private static func pairs(_ values: [String], option: String, problem: (String) -> String?) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for value in values {
            let parts = value.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let count = Int(parts[1]), count >= 1 else {
                throw ValidationError("\(option) \(value): NAME=N with N 1 or more")
            }
            if let problem = problem(parts[0]) { throw ValidationError("\(option) \(value): \(problem)") }
            result[parts[0]] = count
        }
        return result
    }
}
