import Testing

@testable import AgentCore

/// What every event of a job's output costs to copy (from the job to storage and to each
/// viewer's feed): the large, rare payloads are boxed.
@Suite struct JobEventLayoutTests {
    @Test func aPayloadIsTheSizeOfALogLineWhateverItsLargestCase() {
        #expect(MemoryLayout<JobEvent.Payload>.size <= MemoryLayout<LogLine>.size + 8)
        #expect(MemoryLayout<JobEvent>.size <= 64)
    }

    @Test func boxedPayloadsEncodeAndCompareAsBefore() throws {
        var job = Job(id: "00000000000000aa", provider: "claude", prompt: "hi", createdAt: 1)
        job.status = .running
        let started = JobEvent(jobId: job.id, seq: 1, time: 5, payload: .started(job))
        let json = try JSONParser.parse(started.encoded())
        #expect(JobEvent(json: json) == started)
        #expect(started != JobEvent(jobId: job.id, seq: 1, time: 5, payload: .status(job)))
    }
}
