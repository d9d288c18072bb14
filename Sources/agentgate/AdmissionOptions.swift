import AgentCore
import ArgumentParser
import Foundation

/// `serve`'s admission control: how many jobs run at once, how many may wait, and what each
/// may spend.
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

    @Option(help: "Seconds a job may run (from its start) when its launch names no timeoutSeconds.")
    var defaultTimeout: Int?

    @Option(help: "The most seconds a launch may ask for (timeoutSeconds); also the timeout of jobs that name none when --default-timeout is not given.")
    var maxTimeout: Int?

    @Option(help: "Turns a job may take when its launch names no maxTurns (providers that report turns).")
    var defaultMaxTurns: Int?

    @Option(help: "The most turns a launch may ask for (maxTurns); also the limit of jobs that name none without --default-max-turns.")
    var maxTurnsLimit: Int?

    @Option(help: "US dollars a job may spend when its launch names no maxBudgetUsd (providers that report cost: claude, opencode).")
    var defaultBudgetUsd: Double?

    @Option(help: "The most dollars a launch may ask for (maxBudgetUsd); also the budget of jobs that name none without --default-budget-usd.")
    var maxBudgetUsd: Double?

    @Option(help: "A JSON file of named launch profiles (README \"Profiles\"); read at start and again on SIGHUP.")
    var profiles: String?

    /// The profiles file's profiles (none without --profiles); a file that does not read or
    /// check is an error naming it.
    func loadProfiles() throws -> [String: LaunchProfile] {
        guard let profiles else { return [:] }
        guard let data = FileManager.default.contents(atPath: profiles) else { throw ValidationError("--profiles \(profiles): cannot be read") }
        guard data.count <= 4 << 20 else { throw ValidationError("--profiles \(profiles): larger than 4 MiB") }
        let loaded: [String: LaunchProfile]
        do {
            loaded = try LaunchProfile.parse(Array(data))
        } catch {
            throw ValidationError("--profiles \(profiles): \(error.message)")
        }
        // Within this server's maxima too: a profile past one could never launch, and its
        // users could not ask for less (the profile's fields are fixed).
        let policy = try budgets()
        for (name, profile) in loaded.sorted(by: { $0.key < $1.key }) {
            do throws(LaunchError) {
                let made = try policy.apply(to: profile.apply(to: profile.sampleRequest))
                if let priority = made.priority, abs(priority) > maxPriority {
                    throw LaunchError(.invalidField, field: "priority", "priority must be from -\(maxPriority) to \(maxPriority) on this server (serve --max-priority)")
                }
            } catch {
                throw ValidationError("--profiles \(profiles): profile \(name): \(error.message)")
            }
        }
        return loaded
    }

    /// A default above its maximum would refuse every launch that leaves the field out.
    private static func checkDefault<Value: Comparable>(_ value: Value?, _ option: String, within limit: Value?, _ limitOption: String) throws {
        if let value, let limit, value > limit { throw ValidationError("\(option) is more than \(limitOption)") }
    }

    func budgets() throws -> BudgetPolicy {
        var policy = BudgetPolicy()
        for (option, value, limit) in [
            ("--default-timeout", defaultTimeout, LaunchRequest.maxTimeoutSeconds), ("--max-timeout", maxTimeout, LaunchRequest.maxTimeoutSeconds),
            ("--default-max-turns", defaultMaxTurns, 10_000), ("--max-turns-limit", maxTurnsLimit, 10_000),
        ] {
            if let value, !(1...limit).contains(value) { throw ValidationError("\(option) must be 1…\(limit)") }
        }
        for (option, value) in [("--default-budget-usd", defaultBudgetUsd), ("--max-budget-usd", maxBudgetUsd)] {
            if let value, !(value >= 0.01 && value <= 100_000) { throw ValidationError("\(option) must be 0.01…100000 dollars") }
        }
        try Self.checkDefault(defaultTimeout, "--default-timeout", within: maxTimeout, "--max-timeout")
        try Self.checkDefault(defaultMaxTurns, "--default-max-turns", within: maxTurnsLimit, "--max-turns-limit")
        try Self.checkDefault(defaultBudgetUsd, "--default-budget-usd", within: maxBudgetUsd, "--max-budget-usd")
        policy.defaultTimeoutSeconds = defaultTimeout
        policy.maxTimeoutSeconds = maxTimeout
        policy.defaultMaxTurns = defaultMaxTurns
        policy.maxMaxTurns = maxTurnsLimit
        policy.defaultBudgetUsd = defaultBudgetUsd
        policy.maxBudgetUsd = maxBudgetUsd
        return policy
    }

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
