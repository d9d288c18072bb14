import AgentCore
import ArgumentParser
import Foundation

/// `agentgate jobs`: the job list, filtered by the server and read a page at a time.
struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "List the server's jobs, newest first.")

    @Option(help: "Only jobs with this status (queued, preparing, starting, running, stopping, done, failed, killed, interrupted; comma-separated for several).")
    var status: String?

    @Option(help: "Only jobs of this provider (claude, codex, …).")
    var provider: String?

    @Option(help: "Only jobs with this label.")
    var label: String?

    @Option(help: "Only jobs of this project.")
    var project: String?

    @Option(help: "At most this many jobs (the newest).")
    var limit = 100

    @Flag(help: "One job's JSON per line.")
    var json = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            for name in status?.split(separator: ",", omittingEmptySubsequences: false) ?? [] where JobStatus(rawValue: String(name)) == nil {
                throw ClientFailure(message: "unknown status \(name)", exitCode: 2)
            }
            let api = try client.api()
            var jobs: [JSONValue] = []
            var cursor: String?
            repeat {
                var query = [("limit", String(min(JobPageSize.max, limit - jobs.count)))]
                if let status { query.append(("status", status)) }
                if let provider { query.append(("provider", provider)) }
                if let label { query.append(("label", label)) }
                if let project { query.append(("project", project)) }
                if let cursor { query.append(("cursor", cursor)) }
                let reply = try api.call("GET", "/api/agents/jobs?" + QueryString.encode(query))
                jobs += reply["jobs"]?.arrayValue ?? []
                cursor = reply["nextCursor"]?.stringValue
            } while cursor != nil && jobs.count < limit
            if json {
                for job in jobs { print(String(decoding: JSONWriter.serialize(job), as: UTF8.self)) }
                return 0
            }
            guard !jobs.isEmpty else {
                print(status.map { "no \($0) jobs" } ?? "no jobs")
                return 0
            }
            print(JobTable.header)
            for value in jobs { if let job = Job(json: value) { print(TerminalText.escaped(JobTable.row(job))) } }
            return 0
        }
    }
}

/// The server's largest page of the job list.
enum JobPageSize {
    static let max = 1_000
}

/// `a=1&b=x%20y`: query parameters percent-encoded (only unreserved characters left as they are).
enum QueryString {
    static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { escape($0.0) + "=" + escape($0.1) }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}

/// Columns for `jobs`: fixed widths so a terminal lines them up.
enum JobTable {
    static let header = pad("ID", 17) + pad("STATUS", 12) + pad("PROVIDER", 10) + pad("STARTED", 13) + pad("ELAPSED", 9) + "PROMPT"

    /// One line per job: its label (in brackets) and the first line of its prompt last, then
    /// for a worktree job its change and where review stands (unreviewed work is findable).
    static func row(_ job: Job) -> String {
        pad(job.id, 17) + pad(job.status.rawValue, 12) + pad(job.provider, 10) + pad(startTime(job), 13) + pad(elapsed(job), 9)
            + (job.project.map { "\($0): " } ?? "") + (job.label.map { "[\($0)] " } ?? "") + promptLine(job.prompt)
            + (job.queuePosition.map { " · queued (\(AdmissionQueue.ordinal($0)))" + (job.queueReason.map { ": \($0)" } ?? "") } ?? "")
            + (job.worktree.map { " · worktree \($0.state.rawValue)" + ($0.summary.map { ": \($0)" } ?? "") } ?? "")
    }

    static func promptLine(_ prompt: String, limit: Int = 60) -> String {
        let first = prompt.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? ""
        let more = first.count < prompt.trimmingCharacters(in: .whitespacesAndNewlines).count
        return first.count > limit ? String(first.prefix(limit)) + "…" : first + (more ? " …" : "")
    }

    /// "14:05:09" for today, "Dec 03 14:05" before (local time); `full`: date and time.
    static func startTime(_ job: Job, full: Bool = false) -> String {
        let date = Date(timeIntervalSince1970: Double(job.startedAt ?? job.createdAt) / 1000)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        if full {
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        } else {
            formatter.dateFormat = Calendar.current.isDateInToday(date) ? "HH:mm:ss" : "MMM dd HH:mm"
        }
        return formatter.string(from: date)
    }

    static func elapsed(_ job: Job) -> String {
        guard let start = job.startedAt ?? Optional(job.createdAt) else { return "" }
        let end = job.endedAt ?? (job.status.isFinished ? start : WallClock.milliseconds())
        // Rounded, as the dashboard shows it.
        let seconds = max(0, (end - start + 500) / 1000)
        return seconds >= 60 ? "\(seconds / 60)m\(seconds % 60)s" : "\(seconds)s"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
