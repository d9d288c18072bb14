import EventLoop
import Foundation
import Glibc
import TestSupport

@testable import AgentCore

/// A real job engine over a temporary data directory, with fake agents on its PATH.
final class EngineHarness {
    let agents: FakeAgents
    let data: TemporaryDirectory
    let scratch = TemporaryDirectory("agentgate-scratch")
    let loop: EventLoop
    let store: JobStore
    let manager: JobManager
    var events: [JobEvent] = []
    var encoded: [String: [[UInt8]]] = [:]

    /// - Parameters: records, events: stores of the test's own (default: SQLite and files in `data`).
    init(
        agents: FakeAgents = FakeAgents(), data: TemporaryDirectory = TemporaryDirectory("agentgate-data"), records: (any JobRecords)? = nil, events: (any JobEventStore)? = nil,
        configure: (inout JobManager.Configuration) -> Void = { _ in }, runner: ((EventLoop, _ dataPath: String) -> any JobRunner)? = nil
    ) throws {
        self.agents = agents
        self.data = data
        loop = try EventLoop()
        store = try JobStore(dataDirectory: data.path, records: records, events: events)
        var detectorConfiguration = AgentDetector.Configuration(
            path: agents.searchPath, environment: ["PATH=\(agents.searchPath)"])
        var configuration = JobManager.Configuration()
        configuration.baseEnvironment = ["PATH=\(agents.searchPath)", "HOME=\(scratch.path)"]
        configuration.killGraceMilliseconds = 300
        configuration.minFreeBytes = 0
        // The fakes read their script from the request's env.
        configuration.policy.environment = EnvironmentPolicy(allowed: ["FAKE_*", "EXTRA"])
        configure(&configuration)
        detectorConfiguration.allowCustomCommands = configuration.policy.allowCustomCommands
        manager = JobManager(
            loop: loop, store: store, detector: AgentDetector(configuration: detectorConfiguration),
            configuration: configuration, runner: runner?(loop, data.path))
        manager.addObserver { [unowned self] event, bytes in
            self.events.append(event)
            self.encoded[event.jobId, default: []].append(bytes)
        }
    }

    func events(of id: String) -> [JobEvent] { events.filter { $0.jobId == id } }

    func logLines(of id: String) -> [LogLine] {
        events(of: id).compactMap { if case .log(let line) = $0.payload { line } else { nil } }
    }

    func isCompleted(_ id: String) -> Bool {
        events(of: id).contains { if case .completed = $0.payload { true } else { false } }
    }

    /// Runs the loop until the job completes (or `timeout`), returns the final job.
    @discardableResult
    func waitForCompletion(_ id: String, timeoutMilliseconds: Int = 20_000) -> Job? {
        loop.run(untilMilliseconds: timeoutMilliseconds) { self.isCompleted(id) }
        return isCompleted(id) ? manager.job(id) : nil
    }

    func launch(_ provider: String = "claude", script: String, prompt: String = "hi", env: [String: String] = [:], cwd: String? = nil) throws -> Job {
        var environment = env
        environment["FAKE_SCRIPT"] = script
        return try manager.launch(LaunchRequest(provider: provider, prompt: prompt, cwd: cwd, env: environment))
    }

    /// Runs the loop for a while (to let a process start, write a pid file, …).
    func spin(milliseconds: Int) {
        loop.run(untilMilliseconds: milliseconds) { false }
    }

    /// Runs the loop until `condition` holds, checking it at least every 10 ms (it may
    /// watch something the loop has no fd for, like a file appearing).
    func spin(until condition: () -> Bool, milliseconds: Int = 10_000) -> Bool {
        let deadline = MonotonicClock.nanoseconds() + UInt64(milliseconds) * 1_000_000
        while !condition() {
            if MonotonicClock.nanoseconds() >= deadline { return false }
            loop.runOnce(timeoutMilliseconds: 10)
        }
        return true
    }
}

/// True while a process with this pid exists and is not a zombie.
func processIsRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// True while /proc has an entry for `pid` at all (zombies included).
func processEntryExists(_ pid: Int32) -> Bool {
    FileManager.default.fileExists(atPath: "/proc/\(pid)")
}

func readPid(_ path: String) -> Int32? {
    (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}
