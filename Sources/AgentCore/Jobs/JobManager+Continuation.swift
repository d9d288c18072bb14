import Foundation

/// A follow-up to a finished job (issue 17): the agent's session is resumed (`claude
/// --resume`, `codex exec resume`, opencode `--session`, goose `--resume`, ACP `session/load`)
/// as a new run of the same job: same id, same cwd or worktree, its events' seq going on, the
/// user's message first in the log. The job is `starting` then `running` again, and ends with
/// a `job:completed` of its own (its completion hook runs once per run).
///
/// What the run is launched with is the job's own request (kept in the job records with its
/// prompt left out, see `keepRequestForFollowUps`) under the operator's policy, profiles and
/// budgets as they are now; the follow-up's text is its prompt, as the user typed it (a
/// profile's template wrapped the first prompt only).
extension JobManager {
    /// Whether a finished job can be continued by a follow-up: its agent resumes sessions
    /// and reported one that can be resumed (an agent may report anything), it has not had its
    /// fill, and its worktree (if any) was not discarded.
    func mayContinue(_ job: Job) -> Bool {
        guard job.status.isFinished, let session = job.sessionId, LaunchField.isSessionID(session), job.messages < Self.maxMessagesPerJob,
            AgentProvider.named(job.provider)?.resumesSessions == true
        else { return false }
        return job.worktree.map { $0.state != .discarded } ?? true
    }

    /// Starts the next run of finished job `id` with `text` as the user's message. Returns
    /// the seq of the log line that shows the message.
    func continueFinished(_ id: String, text: String) throws(MessageError) -> Int {
        guard let compact = jobsByID[id] else { throw .unknownJob }
        guard running[id] == nil, queued[id] == nil, preparing[id] == nil else { throw .notAccepting(compact.status) }
        guard AgentProvider.named(compact.provider)?.resumesSessions == true else {
            throw .notConversational(provider: compact.provider)
        }
        guard let session = compact.sessionId else {
            throw .cannotContinue(LaunchError(.invalidField, field: nil, "its agent reported no session to resume; launch a new job"))
        }
        guard compact.messages < Self.maxMessagesPerJob else {
            throw .tooMany("job \(id) has had \(Self.maxMessagesPerJob) follow-ups; launch a new job")
        }
        var job = details(of: id) ?? compact
        let (spec, request, worktree) = try continuationSpec(job, text: text, session: session)

        switch admission.admit(ticket(for: job), onConflict: .reject) {
        case .start:
            break
        case .conflict(let holder):
            throw .cannotContinue(LaunchError(
                .keyConflict, field: "key", "job \(holder) holds key \(job.key ?? "") now; send the follow-up again once it has ended"))
        case .wait, .full:
            admission.release(id)
            throw .busy(
                "this server runs as many jobs as it may (\(runningCount) running, \(queuedCount) queued); a follow-up starts a finished job only when there is room: send it again once a job has ended")
        }

        // What the last run left that the next one writes afresh: its spools (the supervisor
        // creates them anew), its output file, its hook's record (the hook runs once per run).
        let directory = store.jobDirectory(id)
        for leftover in ["agent", "output.txt", "hook.json"] {
            try? FileManager.default.removeItem(atPath: directory + "/" + leftover)
        }
        let before = job.messages
        job.messages += 1
        // Everything before this message was answered: the new run answers one more.
        job.answered = before + 1
        job.status = .starting
        job.command = spec.arguments
        job.worktree = worktree ?? job.worktree
        job.budget = JobBudget(request)
        job.endedAt = nil
        job.exitCode = nil
        job.signal = nil
        job.errorTail = nil
        job.hookError = nil
        job.turns = nil
        job.costUsd = nil
        job.acceptsMessages = false
        job.pid = nil
        job.pgid = nil
        job.processStartTime = nil
        jobsByID[id] = job

        var lifecycle = JobLifecycle(phase: .finished(compact.status))
        let actions = lifecycle.handle(.continued)
        if actions.contains(.announceStatus) { announce(id, status: lifecycle.status, first: false) }
        for line in LogLine.lines(.text, text, stream: .user) { emit(id, .log(line)) }
        let seq = jobsByID[id]?.lastSeq ?? 0
        emit(id, .log(LogLine(.system, .info, "follow-up \(job.messages): resuming the agent's session \(session)")))
        storeSpoolsRestarted(id)
        spawn(id, spec, lifecycle: lifecycle)
        return seq
    }

    /// The command line of a job's next run: its kept request (or one rebuilt from its record)
    /// with the follow-up as its prompt, resuming `session`, in the job's worktree when it has
    /// one (made active again).
    private func continuationSpec(_ job: Job, text: String, session: String) throws(MessageError) -> (LaunchSpec, LaunchRequest, Worktree?) {
        do throws(LaunchError) {
            var asked: LaunchRequest
            if let kept = store.loadRequest(job.id).flatMap({ try? JSONParser.parse($0) }) {
                asked = try LaunchRequest(json: kept)
            } else {
                asked = Self.requestRebuilt(from: job)
            }
            asked.isolation = nil
            asked.baseRef = nil
            asked.worktreeOf = nil
            asked.onConflict = nil
            asked.resumeSession = session
            // The profile's template is for a first prompt: the follow-up goes as typed.
            asked.prompt = ""
            var (request, policy) = try resolve(asked)
            request.prompt = text
            request.resumeSession = session
            var worktree: Worktree?
            if job.worktree != nil {
                var within = request
                within.worktreeOf = job.id
                worktree = try worktreePlan(for: within, id: job.id, cwd: nil)
            }
            let builder = CommandBuilder(policy: policy, capabilities: detector.current(), searchPath: detector.configuration.path)
            let spec = try builder.build(request, outputFile: store.jobDirectory(job.id) + "/output.txt", runningIn: worktree?.workingDirectory)
            try checkRoomToLaunch()
            return (spec, request, worktree)
        } catch {
            throw .cannotContinue(error)
        }
    }

    /// A job launched before requests were kept: its request as its record shows it (what it
    /// lacks, an effort or env of the request, is the operator's default now).
    static func requestRebuilt(from job: Job) -> LaunchRequest {
        var request = LaunchRequest(provider: job.profile == nil ? job.provider : LaunchProfile.anyProvider, prompt: "")
        // A worktree's job was asked for the checkout's directory (its worktree is found again).
        request.cwd = job.worktree.map { $0.subdirectory.isEmpty ? $0.repository : $0.repository + "/" + $0.subdirectory } ?? job.cwd
        request.model = job.model
        request.label = job.label
        request.project = job.project
        request.key = job.key
        request.priority = job.priority == 0 ? nil : job.priority
        request.profile = job.profile
        request.timeoutSeconds = job.budget?.timeoutSeconds
        request.maxTurns = job.budget?.maxTurns
        request.maxBudgetUsd = job.budget?.maxBudgetUsd
        return request
    }

    /// Keeps an admitted job's request in the records, its prompt left out (the job's record
    /// has it): a follow-up after the job ended is launched from it. Only for agents that can
    /// resume a session.
    func keepRequestForFollowUps(_ request: LaunchRequest, of id: String) throws(LaunchError) {
        guard AgentProvider.named(request.provider)?.resumesSessions == true || request.profile != nil else {
            return store.deleteRequest(id)
        }
        var kept = request
        kept.prompt = ""
        try saveRequest(kept, of: id)
    }
}
