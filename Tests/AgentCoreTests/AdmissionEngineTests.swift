import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import AgentCore

/// Admission control with real agents: the caps are checked against the processes the OS
/// runs, not against agentgate's own counters.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct AdmissionEngineTests {
    /// The ids of `jobs` whose agent (or a process it started) runs now, read from /proc:
    /// every job's processes carry AGENTGATE_JOB_ID in their environment.
    static func runningJobs(among jobs: Set<String>) -> Set<String> {
        var found = Set<String>()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return found }
        for entry in entries where entry.first?.isNumber == true {
            guard let pid = Int32(entry), processIsRunning(pid),
                let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ")
            else { continue }
            for variable in environ.split(separator: 0) where variable.starts(with: Array("AGENTGATE_JOB_ID=".utf8)) {
                let id = String(decoding: variable.dropFirst(17), as: UTF8.self)
                if jobs.contains(id) { found.insert(id) }
            }
        }
        return found
    }

    /// The files this process has open.
    static func openFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)
        }
    }

    static func harness(_ configure: @escaping (inout AdmissionQueue.Limits) -> Void) throws -> EngineHarness {
        try EngineHarness { configuration in
            configure(&configuration.admission)
        }
    }

    func positions(_ harness: EngineHarness, _ ids: [String]) -> [Int?] {
        ids.map { harness.manager.job($0)?.queuePosition }
    }

    @Test func fiftyLaunchesAgainstACapOfFourNeverRunMoreThanFourAndStartInOrder() throws {
        let harness = try Self.harness { $0.maxRunning = 4 }
        var ids: [String] = []
        for _ in 0..<50 { ids.append(try harness.launch(script: "sleep 0.15; echo done").id) }
        let manager = harness.manager
        #expect(ids.prefix(4).allSatisfy { manager.job($0)?.status == .running })
        #expect(ids.dropFirst(4).allSatisfy { manager.job($0)?.status == .queued })
        #expect(positions(harness, Array(ids.dropFirst(4))) == (1...46).map { $0 })
        #expect(manager.job(ids[10])?.queueReason == "4 of 4 jobs running")
        // A waiting job holds no descriptor: its log is opened for each line and closed.
        manager.flushLogs()
        let open = Self.openFiles().filter { path in ids.contains { path.contains("/jobs/\($0)/") } }
        #expect(open.count == 4 * 2, "the running jobs' logs and indexes only: \(open)")

        let all = Set(ids)
        var most = 0
        var cancelled: (id: String, position: Int)?
        var startOrder: [String] = []
        let finished = harness.spin(until: {
            most = max(most, Self.runningJobs(among: all).count)
            for id in ids where !startOrder.contains(id) && manager.job(id)?.admittedAt != nil && manager.job(id)?.status != .queued {
                startOrder.append(id)
            }
            // Once the queue has moved, one job in the middle of it is cancelled.
            if cancelled == nil, let position = manager.job(ids[30])?.queuePosition, position <= 20 {
                cancelled = (ids[30], position)
                try? manager.kill(ids[30])
            }
            // Whenever the engine is settled, the waiting jobs are numbered 1…n in launch order.
            if !manager.admissionScheduled {
                let waiting = ids.filter { manager.job($0)?.status == .queued }
                let shown = waiting.map { manager.job($0)?.queuePosition }
                if shown != (0..<waiting.count).map({ $0 + 1 }) {
                    Issue.record("positions \(shown) for \(waiting.count) waiting jobs")
                    return true
                }
            }
            return ids.allSatisfy { harness.isCompleted($0) }
        }, milliseconds: 120_000)
        #expect(finished)
        #expect(most <= 4, "\(most) jobs ran at once")
        #expect(most >= 3, "the cap was never used: \(most)")
        let (cancelledID, cancelledAt) = try #require(cancelled)
        #expect(startOrder == ids.filter { $0 != cancelledID }, "jobs started out of order")

        // The cancelled job never ran, says so, and those behind it moved up one.
        let gone = try #require(manager.job(cancelledID))
        #expect(gone.status == .killed && gone.pid == nil && gone.startedAt == nil)
        #expect(harness.logLines(of: cancelledID).contains { $0.text == "kill requested while queued (\(AdmissionQueue.ordinal(cancelledAt))): it never ran" })
        let behind = harness.events(of: ids[31]).compactMap { event -> Int? in
            if case .queue(let position, _) = event.payload { position } else { nil }
        }
        #expect(!behind.isEmpty && behind == behind.sorted(by: >) && Set(behind).count == behind.count, "\(behind)")
        for id in ids where id != cancelledID { #expect(manager.job(id)?.status == .done) }
        #expect(manager.queueWaits.count == 45)
    }

    @Test func aProviderCapHoldsBackOnlyItsProviderAndAProjectCapOnlyItsProject() throws {
        let harness = try Self.harness { limits in
            limits.maxPerProvider = ["claude": 1]
            limits.maxPerProject = 1
        }
        let manager = harness.manager
        func launch(_ provider: String, project: String? = nil) throws -> String {
            try manager.launch(
                LaunchRequest(provider: provider, prompt: "x", env: ["FAKE_SCRIPT": "sleep 0.4"], project: project)
            ).id
        }
        let claude1 = try launch("claude")
        let claude2 = try launch("claude")
        let codex = try launch("codex", project: "web")
        let codexSameProject = try launch("codex", project: "web")
        let codexOtherProject = try launch("codex", project: "api")
        #expect(manager.job(claude1)?.status == .running)
        #expect(manager.job(claude2)?.status == .queued)
        #expect(manager.job(claude2)?.queueReason == "1 of 1 claude jobs running")
        #expect(manager.job(codex)?.status == .running)
        #expect(manager.job(codexSameProject)?.status == .queued)
        #expect(manager.job(codexOtherProject)?.status == .running)
        harness.spin(milliseconds: 50)
        #expect(manager.job(codexSameProject)?.queueReason == "1 of 1 jobs running in project web")
        #expect(Self.runningJobs(among: [claude1, claude2, codex, codexSameProject, codexOtherProject]) == [claude1, codex, codexOtherProject])
        for id in [claude2, codexSameProject] { #expect(harness.waitForCompletion(id)?.status == .done) }
        // Each waited for the one holding its slot.
        #expect((manager.job(claude2)?.startedAt ?? 0) >= (manager.job(claude1)?.endedAt ?? .max))
        #expect((manager.job(codexSameProject)?.startedAt ?? 0) >= (manager.job(codex)?.endedAt ?? .max))

        // The list filters by project.
        var query = JobQuery()
        query.project = "web"
        #expect(Set(query.page(of: manager.jobsNewestFirst).jobs.map(\.id)) == [codex, codexSameProject])
    }

    @Test func aKeyRunsOneJobAtATimeOrRefusesNamingTheHolder() throws {
        let harness = try Self.harness { _ in }
        let manager = harness.manager
        func launch(_ key: String, _ onConflict: AdmissionQueue.ConflictPolicy? = nil, script: String = "sleep 0.3") throws -> String {
            try manager.launch(LaunchRequest(provider: "claude", prompt: "x", env: ["FAKE_SCRIPT": script], key: key, onConflict: onConflict)).id
        }
        let first = try launch("story-7")
        let second = try launch("story-7", .queue)
        let other = try launch("story-8")
        #expect(manager.job(second)?.status == .queued && manager.job(second)?.queueReason == "key story-7 is held by job \(first)")
        #expect(manager.job(other)?.status == .running)

        let jobsBefore = manager.jobs.count
        #expect {
            try manager.launch(LaunchRequest(provider: "claude", prompt: "x", env: ["FAKE_SCRIPT": "true"], key: "story-7", onConflict: .reject))
        } throws: { error in
            guard let error = error as? LaunchError else { return false }
            return error.code == .keyConflict && error.httpStatus == 409 && error.field == "key" && error.message.contains(first)
        }
        // Refused before anything was recorded.
        #expect(manager.jobs.count == jobsBefore)

        var overlap = false
        _ = harness.spin(until: {
            if Self.runningJobs(among: [first, second]).count > 1 { overlap = true }
            return harness.isCompleted(second)
        }, milliseconds: 20_000)
        #expect(!overlap, "two jobs with one key ran at once")
        #expect(manager.job(second)?.status == .done)
        // Free again: reject launches at once.
        let third = try launch("story-7", .reject, script: "true")
        #expect(manager.job(third)?.status == .running)
        harness.waitForCompletion(third)
    }

    @Test func aFullQueueRefusesWithoutRecordingAndPrioritiesAreBounded() throws {
        let harness = try EngineHarness { configuration in
            configuration.admission.maxRunning = 1
            configuration.admission.maxQueued = 2
            configuration.maxPriority = 5
        }
        let manager = harness.manager
        func launch(priority: Int? = nil) throws(LaunchError) -> String {
            try manager.launch(LaunchRequest(provider: "claude", prompt: "x", env: ["FAKE_SCRIPT": "sleep 5"], priority: priority)).id
        }
        let running = try launch()
        let low = try launch()
        let high = try launch(priority: 5)
        #expect(manager.job(high)?.queuePosition == 1 && manager.job(low)?.queuePosition == 1)
        harness.spin(milliseconds: 20)
        #expect(manager.job(low)?.queuePosition == 2)
        do {
            _ = try launch()
            Issue.record("a launch past --max-queued was taken")
        } catch {
            #expect(error.code == .queueFull && error.httpStatus == 503)
        }
        do {
            _ = try launch(priority: 6)
            Issue.record("a priority over the operator's maximum was taken")
        } catch {
            #expect(error.code == .invalidField && error.field == "priority")
        }
        #expect(manager.jobs.count == 3)
        #expect(manager.killAll() == 3)
        for id in [running, low, high] { #expect(harness.waitForCompletion(id)?.status == .killed) }
        #expect(manager.job(low)?.pid == nil)
    }

    /// The queue outlives the server: a new engine on the same data dir puts the queued jobs
    /// back in their order, and they run under the caps.
    @Test func queuedJobsWaitAgainAfterARestartInTheirOrder() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-admission-restart")
        var ids: [String] = []
        // How long each agent works: long before the restart, short after it.
        let duration = data.path + "/duration"
        data.write("duration", "30")
        let script = "sleep $(cat '\(duration)')"
        do {
            let loop = try EventLoop()
            let store = try JobStore(dataDirectory: data.path)
            let manager = JobManager(loop: loop, store: store, detector: Self.detector(agents), configuration: Self.configuration(agents))
            for index in 0..<4 {
                ids.append(try manager.launch(LaunchRequest(provider: "claude", prompt: "job \(index)", env: ["FAKE_SCRIPT": script])).id)
            }
            let last = try manager.launch(LaunchRequest(provider: "claude", prompt: "urgent", env: ["FAKE_SCRIPT": script], priority: 3))
            ids.append(last.id)
            #expect(manager.queuedCount == 4)
            loop.run(untilMilliseconds: 50) { false }
            manager.flushLogs()
            // The server stops: its running job is left to the next one (which interrupts it:
            // no supervisor here) and the queue stays on disk.
        }
        data.write("duration", "0.1")
        let loop = try EventLoop()
        let store = try JobStore(dataDirectory: data.path)
        // This server bounds time: the queued jobs wait under its budgets, and say so.
        var configuration = Self.configuration(agents)
        configuration.budgets.maxTimeoutSeconds = 600
        let manager = JobManager(loop: loop, store: store, detector: Self.detector(agents), configuration: configuration)
        _ = try manager.recover()
        #expect(manager.queuedCount == 4)
        #expect(manager.job(ids[1])?.budget == JobBudget(timeoutSeconds: 600))
        #expect(manager.admission.waiting.map(\.id) == [ids[4], ids[1], ids[2], ids[3]])
        var starts: [String] = []
        var most = 0
        let done = { (id: String) in manager.job(id)?.status.isFinished == true }
        let deadline = MonotonicClock.milliseconds() + 60_000
        while !ids.dropFirst().allSatisfy(done), MonotonicClock.milliseconds() < deadline {
            loop.runOnce(timeoutMilliseconds: 10)
            most = max(most, Self.runningJobs(among: Set(ids)).count)
            for id in ids.dropFirst() where !starts.contains(id) && manager.job(id)?.startedAt != nil { starts.append(id) }
        }
        #expect(manager.job(ids[0])?.status == .interrupted)
        #expect(starts == [ids[4], ids[1], ids[2], ids[3]])
        #expect(most <= 1)
        // Each ran the command its request made: the fake's script was the one launched.
        for id in ids.dropFirst() {
            #expect(manager.job(id)?.status == .done)
            let lines = manager.events(for: id).compactMap { if case .log(let line) = $0.payload { line.text } else { nil } }
            #expect(lines.contains("server restarted: still queued"), "\(lines)")
        }
    }

    /// A queued job's request is kept with the records, not in its directory, where an agent
    /// running as the same user could rewrite it (attacker trial: a rewritten prompt, provider
    /// or profile ran while the record showed the old one). A request file there is ignored;
    /// one left by an earlier build is run only while it still says what the record says.
    @Test func aQueuedRequestChangedOnDiskIsNotRun() throws {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-admission-tamper")
        let ran = data.path + "/ran"
        let prompts = data.path + "/prompts"
        var ids: [String] = []
        let changes: [(String, JSONValue)] = [("prompt", "delete everything"), ("provider", "codex"), ("priority", .int(5)), ("maxTurns", .int(3))]
        // Claude's stdin holds one stream-json message (it stays open for follow-ups).
        let script = "touch '\(ran)'; head -n 1 >> '\(prompts)'"
        var forged = ""
        do {
            let loop = try EventLoop()
            let store = try JobStore(dataDirectory: data.path)
            let manager = JobManager(loop: loop, store: store, detector: Self.detector(agents), configuration: Self.configuration(agents))
            _ = try manager.launch(LaunchRequest(provider: "claude", prompt: "holder", env: ["FAKE_SCRIPT": "sleep 30"]))
            for _ in 0...changes.count {
                ids.append(try manager.launch(LaunchRequest(provider: "claude", prompt: "summarise", env: ["FAKE_SCRIPT": script])).id)
            }
            manager.flushLogs()
            #expect(ids.allSatisfy { !FileManager.default.fileExists(atPath: data.path + "/jobs/\($0)/request.json") })
            // The last: a request file forged beside it, which nothing reads.
            forged = try #require(ids.last)
            let request = JSONValue.object([.init("provider", "claude"), .init("prompt", "delete everything"), .init("env", .object([.init("FAKE_SCRIPT", .string(script))]))])
            #expect(SmallJSONFile.write(request, to: data.path + "/jobs/\(forged)/request.json"))
            // The others as an earlier build kept them: in a file, rewritten while they waited.
            for (id, change) in zip(ids, changes) {
                let kept = try #require(store.loadRequest(id).flatMap { try? JSONParser.parse($0) })
                store.deleteRequest(id)
                #expect(SmallJSONFile.write(kept.setting(change.0, to: change.1), to: data.path + "/jobs/\(id)/request.json"))
            }
        }
        let loop = try EventLoop()
        let store = try JobStore(dataDirectory: data.path)
        let manager = JobManager(loop: loop, store: store, detector: Self.detector(agents), configuration: Self.configuration(agents))
        _ = try manager.recover()
        loop.run(untilMilliseconds: 1_000) { false }
        for (id, change) in zip(ids, changes) {
            let job = try #require(manager.job(id))
            #expect(job.status == .failed && job.queuePosition == nil)
            #expect(job.errorTail?.contains("no longer matches its record (\(change.0))") == true, "\(job.errorTail ?? "")")
        }
        #expect(manager.job(forged)?.status != .failed)
        loop.run(untilMilliseconds: 5_000) { (try? String(contentsOfFile: prompts, encoding: .utf8)) != nil }
        let ranPrompts = try? String(contentsOfFile: prompts, encoding: .utf8)
        #expect(ranPrompts?.split(separator: "\n").count == 1, "\(ranPrompts ?? "")")
        #expect(FakeAgents.claudeMessageText(ranPrompts) == "summarise", "only the forged job's own request ran")
    }

    static func detector(_ agents: FakeAgents) -> AgentDetector {
        AgentDetector(configuration: AgentDetector.Configuration(path: agents.searchPath, environment: ["PATH=\(agents.searchPath)"]))
    }

    static func configuration(_ agents: FakeAgents) -> JobManager.Configuration {
        var configuration = JobManager.Configuration()
        configuration.baseEnvironment = ["PATH=\(agents.searchPath)"]
        configuration.killGraceMilliseconds = 200
        configuration.minFreeBytes = 0
        configuration.policy.environment = EnvironmentPolicy(allowed: ["FAKE_*"])
        configuration.admission.maxRunning = 1
        return configuration
    }
}
