import EventLoop
import Foundation
import Testing

@testable import AgentCore

/// The engine over an event store that refuses writes on demand: what a full disk does,
/// without one.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct StorageFaultEngineTests {
    @Test func refusedWritesStopTheJobKeepItsEventsInOrderAndStoreThemWhenTheStoreTakesThemAgain() throws {
        let store = EventsInMemory()
        let harness = try EngineHarness(events: store)
        let job = try harness.launch(script: "sleep 0.2; i=0; while [ $i -lt 5000 ]; do echo \"line $i\"; i=$((i+1)); done")
        harness.loop.run(untilMilliseconds: 5_000) { harness.manager.job(job.id)?.lastSeq ?? 0 >= 1 }
        store.refusingWrites.withLock { $0 = true }
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .failed)
        #expect(done.result?["endReason"]?.stringValue == "storage")
        #expect(harness.manager.storage.failing)
        #expect(harness.manager.unstoredBytes > 0)
        #expect(harness.logLines(of: job.id).contains { $0.text.contains("events cannot be stored") })
        // Launches are refused while writes are: the job would be lost.
        #expect(throws: LaunchError.self) { try harness.launch(script: "echo hi") }

        store.refusingWrites.withLock { $0 = false }
        harness.loop.run(untilMilliseconds: 3_000) { !harness.manager.storage.failing }
        #expect(!harness.manager.storage.failing)
        #expect(harness.manager.unstoredBytes == 0)
        let stored = harness.store.events(for: job.id).map(\.seq)
        #expect(stored == Array(1...done.lastSeq))
        #expect(harness.store.events(for: job.id).last?.type == "job:completed")
    }

    @Test func pastTheMemoryBoundTheOldestUnwrittenEventsGoAndTheFileHasAGapNotAHole() throws {
        let store = EventsInMemory()
        // Room for a few events, less than a job's lifecycle events (each carries the job).
        let harness = try EngineHarness(events: store) { $0.maxUnstoredBytes = 2_048 }
        // Its output arrives in big reads, each far over the bound.
        let job = try harness.launch(script: "sleep 0.2; seq 1 20000")
        harness.loop.run(untilMilliseconds: 5_000) { harness.manager.job(job.id)?.lastSeq ?? 0 >= 1 }
        store.refusingWrites.withLock { $0 = true }
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(harness.manager.unstoredBytes <= 2_048)
        #expect(harness.manager.storage.droppedEventBytes > 0)
        store.refusingWrites.withLock { $0 = false }
        harness.loop.run(untilMilliseconds: 3_000) { !harness.manager.storage.failing }
        // What is stored is in order; the dropped ones read as a gap, and the end is there.
        let reader = store.reader(job: job.id)
        var cursor = 0
        var gaps: [ClosedRange<Int>] = []
        while cursor < done.lastSeq {
            let slice = reader.slice(after: cursor, maxBytes: 1 << 20, maxEvents: .max)
            if let gap = slice.gap {
                gaps.append(gap)
                cursor = gap.upperBound
            } else if let last = slice.lines.last {
                cursor = last.seq
            } else {
                break
            }
        }
        #expect(cursor == done.lastSeq)
        #expect(gaps.count == 1)
    }

    @Test func aJobPastItsOutputLimitIsStoppedAndSaysWhy() throws {
        let harness = try EngineHarness { $0.maxJobOutputBytes = 64 * 1024 }
        let job = try harness.launch(script: "i=0; while true; do echo \"line $i of a job that never stops writing\"; i=$((i+1)); done")
        let done = try #require(harness.waitForCompletion(job.id))
        #expect(done.status == .failed)
        #expect(done.result?["endReason"]?.stringValue == "output_limit")
        #expect(harness.logLines(of: job.id).contains { $0.text.contains("output limit of 64 KiB reached") })
        // What it wrote after the limit was not kept: the events stay near the limit.
        let bytes = harness.encoded[job.id, default: []].reduce(0) { $0 + $1.count + 1 }
        #expect(bytes < 64 * 1024 + 16 * 1024)
    }
}

/// What a finished job costs in memory, and that nothing is lost by keeping it small.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct FinishedJobMemoryTests {
    @Test func aFinishedJobIsKeptSmallInMemoryAndWholeInTheStore() throws {
        let harness = try EngineHarness()
        let prompt = String(repeating: "a long prompt ", count: 10_000)
        let job = try harness.launch(script: "echo done", prompt: prompt)
        let done = try #require(harness.waitForCompletion(job.id))
        let kept = try #require(harness.manager.job(job.id))
        #expect(kept.isCompact)
        #expect(kept.prompt.count == Job.summaryPromptCharacters)
        #expect(kept.summaryJSON["promptTruncated"] == .bool(true))
        #expect(kept.status == done.status && kept.lastSeq == done.lastSeq)
        let whole = try #require(harness.manager.details(of: job.id))
        #expect(whole.prompt == prompt)
        #expect(!whole.isCompact)
        // After a restart too.
        let restarted = JobManager(
            loop: harness.loop, store: try JobStore(dataDirectory: harness.data.path), detector: harness.manager.detector,
            configuration: harness.manager.configuration)
        try restarted.recover()
        #expect(restarted.job(job.id)?.isCompact == true)
        #expect(restarted.details(of: job.id)?.prompt == prompt)
    }
}

/// The engine over the in-memory stores: the seam a database-backed store will use.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct InMemoryStoreTests {
    @Test func jobsRunRecoverAndDeleteOnTheInMemoryStores() throws {
        let records = JobRecordsInMemory()
        let events = EventsInMemory()
        let harness = try EngineHarness(records: records, events: events)
        let done = try #require(harness.waitForCompletion(try harness.launch(script: "echo one; echo two").id))
        #expect(records.load(done.id) == done)
        #expect(harness.store.events(for: done.id).map(\.seq) == Array(1...done.lastSeq))
        #expect(!FileManager.default.fileExists(atPath: harness.data.path + "/agentgate.sqlite"))
        let running = try harness.launch(script: "sleep 30")
        harness.loop.run(untilMilliseconds: 2_000) { harness.manager.job(running.id)?.status == .running }

        // A second engine over the same stores, as after a restart.
        let restarted = JobManager(
            loop: harness.loop, store: try JobStore(dataDirectory: harness.scratch.path, records: records, events: events),
            detector: harness.manager.detector, configuration: harness.manager.configuration)
        let interrupted = try restarted.recover()
        #expect(interrupted.map(\.id) == [running.id])
        #expect(records.load(running.id)?.status == .interrupted)
        #expect(restarted.job(done.id) == done)
        try restarted.delete(done.id)
        #expect(records.load(done.id) == nil)
        #expect(events.reader(job: done.id).lastSeq() == 0)
    }
}
