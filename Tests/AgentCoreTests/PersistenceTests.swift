import EventLoop
import Foundation
import Glibc
import TestSupport
import Testing

@testable import AgentCore

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct PersistenceTests {
    /// A second engine over the same data directory: what a restarted server sees.
    private func restarted(_ harness: EngineHarness) throws -> (JobManager, EventLoop) {
        let loop = try EventLoop()
        let store = try JobStore(dataDirectory: harness.data.path)
        let detector = AgentDetector(configuration: .init(path: harness.agents.searchPath, environment: []))
        var configuration = JobManager.Configuration()
        configuration.killGraceMilliseconds = 300
        let manager = JobManager(loop: loop, store: store, detector: detector, configuration: configuration)
        return (manager, loop)
    }

    @Test func finishedJobsAndTheirEventsSurviveARestart() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: FakeAgents.replay("claude-stream-json-write-file.jsonl"))
        let done = try #require(harness.waitForCompletion(job.id))

        let (manager, _) = try restarted(harness)
        #expect(try manager.recover().isEmpty)
        #expect(manager.job(job.id) == done)
        let replayed = manager.events(for: job.id)
        #expect(replayed == harness.events(of: job.id))
        #expect(replayed.map { $0.encoded() } == harness.encoded[job.id])
        // Replay from any seq.
        #expect(manager.events(for: job.id, since: 5).first?.seq == 6)
        #expect(manager.events(for: job.id, since: 5, limit: 2).map(\.seq) == [6, 7])
        #expect(manager.events(for: job.id, since: done.lastSeq).isEmpty)
    }

    @Test func aJobRunningAtRestartBecomesInterruptedAndItsProcessGroupIsTerminated() throws {
        let harness = try EngineHarness()
        let pidFile = harness.scratch.file("child")
        let job = try harness.launch(script: "sleep 300 & echo $! > '\(pidFile)'; echo working; wait")
        #expect(harness.spin(until: { readPid(pidFile) != nil && harness.logLines(of: job.id).count == 1 }))
        harness.manager.flushLogs()
        let child = try #require(readPid(pidFile))
        let seenBefore = harness.events(of: job.id)

        // The old server is gone (its loop never runs again); a new one starts.
        let (manager, _) = try restarted(harness)
        let interrupted = try manager.recover()
        #expect(interrupted.map(\.id) == [job.id])
        #expect(manager.job(job.id)?.status == .interrupted)
        // SIGTERM went out during recover(); the start did not wait for the group to go.
        for _ in 0..<300 where processIsRunning(child) || processIsRunning(job.pid!) { usleep(10_000) }
        #expect(!processIsRunning(child))
        #expect(!processIsRunning(job.pid!))

        let replayed = manager.events(for: job.id)
        #expect(Array(replayed.prefix(seenBefore.count)) == seenBefore)
        #expect(replayed.map(\.seq) == Array(1...replayed.count))
        guard case .completed(let final)? = replayed.last?.payload else {
            Issue.record("no job:completed after restart")
            return
        }
        #expect(final.status == .interrupted)
        harness.waitForCompletion(job.id, timeoutMilliseconds: 2_000)  // reap in the old engine
    }

    @Test func aReusedPidIsNeverSignalled() throws {
        let harness = try EngineHarness()
        // An unrelated process that happens to have the recorded pid, but not its start time.
        let bystander = try SupervisedProcess(
            loop: harness.loop, spec: .init(executable: "/bin/sleep", arguments: ["sleep", "300"], environment: []))
        try bystander.start()
        defer { bystander.killNow() }
        var job = Job(id: "0000000000000001", provider: "claude", prompt: "x", createdAt: 1)
        job.status = .running
        job.pid = bystander.pid
        job.pgid = bystander.pid
        job.processStartTime = (bystander.identity.startTime ?? 0) + 12_345
        try harness.store.save(job)

        let (manager, _) = try restarted(harness)
        #expect(try manager.recover().map(\.id) == [job.id])
        #expect(processIsRunning(bystander.pid))
        #expect(manager.job(job.id)?.status == .interrupted)
    }

    @Test func aTornLastLineIsToleratedAndNotGluedToTheNextEvent() throws {
        let harness = try EngineHarness()
        var job = Job(id: "00000000000000aa", provider: "claude", prompt: "x", createdAt: 1)
        job.status = .running
        job.lastSeq = 2
        try harness.store.save(job)
        try harness.store.events.create(job: job.id)
        let log = EventLog(path: harness.store.jobDirectory(job.id) + "/events.ndjson")
        let first = JobEvent(jobId: job.id, seq: 1, time: 1, payload: .started(job)).encoded()
        let second = JobEvent(jobId: job.id, seq: 2, time: 2, payload: .log(LogLine(.stdout, .text, "hello"))).encoded()
        try log.append(first + [0x0A] + second + [0x0A] + Array(#"{"type":"job:log","job":"00000000000000aa","seq":3,"ti"#.utf8))
        log.close()

        #expect(harness.store.events(for: job.id).map(\.seq) == [1, 2])
        #expect(harness.store.lastSeq(for: job.id) == 2)
        let (manager, _) = try restarted(harness)
        try manager.recover()
        let events = manager.events(for: job.id)
        #expect(events.map(\.seq) == [1, 2, 3])
        #expect(events.last?.type == "job:completed")
    }

    @Test func unsafeJobIdsNeverBecomePaths() throws {
        let harness = try EngineHarness()
        #expect(!JobStore.isValidJobId("../../etc"))
        #expect(!JobStore.isValidJobId(""))
        #expect(harness.store.events(for: "../x").isEmpty)
    }

    @Test func dataFilesAreReadableByTheOwnerOnly() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: "echo hi")
        harness.waitForCompletion(job.id)
        for path in [harness.data.path, harness.data.file("agentgate.sqlite"), harness.store.jobDirectory(job.id) + "/events.ndjson"] {
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(info.st_mode & 0o077 == 0, "\(path) is group/world accessible")
        }
    }
}

