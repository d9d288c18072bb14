import AgentCore
import ArgumentParser

/// `agentgate show`: one job in full.
struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one job: status, command, result.")

    @Argument(help: "The job id.")
    var id: String

    @Flag(help: "The job's JSON.")
    var json = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        try validateJobID(id)
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let reply = try client.api().call("GET", "/api/agents/jobs/\(id)")
            guard let value = reply["job"], let job = Job(json: value) else {
                throw ClientFailure(message: "the server's answer did not hold a job", exitCode: 8)
            }
            if json {
                print(String(decoding: JSONWriter.serialize(value), as: UTF8.self))
                return 0
            }
            var lines = [
                "job       \(job.id)",
                "status    \(job.status.rawValue)" + (job.exitCode.map { " (exit \($0))" } ?? "")
                    + (job.signal.map { " (\(ExitStatus.signalName($0)))" } ?? ""),
                "provider  \(job.provider)" + (job.model.map { " · model \($0)" } ?? ""),
            ]
            if let position = job.queuePosition {
                lines.append("queue     \(AdmissionQueue.ordinal(position))" + (job.queueReason.map { ": \($0)" } ?? ""))
            }
            if let label = job.label { lines.append("label     \(label)") }
            if let project = job.project { lines.append("project   \(project)") }
            if let key = job.key { lines.append("key       \(key)") }
            if job.priority != 0 { lines.append("priority  \(job.priority)") }
            if let admitted = job.admittedAt, admitted - job.createdAt >= 1_000 {
                lines.append("waited    \(JobManager.seconds(Double(admitted - job.createdAt) / 1000)) in the queue")
            }
            if let cwd = job.cwd { lines.append("cwd       \(cwd)") }
            if job.startedAt != nil {
                lines.append("started   \(JobTable.startTime(job, full: true))")
                lines.append("elapsed   \(JobTable.elapsed(job))")
            } else {
                // Queued, or cancelled before it ran.
                lines.append("created   \(JobTable.startTime(job, full: true)) (never started)")
            }
            if let profile = job.profile { lines.append("profile   \(profile)") }
            // It worked on while the server restarted (README "Restarts, upgrades and systemd").
            if job.reattachCount > 0 {
                lines.append("restarts  re-attached after \(job.reattachCount == 1 ? "a server restart" : "\(job.reattachCount) server restarts")")
            }
            if let budget = job.budget {
                var limits: [String] = []
                if let seconds = budget.timeoutSeconds { limits.append("\(seconds) s") }
                if let turns = budget.maxTurns { limits.append("\(turns) turns") }
                if let dollars = budget.maxBudgetUsd { limits.append("$\(LaunchRequest.dollars(dollars))") }
                var spent: [String] = []
                if let turns = job.turns { spent.append("\(turns) turn\(turns == 1 ? "" : "s")") }
                if let cost = job.costUsd { spent.append("$\(LaunchRequest.dollars(cost))") }
                lines.append("budget    " + limits.joined(separator: " · ") + (spent.isEmpty ? "" : " (spent \(spent.joined(separator: ", ")))"))
            }
            lines.append("command   \(job.command.joined(separator: " "))")
            lines.append("events    \(job.lastSeq)")
            // The whole prompt, each of its lines indented under the first.
            lines.append("prompt    " + job.prompt.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n          "))
            if let result = job.result {
                if let text = result["text"]?.stringValue { lines.append("result    \(text)") }
                if let cost = result["costUsd"]?.doubleValue { lines.append("cost      $\(String(format: "%.4f", cost))") }
                if let turns = result["numTurns"]?.intValue { lines.append("turns     \(turns)") }
                if let reason = result["endReason"]?.stringValue { lines.append("ended     \(reason)") }
                for error in result["errors"]?.arrayValue ?? [] { lines.append("error     \(error.stringValue ?? "")") }
                if let denied = result["permissionDenials"]?.arrayValue, !denied.isEmpty {
                    lines.append("denied    " + denied.compactMap { $0["tool"]?.stringValue }.joined(separator: ", "))
                }
                if let hook = result["hook"] { lines.append("hook      \(String(decoding: JSONWriter.serialize(hook), as: UTF8.self))") }
            }
            if let worktree = job.worktree {
                lines.append("worktree  \(worktree.path) (\(worktree.state.rawValue))")
                lines.append("branch    \(worktree.branch) from \(worktree.baseRef)" + (worktree.baseCommit.map { " (\($0.prefix(12)))" } ?? ""))
                if let summary = worktree.summary { lines.append("change    \(summary) (agentgate diff \(job.id))") }
            }
            if let error = job.errorTail, job.status != .done { lines.append("error     \(error)") }
            if let hookError = job.hookError { lines.append("hookError \(hookError)") }
            print(TerminalText.escaped(lines.joined(separator: "\n")))
            return 0
        }
    }
}
