import EventLoop
import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import AgentCore

/// What a job's processes can inherit, what can outlive them, and what an agent can plant in
/// its job directory: real children, real cgroups, real FIFOs and symlinks.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct ProcessHygieneTests {
    // MARK: descriptors

    @Test(arguments: [true, false])
    func anInheritedDescriptorIsNotVisibleInTheAgent(useCgroups: Bool) throws {
        // What the server itself may have inherited without FD_CLOEXEC: F_DUPFD does not
        // set it, and a high number cannot be mistaken for ls's own directory fd.
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let leaked = fcntl(devNull, F_DUPFD, 100)
        close(devNull)
        defer { close(leaked) }
        #expect(leaked >= 100)
        #expect(fcntl(leaked, F_GETFD) & FD_CLOEXEC == 0)

        let harness = try EngineHarness { $0.useCgroups = useCgroups }
        let job = try harness.launch(script: "ls /proc/self/fd")
        #expect(harness.waitForCompletion(job.id)?.status == .done)
        let listed = harness.logLines(of: job.id).filter { $0.stream == .stdout }.map(\.text)
        // 0-2, and the directory ls itself opened to list.
        #expect(listed == ["0", "1", "2", "3"], "the agent saw descriptors \(listed)")
    }

    // MARK: setsid grandchildren

    /// A grandchild that left the job's session, writing its pid to `pidFile` first.
    private static func escapee(_ pidFile: String) -> String {
        "setsid sh -c 'echo $$ > \"\(pidFile)\"; exec sleep 300' &"
    }

    @Test(arguments: [true, false])
    func aSetsidGrandchildDiesWhenItsJobEnds(useCgroups: Bool) throws {
        let harness = try EngineHarness { $0.useCgroups = useCgroups }
        let pidFile = harness.scratch.file("escapee")
        let job = try harness.launch(script: Self.escapee(pidFile) + " echo started; sleep 0.2")
        let expectedMode: JobContainment.Mode = useCgroups && CgroupTree.shared != nil ? .cgroup : .subreaper
        #expect(harness.manager.containment.mode == expectedMode)
        #expect(harness.spin(until: { readPid(pidFile) != nil }))
        let escapee = try #require(readPid(pidFile))
        // It really left: its own session, out of reach of kill(-pgid).
        #expect(sessionOf(escapee) == escapee)
        #expect(sessionOf(escapee) != job.pid)
        if expectedMode == .cgroup {
            let cgroup = try String(contentsOfFile: "/proc/\(escapee)/cgroup", encoding: .utf8)
            #expect(cgroup.contains("/job-\(job.id)\n"), "\(cgroup)")
        }

        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(harness.spin(until: { !processIsRunning(escapee) }, milliseconds: 2_000), "setsid grandchild survived its job")
        if expectedMode == .subreaper {
            // Re-parented to us and killed: reaped too, not left a zombie.
            #expect(harness.spin(until: { !processEntryExists(escapee) }, milliseconds: 3_000))
        }
        if expectedMode == .cgroup, let root = CgroupTree.shared?.root {
            // The job's group is removed once empty.
            #expect(harness.spin(until: { !FileManager.default.fileExists(atPath: root + "/job-\(job.id)") }, milliseconds: 2_000))
        }
    }

    @Test(arguments: [true, false])
    func aSetsidGrandchildDiesWhenItsJobIsKilled(useCgroups: Bool) throws {
        let harness = try EngineHarness { $0.useCgroups = useCgroups }
        let pidFile = harness.scratch.file("escapee")
        let job = try harness.launch(script: Self.escapee(pidFile) + " echo started; exec sleep 300")
        #expect(harness.spin(until: { readPid(pidFile) != nil }))
        let escapee = try #require(readPid(pidFile))
        #expect(sessionOf(escapee) == escapee)

        try harness.manager.kill(job.id)
        #expect(harness.waitForCompletion(job.id)?.status == .killed)
        #expect(harness.spin(until: { !processIsRunning(escapee) }, milliseconds: 2_000), "setsid grandchild survived its killed job")
    }

    // MARK: orphans of a crashed server

    @Test func orphansOfACrashedServerAreTerminatedWithoutHoldingUpTheStart() throws {
        let harness = try EngineHarness()
        // Four groups whose leaders (and their sleeps) ignore SIGTERM: each needs the full grace.
        let orphans = try (0..<4).map { _ in
            let process = try SupervisedProcess(
                loop: harness.loop,
                spec: .init(executable: "/bin/sh", arguments: ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"], environment: []))
            try process.start()
            return process
        }
        for (index, process) in orphans.enumerated() {
            var job = Job(id: String(format: "%016x", 0xabc0 + index), provider: "claude", prompt: "x", createdAt: 1)
            job.status = .running
            job.pid = process.pid
            job.pgid = process.pid
            job.processStartTime = process.identity.startTime
            try harness.store.save(job)
        }

        let grace = 400
        var configuration = JobManager.Configuration()
        configuration.killGraceMilliseconds = grace
        let restarted = JobManager(
            loop: try EventLoop(), store: try JobStore(dataDirectory: harness.data.path),
            detector: AgentDetector(configuration: .init(path: harness.agents.searchPath, environment: [])),
            configuration: configuration)
        let start = MonotonicClock.nanoseconds()
        #expect(try restarted.recover().count == 4)
        let elapsed = Int((MonotonicClock.nanoseconds() - start) / 1_000_000)
        // The start waits for none of them (it waited a grace period, 4 × 400 ms before that).
        #expect(elapsed < grace / 2, "recover() took \(elapsed) ms for 4 orphans with a \(grace) ms grace")
        // They ignore SIGTERM: SIGKILL comes from the restarted server's loop after the grace.
        restarted.loop.run(untilMilliseconds: grace - 100) { false }
        let stillThere = orphans.filter { !$0.hasExited }.count
        #expect(stillThere == 4)
        restarted.loop.run(untilMilliseconds: 300) { false }
        #expect(harness.spin(until: { orphans.allSatisfy(\.hasExited) }, milliseconds: 2_000))
    }

    // MARK: files an agent can replace

    @Test func aFIFOAsTheOutputFileIsAHookErrorAndTheJobCompletes() throws {
        let harness = try EngineHarness()
        let script = #"while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then rm -f "$2"; mkfifo "$2"; fi; shift; done; echo done"#
        let job = try harness.launch("codex", script: script)
        let watchdog = FIFOWatchdog(path: harness.store.jobDirectory(job.id) + "/output.txt", bytes: Array("planted".utf8))
        defer { watchdog.finish() }
        let done = try #require(harness.waitForCompletion(job.id, timeoutMilliseconds: 10_000))
        #expect(!watchdog.hadToUnblock, "the server blocked opening the FIFO")
        #expect(done.status == .done)
        #expect(done.hookError == "output file is not a regular file")
        #expect(done.result?["output"] == nil)
    }

    @Test func aSymlinkAsTheOutputFileIsNotFollowed() throws {
        let harness = try EngineHarness()
        let secret = harness.scratch.file("secret")
        try "operator's secret".write(toFile: secret, atomically: false, encoding: .utf8)
        let script = #"while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then ln -sf "$FAKE_SECRET" "$2"; fi; shift; done"#
        let job = try harness.launch("codex", script: script, env: ["FAKE_SECRET": secret])
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        #expect(done.hookError == "output file is not a regular file")
        #expect(done.result?["output"] == nil)
    }

    @Test func aFIFOInPlaceOfTheEventFileReadsAsNoEvents() throws {
        let harness = try EngineHarness()
        let eventFile = harness.data.path + "/jobs/$AGENTGATE_JOB_ID/events.ndjson"
        // Once the server has written the file (before that, its first write finds the FIFO and
        // the job fails: its events cannot be stored); it may write again between rm and
        // mkfifo: retry until the FIFO is in.
        let job = try harness.launch(
            script: "until [ -s \"\(eventFile)\" ]; do sleep 0.01; done; until mkfifo \"\(eventFile)\" 2>/dev/null; do rm -f \"\(eventFile)\"; done; echo planted")
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .done)
        let path = harness.store.jobDirectory(job.id) + "/events.ndjson"
        var info = stat()
        #expect(lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO)

        // A line the code before the fix would have read once unblocked.
        let line = JobEvent(jobId: job.id, seq: 1, time: 1, payload: .log(LogLine(.stdout, .text, "x"))).encoded() + [0x0A]
        let watchdog = FIFOWatchdog(path: path, bytes: line)
        defer { watchdog.finish() }
        #expect(harness.manager.events(for: job.id).isEmpty)
        #expect(harness.manager.encodedEvents(for: job.id).isEmpty)
        #expect(harness.store.lastSeq(for: job.id) == 0)
        #expect(!watchdog.hadToUnblock, "reading the event file blocked on a FIFO")
    }

    @Test func aSymlinkInPlaceOfTheEventFileReadsAsNoEvents() throws {
        let harness = try EngineHarness()
        let job = try harness.launch(script: "echo hi")
        harness.waitForCompletion(job.id)
        let path = harness.store.jobDirectory(job.id) + "/events.ndjson"
        #expect(!harness.manager.events(for: job.id).isEmpty)
        // Elsewhere: a copy of the real events, reached only through the link.
        let elsewhere = harness.scratch.file("elsewhere.ndjson")
        #expect(rename(path, elsewhere) == 0)
        #expect(symlink(elsewhere, path) == 0)
        #expect(harness.manager.events(for: job.id).isEmpty)
        #expect(EventLog.lastSeq(path: path) == 0)
    }
}

/// /proc/PID/stat field 6.
private func sessionOf(_ pid: Int32) -> Int32? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 3 ? Int32(fields[3]) : nil
}

/// Unblocks a reader stuck opening the FIFO at `path` (what the code before the fix did) by
/// writing `bytes` into it after a few seconds, so such a test fails instead of hanging.
private final class FIFOWatchdog: Sendable {
    private let state = Mutex((finished: false, unblocked: false))

    init(path: String, bytes: [UInt8], afterMilliseconds: Int = 3_000) {
        Thread.detachNewThread { [self] in
            // Again and again: a reader may open the FIFO more than once.
            for _ in 0..<20 {
                usleep(UInt32(afterMilliseconds) * 1000)
                guard !state.withLock({ $0.finished }) else { return }
                var info = stat()
                guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO else { continue }
                // O_RDWR never blocks on a FIFO; it wakes the blocked reader, which then
                // reads the bytes and, once this closes, end of file.
                let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
                guard fd >= 0 else { continue }
                state.withLock { $0.unblocked = true }
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                usleep(200_000)
                close(fd)
            }
        }
    }

    var hadToUnblock: Bool { state.withLock { $0.unblocked } }

    func finish() { state.withLock { $0.finished = true } }
}
