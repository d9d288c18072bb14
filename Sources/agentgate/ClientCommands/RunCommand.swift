import AgentCore
import ArgumentParser
import Foundation

/// `agentgate run`: launch on the server and stream the job until it ends.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Launch a job on the server and stream its log until it ends.",
        discussion: """
            Exit status: 0 done, 1 failed or interrupted, 137 killed, 130 detached by Ctrl-C (the \
            job keeps running; re-attach with `agentgate tail ID --follow`), 2 invalid request, \
            3 server unreachable, 4 token refused, 6 server gone mid-stream, 7 the --key is held \
            (--on-conflict reject), 8 other server errors (503 queue_full: the queue is full).
            """)

    @Argument(help: "claude, codex, opencode, goose (or custom, if the server allows it); left out with --profile.")
    var provider: String?

    @Argument(help: "The prompt, or - to read it from stdin.")
    var prompt: String?

    @Option(help: "Launch with one of the server's profiles (agentgate capabilities lists them): run --profile review \"the auth module\".")
    var profile: String?

    @Option(help: "Working directory for the agent (on the server's machine).")
    var cwd: String?

    @Option(help: "Model name.")
    var model: String?

    @Option(help: "Effort: claude --effort, codex reasoning effort, opencode --variant (`agentgate capabilities` lists each one's values).")
    var effort: String?

    @Option(help: "A label for the job list.")
    var label: String?

    @OptionGroup var session: AgentSessionOptions

    @Option(help: "The project the job belongs to (jobs --project lists them; the server may cap jobs per project).")
    var project: String?

    @Option(help: "A conflict key (a story, a branch): at most one unfinished job per key runs at a time.")
    var key: String?

    @Option(help: "While another job holds --key: queue (wait for it, the default) or reject (fail at once, naming it).")
    var onConflict: String?

    @Option(help: "Higher starts first from the queue (default 0; the server bounds it, 10 unless --max-priority).")
    var priority: Int?

    @Option(help: "Stop the job this many seconds after it starts (it fails with end reason timeout).")
    var timeout: Int?

    @Option(help: "Stop the job once the cost its agent reports reaches this many US dollars (claude, opencode).")
    var maxBudgetUsd: Double?

    @Flag(help: "Run in a git worktree of its own (branch agentgate/<id>); its change is the result (agentgate diff, apply, discard).")
    var worktree = false

    @Flag(help: "Run in the directory itself even where the server isolates by default (--isolate-in).")
    var noWorktree = false

    @Option(help: "The branch, tag or commit the worktree starts from (default: the checkout's HEAD); implies --worktree.")
    var base: String?

    @Option(help: "Continue the change of an earlier job: run in its worktree.")
    var worktreeOf: String?

    @Flag(help: "Print the job id and return at once.")
    var detach = false

    @Flag(help: "Read follow-up messages from stdin, one per line, while the job runs (/answer REQUEST OPTION answers a permission question); a line typed after it ended continues it, until stdin ends.")
    var interactive = false

    @Flag(help: "Ctrl-C kills the job instead of detaching from it.")
    var killOnInterrupt = false

    @Flag(help: "Print every event as one JSON object per line.")
    var json = false

    @Flag(help: "Print agent output as it is, control characters included (by default they are shown escaped: ESC as \\x1b).")
    var raw = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        // With a profile the prompt may be left out too (a profile whose template is the whole prompt).
        if (provider == nil || prompt == nil) && profile == nil { throw ValidationError("give a provider and a prompt (or --profile NAME and a prompt)") }
        if let onConflict, AdmissionQueue.ConflictPolicy(rawValue: onConflict) == nil {
            throw ValidationError("--on-conflict \(onConflict): queue or reject")
        }
        if onConflict != nil && key == nil { throw ValidationError("--on-conflict needs --key") }
        if worktree && noWorktree { throw ValidationError("--worktree and --no-worktree exclude each other") }
        if interactive && (detach || prompt == "-" || (prompt == nil && provider == "-")) {
            throw ValidationError("--interactive reads follow-ups from stdin: give the prompt as an argument, without --detach")
        }
        if let worktreeOf {
            try validateJobID(worktreeOf)
            if cwd != nil || base != nil || noWorktree {
                throw ValidationError("--worktree-of runs in that job's worktree: give it without --cwd, --base or --no-worktree")
            }
        }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            // With a profile the one argument is the prompt; a provider given too must be the profile's.
            let (providerName, given) = prompt.map { (provider ?? "", $0) } ?? ("", provider ?? "")
            var text = given
            if given == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            }
            // The job runs where the caller is unless told otherwise, and the server resolves
            // paths on its side: always send an absolute one.
            let here = FileManager.default.currentDirectoryPath
            let directory = cwd.map { $0.hasPrefix("/") ? $0 : here + "/" + $0 } ?? here
            var request: [JSONValue.Member] = [.init("prompt", .string(text))]
            if !providerName.isEmpty { request.append(.init("provider", .string(providerName))) }
            if let profile { request.append(.init("profile", .string(profile))) }
            if let worktreeOf {
                request.append(.init("worktreeOf", .string(worktreeOf)))
            } else {
                request.append(.init("cwd", .string(directory)))
            }
            if worktree || base != nil { request.append(.init("isolation", "worktree")) }
            if noWorktree { request.append(.init("isolation", "none")) }
            if let base { request.append(.init("baseRef", .string(base))) }
            let fields = [
                ("model", model), ("effort", effort), ("label", label), ("resumeSession", session.resume), ("project", project), ("key", key),
                ("onConflict", onConflict),
            ]
            for (name, value) in fields {
                if let value { request.append(.init(name, .string(value))) }
            }
            if let priority { request.append(.init("priority", .int(priority))) }
            if let timeout { request.append(.init("timeoutSeconds", .int(timeout))) }
            if let maxBudgetUsd { request.append(.init("maxBudgetUsd", .double(maxBudgetUsd))) }
            if let maxTurns = session.maxTurns { request.append(.init("maxTurns", .int(maxTurns))) }
            if !session.env.isEmpty {
                request.append(.init("env", .object(session.environment.map { .init($0.key, .string($0.value)) })))
            }
            let reply = try api.call("POST", "/api/agents/jobs", body: .object(request))
            guard let info = reply["job"], let job = Job(json: info) else {
                throw ClientFailure(message: "the server's answer did not name a job", exitCode: 8)
            }
            if detach {
                print(job.id)
                return 0
            }
            JobFollower.catchInterrupts()
            if interactive { FollowUpReader.start(api: api, job: job.id) }
            let output = JobOutput(json: json, raw: raw)
            var follower = JobFollower(api: api, output: output)
            follower.rawEvents = json
            var outcome = try follower.follow(job: job.id, since: 0)
            if case .interrupted = outcome, killOnInterrupt {
                clientInterrupted.store(false, ordering: .relaxed)
                _ = try? api.call("DELETE", "/api/agents/jobs/\(job.id)")
                output.note("agentgate: killing job \(job.id)")
                outcome = try follower.follow(job: job.id, since: lastSeq(outcome))
            }
            // A line typed once the job ended continues it: followed again from its end.
            var resumed = 0
            while interactive, case .ended(let final) = outcome, final.acceptsMessages,
                FollowUpReader.waitForContinuation(of: final, seen: &resumed) {
                outcome = try follower.follow(job: job.id, since: final.lastSeq)
            }
            output.finish()
            switch outcome {
            case .ended(let final):
                return JobFollower.exitCode(for: final)
            case .interrupted:
                printError("agentgate: detached; job \(job.id) keeps running. Re-attach: agentgate tail \(job.id) --follow")
                return 130
            }
        }
    }

    private func lastSeq(_ outcome: JobFollower.Outcome) -> Int {
        if case .interrupted(let seq) = outcome { return seq }
        return 0
    }
}
