import AgentCore
import ArgumentParser

/// `agentgate tail`: a job's log so far, or followed until it ends (across server restarts).
struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print a job's log; with --follow, keep printing until it ends.",
        discussion: """
            With --follow the exit status is the job's (0 done, 1 failed or interrupted, 137 \
            killed); a server restart is survived by reconnecting and resuming after the last \
            seq printed. 5 when there is no such job.
            """)

    @Argument(help: "The job id.")
    var id: String

    @Option(help: "Start after this seq (0: from the beginning).")
    var since = 0

    @Flag(name: [.short, .long], help: "Keep following until the job ends.")
    var follow = false

    @Flag(help: "Print every event as one JSON object per line.")
    var json = false

    @Flag(help: "Print agent output as it is, control characters included (by default they are shown escaped: ESC as \\x1b).")
    var raw = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        try validateJobID(id)
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            let output = JobOutput(json: json, raw: raw, live: follow)
            guard follow else {
                // History, a page at a time.
                var cursor = since
                while true {
                    let page = try api.call("GET", "/api/agents/jobs/\(id)/events?since=\(cursor)&limit=10000")
                    let events = page["events"]?.arrayValue ?? []
                    for event in events where event["type"]?.stringValue != "job:event" || json { output.event(event) }
                    guard let last = events.last?["seq"]?.intValue, events.count == 10_000 else { break }
                    cursor = last
                }
                return 0
            }
            JobFollower.catchInterrupts()
            var follower = JobFollower(api: api, output: output)
            follower.reconnect = true
            follower.rawEvents = json
            let outcome = try follower.follow(job: id, since: since)
            output.finish()
            switch outcome {
            case .ended(let job): return JobFollower.exitCode(for: job)
            case .interrupted: return 130
            }
        }
    }
}
