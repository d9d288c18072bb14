import AgentCore
import Foundation
import Glibc
import TestSupport
import Testing
import EventLoop

@testable import Gateway

/// A data dir on a small tmpfs: a full disk is loud, loses nothing it acknowledged, and the
/// server carries on (and starts) while it lasts. Needs root for `mount`, as CI has.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct StorageFaultTests {
    /// A tmpfs of `megabytes` mounted on a fresh directory, unmounted when released.
    final class SmallDisk {
        let directory = TemporaryDirectory("agentgate-small-disk")
        var path: String { directory.path }

        init(megabytes: Int) throws {
            guard mount("tmpfs", directory.path, "tmpfs", 0, "size=\(megabytes)m,mode=0700") == 0 else {
                throw SystemError("mount tmpfs on \(directory.path) (the tests need root, as CI has)", errno: errno)
            }
        }

        deinit { umount2(directory.path, Int32(MNT_DETACH)) }

        /// Fills the disk, leaving about `leaving` bytes free, with a file that `free()` removes.
        func fill(leaving: Int) throws {
            let free = Int(StorageStatus.freeBytes(of: path) ?? 0)
            let size = max(0, free - leaving)
            let fd = open(path + "/filler", O_WRONLY | O_CREAT, 0o600)
            defer { close(fd) }
            let chunk = [UInt8](repeating: 0, count: 64 * 1024)
            var written = 0
            while written < size {
                let count = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, size - written)) }
                guard count > 0 else { break }
                written += count
            }
        }

        func free() { unlink(path + "/filler") }
    }

    static func metric(_ gateway: RunningGateway, _ name: String) -> Int? {
        try? ConnectionCountTests.metric(gateway, name)
    }

    @Test func aFullDiskStopsTheJobSaysWhyRefusesLaunchesAndLosesNoEventItAcknowledged() throws {
        let disk = try SmallDisk(megabytes: 24)
        let gateway = try RunningGateway(dataDirectory: disk.path + "/data", minFreeBytes: 1 << 20)
        defer { gateway.stop() }
        try disk.fill(leaving: 2 << 20)
        // About 20 MB of output: far more than fits.
        let id = try launch(gateway, script: "i=0; while [ $i -lt 200000 ]; do echo \"line $i of output that will not all fit on this disk\"; i=$((i+1)); done")
        _ = StreamEndTests.waitForEnd(gateway, id)
        let job = try #require(gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])
        #expect(job["status"] as? String == "failed")
        #expect((job["result"] as? [String: Any])?["endReason"] as? String == "storage")
        #expect(Self.metric(gateway, "storage_failing") == 1)
        // New jobs are refused while the disk refuses writes: they would be lost.
        let refused = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"echo hi"}}"#)
        #expect(refused.status == 507)
        #expect(refused.json["code"] as? String == "insufficient_storage")

        // Space comes back: what was held in memory is written, in order, with no gap.
        disk.free()
        var failing = 1
        for _ in 0..<50 where failing != 0 {
            usleep(100_000)
            failing = Self.metric(gateway, "storage_failing") ?? 1
        }
        #expect(failing == 0)
        let lastSeq = try #require(gateway.request("GET", "/api/agents/jobs/\(id)").json["job"] as? [String: Any])["lastSeq"] as? Int
        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream")
        let events = stream.events(until: "job:completed")
        #expect(!events.contains { $0.name == "gap" })
        #expect(events.compactMap { $0.id.flatMap(Int.init) } == Array(1...(lastSeq ?? 0)))
        #expect(events.last?.name == "job:completed")
        let stored = EventLog.readEncoded(path: gateway.dataPath + "/jobs/\(id)/events.ndjson").map(\.seq)
        #expect(stored == Array(1...(lastSeq ?? 0)))
        // The log says why it stopped.
        #expect(events.contains { $0.name == "job:log" && $0.data.contains("events cannot be stored") })
        let accepted = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"echo hi"}}"#)
        #expect(accepted.status == 201)
    }

    @Test func theServerStartsOnAFullDiskAndServesHistory() throws {
        let disk = try SmallDisk(megabytes: 8)
        let data = disk.path + "/data"
        // A job that was running when the server stopped, and a finished one.
        let first = try RunningGateway(dataDirectory: data)
        let done = try launch(first, script: "echo kept")
        _ = StreamEndTests.waitForEnd(first, done)
        first.stop()
        var running = Job(id: "running-at-stop", provider: "claude", prompt: "x", createdAt: 1)
        running.status = .running
        try JobStore(dataDirectory: data).save(running)
        try disk.fill(leaving: 0)
        // Starting means marking that job interrupted: an event and a record the disk refuses.
        let gateway = try RunningGateway(dataDirectory: data, minFreeBytes: 1 << 20)
        defer { gateway.stop() }
        let jobs = try gateway.request("GET", "/api/agents/jobs").json["jobs"] as? [[String: Any]] ?? []
        #expect(Set(jobs.compactMap { $0["id"] as? String }).isSuperset(of: [done, "running-at-stop"]))
        #expect(jobs.first { $0["id"] as? String == "running-at-stop" }?["status"] as? String == "interrupted")
        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(done)/stream")
        #expect(stream.events(until: "job:completed").contains { $0.data.contains("kept") })
        let refused = try gateway.request("POST", "/api/agents/jobs", body: #"{"provider":"claude","prompt":"x","env":{"FAKE_SCRIPT":"echo hi"}}"#)
        #expect(refused.status == 507)
    }
}