/// One process owns a data directory: a second one learns who has it, and a lock dies with
/// its holder. Process-exclusive: a child spawned by another test at the moment a lock is
/// taken holds a copy of its descriptor until it execs, and with it the lock.
@Suite(.processExclusive)
struct DataDirectoryLockTests {
    @Test func aSecondOwnerIsToldWhoHoldsTheDirectory() throws {
        let data = TemporaryDirectory("agentgate-lock")
        guard case .acquired(let first) = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "test one") else {
            Issue.record("the first lock was refused")
            return
        }
        first.describe("pid 1, agentgate serve on http://127.0.0.1:7777")
        guard case .held(let holder) = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "test two") else {
            Issue.record("a second lock was granted")
            return
        }
        #expect(holder == "pid 1, agentgate serve on http://127.0.0.1:7777")
        withExtendedLifetime(first) {}
    }

    /// The lock is the directory's: deleting `<data>/lock` (it looks stale) lets no second
    /// owner in (attacker trial: a second server then killed the first one's jobs).
    @Test func deletingTheLockFileLetsNoSecondOwnerIn() throws {
        let data = TemporaryDirectory("agentgate-lock")
        guard case .acquired(let first) = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "first") else {
            Issue.record("the first lock was refused")
            return
        }
        #expect(unlink(data.file("lock")) == 0)
        guard case .held = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "second") else {
            Issue.record("a second owner got the directory after the lock file was deleted")
            return
        }
        withExtendedLifetime(first) {}
    }

    /// A lock whose named holder is gone (a child it forked holds it until it execs) is waited
    /// for a moment; one whose holder lives is refused at once.
    @Test func aLockHeldAfterItsHolderIsGoneIsWaitedFor() throws {
        let data = TemporaryDirectory("agentgate-lock")
        let gone = try ChildProcess("/bin/true", [], environment: [:], stdout: "/dev/null", stderr: "/dev/null")
        _ = gone.wait()
        // Held only through the box, so that the other thread's release is the last reference.
        let holder = UnsafeSendableBox<DataDirectoryLock?>(nil)
        func take(_ owner: String) throws -> DataDirectoryLock? {
            if case .acquired(let lock) = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: owner) { return lock }
            return nil
        }
        holder.value = try take("first")
        #expect(holder.value != nil)
        holder.value?.describe("pid \(getpid()), agentgate serve")
        let started = Date()
        guard case .held = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "second", waitingForAGoneHolder: 3_000) else {
            Issue.record("a second owner got a lock its live holder keeps")
            return
        }
        #expect(Date().timeIntervalSince(started) < 1)
        // Gone, or live and stopping: waited for.
        for said in ["pid \(gone.pid), agentgate serve", "pid \(getpid()), agentgate serve \(DataDirectoryLock.stoppingMark)"] {
            if holder.value == nil { holder.value = try take("first") }
            holder.value?.describe(said)
            let release = Thread {
                usleep(300_000)
                holder.value = nil
            }
            release.start()
            guard case .acquired = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "second", waitingForAGoneHolder: 3_000) else {
                Issue.record("a lock freed moments after its holder (\(said)) was refused")
                return
            }
        }
    }

    @Test func theLockIsFreeOnceItsHolderIsGone() throws {
        let data = TemporaryDirectory("agentgate-lock")
        do {
            let outcome = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "gone")
            guard case .acquired = outcome else { Issue.record("refused"); return }
        }
        // Other tests of this process spawn children at the same time: one forked while the
        // lock was open holds a copy of it until it execs (close-on-exec), so a moment's wait.
        let deadline = Date().addingTimeInterval(5)
        while true {
            if case .acquired = try DataDirectoryLock.acquire(dataDirectory: data.path, owner: "next") { return }
            guard Date() < deadline else { break }
            usleep(10_000)
        }
        Issue.record("the lock outlived its holder")
    }
}

