import Testing

@testable import AgentCore

/// The batch window of woken spool reads, with a fake clock: it follows how many jobs write.
@Suite struct SpoolReadPacingTests {
    /// Each of `marks` reads once at `now`.
    static func read(_ pacing: inout SpoolReadPacing, _ marks: inout [SpoolReadPacing.Mark], now: Int) {
        for index in marks.indices { pacing.noteRead(&marks[index], now: now) }
    }

    @Test func aFewWritingJobsGetTheShortestWindow() {
        var pacing = SpoolReadPacing()
        #expect(pacing.windowMilliseconds(now: 0) == SpoolReadPacing.minimumMilliseconds)
        var marks = [SpoolReadPacing.Mark](repeating: .init(), count: 10)
        Self.read(&pacing, &marks, now: 1_000)
        #expect(pacing.writingJobs(now: 1_050) == 10)
        #expect(pacing.windowMilliseconds(now: 1_050) == 4)
    }

    @Test func theWindowWidensWithTheJobsThatWriteUpToItsMaximum() {
        var pacing = SpoolReadPacing()
        var marks = [SpoolReadPacing.Mark](repeating: .init(), count: 60)
        // 60 jobs reading in every bucket: 60 × 1,000 / 4,000 = 15 ms.
        for now in stride(from: 1_000, to: 1_400, by: 20) { Self.read(&pacing, &marks, now: now) }
        #expect(pacing.writingJobs(now: 1_400) == 60)
        #expect(pacing.windowMilliseconds(now: 1_400) == 15)
        var many = [SpoolReadPacing.Mark](repeating: .init(), count: 1_000)
        Self.read(&pacing, &many, now: 1_410)
        #expect(pacing.windowMilliseconds(now: 1_420) == SpoolReadPacing.maximumMilliseconds)
    }

    @Test func aJobCountsOncePerBucketHoweverOftenItReads() {
        var pacing = SpoolReadPacing()
        var mark = SpoolReadPacing.Mark()
        for now in 2_000..<2_100 { pacing.noteRead(&mark, now: now) }
        #expect(pacing.writingJobs(now: 2_099) == 1)
        #expect(pacing.writingJobs(now: 2_150) == 1)
    }

    @Test func jobsThatStoppedWritingStopCounting() {
        var pacing = SpoolReadPacing()
        var marks = [SpoolReadPacing.Mark](repeating: .init(), count: 200)
        Self.read(&pacing, &marks, now: 5_000)
        #expect(pacing.windowMilliseconds(now: 5_010) == SpoolReadPacing.maximumMilliseconds)
        // The next bucket still sees them (its previous one); a bucket later, none wrote.
        #expect(pacing.writingJobs(now: 5_150) == 200)
        #expect(pacing.writingJobs(now: 5_250) == 0)
        #expect(pacing.windowMilliseconds(now: 5_250) == SpoolReadPacing.minimumMilliseconds)
        // One job reading after a quiet spell: the buckets between were empty.
        var one = SpoolReadPacing.Mark()
        pacing.noteRead(&one, now: 9_000)
        #expect(pacing.writingJobs(now: 9_010) == 1)
    }
}