/// The database is an index of the job directories: a lost or damaged one is made again.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct DatabaseRebuildTests {
    /// A data dir with a finished job and one that was running (its job directories, copied
    /// from a live engine's), and a database file that `damage` writes.
    private func dataDirectory(damaging damage: (String) throws -> Void) throws -> (TemporaryDirectory, EngineHarness, done: Job, running: Job) {
        let harness = try EngineHarness()
        let done = try #require(harness.waitForCompletion(try harness.launch(script: "echo kept").id))
        let running = try harness.launch(script: "sleep 30")
        harness.loop.run(untilMilliseconds: 2_000) { harness.manager.job(running.id)?.status == .running }
        harness.manager.flushLogs()
        let copy = TemporaryDirectory("agentgate-rebuild")
        try FileManager.default.copyItem(atPath: harness.data.file("jobs"), toPath: copy.file("jobs"))
        try damage(copy.file("agentgate.sqlite"))
        return (copy, harness, done, try #require(harness.manager.job(running.id)))
    }

    @Test func aZeroByteDatabaseIsRebuiltFromTheJobDirectoriesNotLeftEmpty() throws {
        let (data, harness, done, running) = try dataDirectory { path in
            #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        }
        defer { _ = try? harness.manager.kill(running.id) }
        let store = try JobStore(dataDirectory: data.path)
        #expect(store.startupNotes.count == 1)
        #expect(store.startupNotes.first?.contains(data.file("agentgate.sqlite")) == true)
        let jobs = try store.loadJobs()
        #expect(jobs.first { $0.id == done.id }?.json == done.json)
        #expect(jobs.first { $0.id == running.id }?.status == .running)
        #expect(jobs.first { $0.id == running.id }?.lastSeq == running.lastSeq)
    }

    @Test func aDamagedDatabaseIsPutAsideAndRebuilt() throws {
        let (data, harness, done, running) = try dataDirectory { path in
            let garbage = [UInt8](repeating: 0x5A, count: 8192)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(garbage)))
        }
        defer { _ = try? harness.manager.kill(running.id) }
        let store = try JobStore(dataDirectory: data.path)
        #expect(store.startupNotes.first?.contains("damaged") == true)
        let aside = try FileManager.default.contentsOfDirectory(atPath: data.path).filter { $0.hasPrefix("agentgate.sqlite.damaged-") }
        #expect(aside.count == 1)
        #expect(try store.loadJobs().map(\.id).sorted() == [done.id, running.id].sorted())
    }

    @Test func aFreshDataDirectoryIsNotRebuilt() throws {
        let harness = try EngineHarness()
        #expect(harness.store.startupNotes.isEmpty)
        #expect(try JobStore(dataDirectory: harness.data.path).startupNotes.isEmpty)
    }
}

/// A value handed to another thread by a test that orders the accesses itself.
final class UnsafeSendableBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
