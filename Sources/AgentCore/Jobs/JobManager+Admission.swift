#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// A job admission control holds back, with the command line it will run.
struct QueuedJob {
    var spec: LaunchSpec
    var lifecycle: JobLifecycle
    /// The place last sent in a `job:queue` event, and when (monotonic ms: a wall clock
    /// stepped back must not silence the queue).
    var announced: (position: Int, reason: String?, at: Int)?

    /// How long a waiting job's place may go unannounced after it moved: each move is a
    /// stored event in every waiting job's log, so far back in a long queue they are spaced
    /// out (attacker trial: a launch and a cancel in front of 998 waiting jobs wrote 257 KB).
    /// Near the front every move is told at once.
    static func announceInterval(position: Int) -> Int {
        position <= 10 ? 0 : position <= 100 ? 1_000 : 5_000
    }
}

/// Admission control in the job engine: a launch over a cap waits `queued` (its request kept
/// in `request.json`, so the queue survives a restart), every move of the queue tells each
/// waiting job its new place (`job:queue`), and a job that ends lets the next ones start.
/// The rules themselves are `AdmissionQueue`'s.
extension JobManager {
    /// Where a queued job's request was kept before it went into the records (a job queued
    /// by an earlier build is still launched from it, checked against its record).
    static let requestFileName = "request.json"

    /// What admission knows of a job.
    func ticket(for job: Job) -> AdmissionQueue.Ticket {
        AdmissionQueue.Ticket(
            id: job.id, provider: job.provider, workspace: job.workspace, project: job.project, key: job.key, priority: job.priority)
    }

    /// The workspace root a job's directory is in (the directory itself without workspaces,
    /// as under `exec`): what `--max-per-workspace` counts.
    func workspace(of directory: String?) -> String? {
        guard let directory else { return nil }
        guard let roots = configuration.policy.workspaces?.roots else { return directory }
        return roots.filter { WorkspacePolicy.isInside(directory, $0) }.max { $0.count < $1.count } ?? directory
    }

    func checkPriority(_ request: LaunchRequest) throws(LaunchError) {
        guard let priority = request.priority, priority < -configuration.maxPriority || priority > configuration.maxPriority else { return }
        throw LaunchError(
            .invalidField, field: "priority",
            "priority must be from -\(configuration.maxPriority) to \(configuration.maxPriority) on this server (serve --max-priority)")
    }

    /// Refuses a launch admission would refuse, before anything is recorded.
    func refusal(_ decision: AdmissionQueue.Decision, key: String?) -> LaunchError? {
        switch decision {
        case .conflict(let holder):
            let status = jobsByID[holder]?.status.rawValue ?? "running"
            return LaunchError(
                .keyConflict, field: "key",
                "job \(holder) (\(status)) holds key \(key ?? ""); onConflict \"queue\" waits for it instead")
        case .full:
            return LaunchError(
                .queueFull, field: nil,
                "\(admission.waiting.count) jobs wait already, the most this server queues (serve --max-queued); try again once some have started")
        case .start, .wait:
            return nil
        }
    }

    /// Puts a recorded job in the queue and says so.
    func enqueue(_ id: String, _ spec: LaunchSpec, position: Int) {
        var lifecycle = JobLifecycle()
        let actions = lifecycle.handle(.enqueue)
        let reason = admission.reason(for: id)
        queued[id] = QueuedJob(spec: spec, lifecycle: lifecycle, announced: (position, reason, MonotonicClock.milliseconds()))
        update(id) {
            $0.queuePosition = position
            $0.queueReason = reason
        }
        if actions.contains(.announceStarted) { announce(id, status: lifecycle.status, first: true) }
        emit(id, .log(LogLine(.system, .info, "queued (\(AdmissionQueue.ordinal(position)))" + (reason.map { ": \($0)" } ?? ""))))
        // Those behind it moved down one.
        scheduleAdmission()
    }

    /// Starts an admitted job: its worktree first when it has one to make, else its agent.
    func begin(_ id: String, _ spec: LaunchSpec, lifecycle start: JobLifecycle) {
        var lifecycle = start
        let wasQueued = jobsByID[id]?.status == .queued
        update(id) {
            $0.status = lifecycle.status
            $0.admittedAt = WallClock.milliseconds()
            $0.queuePosition = nil
            $0.queueReason = nil
        }
        // A job that waited in the queue (a new launch's record says all this already):
        if wasQueued {
            // recorded as admitted before its agent can exist — a server killed from here on
            // finds it starting (its supervisor, once spawned, re-attached), never queued to run
            // again (attacker trial: a SIGKILL in this gap left an agent running uncounted);
            persist(id)
            // launched from its spec now, never again from its request, which is kept without
            // its prompt for a follow-up once it ended.
            let kept = store.loadRequest(id).flatMap { try? LaunchRequest(json: JSONParser.parse($0)) }.map { (try? keepRequestForFollowUps($0, of: id)) != nil }
            if kept != true { store.deleteRequest(id) }
        }
        if let worktree = jobsByID[id]?.worktree, worktree.state == .preparing {
            let actions = lifecycle.handle(.isolate)
            preparing[id] = PreparingJob(spec: spec, lifecycle: lifecycle)
            carryOutPreparing(actions, id)
        } else {
            spawn(id, spec, lifecycle: lifecycle)
        }
    }

    /// A job ended (or left the queue): its slot goes to the next waiting jobs.
    func releaseAdmission(_ id: String) {
        guard admission.release(id) else { return }
        scheduleAdmission()
    }

    /// Starts what fits and announces the queue's new order on a later turn, once per turn
    /// however many jobs ended in it.
    func scheduleAdmission() {
        guard !admissionScheduled else { return }
        admissionScheduled = true
        loop.schedule(afterMilliseconds: 0) { [weak self] in self?.admitWaiting() }
    }

    /// Starts every waiting job that fits now, then tells each still waiting its place.
    func admitWaiting() {
        admissionScheduled = false
        for id in admission.startReady() {
            guard var waiting = queued.removeValue(forKey: id), let job = jobsByID[id] else { continue }
            _ = waiting.lifecycle.handle(.admitted)
            let waited = Double(WallClock.milliseconds() - job.createdAt) / 1000
            queueWaits.count += 1
            queueWaits.totalMilliseconds += WallClock.milliseconds() - job.createdAt
            emit(id, .log(LogLine(.system, .info, "admitted after waiting \(Self.seconds(waited))")))
            begin(id, waiting.spec, lifecycle: waiting.lifecycle)
        }
        announceQueue()
    }

    /// Gives each waiting job its place (the job's fields at once) and sends the moves as
    /// `job:queue` events, spaced out far back in the queue (`QueuedJob.announceInterval`):
    /// a place not yet told is told by a later pass.
    func announceQueue() {
        let now = MonotonicClock.milliseconds()
        var owed = Int.max
        for (index, (ticket, reason)) in zip(admission.waiting, admission.reasons()).enumerated() {
            let position = index + 1
            guard let job = jobsByID[ticket.id], var waiting = queued[ticket.id] else { continue }
            if job.queuePosition != position || job.queueReason != reason {
                update(ticket.id) {
                    $0.queuePosition = position
                    $0.queueReason = reason
                }
            }
            guard waiting.announced.map({ $0.position != position || $0.reason != reason }) ?? true else { continue }
            let due = (waiting.announced?.at ?? 0) + QueuedJob.announceInterval(position: position)
            guard due <= now else {
                owed = min(owed, due)
                continue
            }
            waiting.announced = (position, reason, now)
            queued[ticket.id] = waiting
            emit(ticket.id, .queue(position: position, reason: reason))
        }
        // One pass when the first owed place is due; an earlier one replaces a later one (a
        // place near the front owed while one far back waits its 5 s).
        guard owed != Int.max, owed < queueAnnouncementDue ?? Int.max else { return }
        queueAnnouncementDue = owed
        loop.schedule(afterMilliseconds: owed - now) { [weak self] in
            guard let self, self.queueAnnouncementDue == owed else { return }
            self.queueAnnouncementDue = nil
            // A job ended and its slot is not yet given out: the admission pass due this turn
            // announces after it (now, a place would say "3 of 4 running" for a moment).
            guard !self.admissionScheduled else { return }
            self.announceQueue()
        }
    }

    /// Cancels a queued job: it ends `killed` without having run.
    func cancelQueued(_ id: String, _ waiting: QueuedJob, reason: KillReason) {
        var lifecycle = waiting.lifecycle
        let actions = lifecycle.handle(.killRequested(reason))
        guard actions.contains(.announceCompleted) else { return }
        queued[id] = nil
        let position = admission.position(of: id)
        releaseAdmission(id)
        endUnrun(id, lifecycle, reason: reason, said: "\(reason.why) while queued" + (position.map { " (\(AdmissionQueue.ordinal($0)))" } ?? "") + ": it never ran")
    }

    /// A queued job's end without having run: said, recorded, completed.
    private func endUnrun(_ id: String, _ lifecycle: JobLifecycle, reason: KillReason, said: String) {
        // A follow-up in an earlier job's worktree that never ran changed nothing: its copy of
        // the worktree's record is the shared worktree as it is (not `active`, which would hold
        // the job back from deletion as unreviewed work).
        let shared = jobsByID[id]?.worktree.flatMap { own in own.owner == id ? nil : newestChange(of: own.owner) ?? jobsByID[own.owner]?.worktree }
        update(id) {
            if let shared { $0.worktree = shared }
            $0.status = lifecycle.status
            $0.queuePosition = nil
            $0.queueReason = nil
            $0.result = .object([
                .init("isError", .bool(true)), .init("endReason", .string(reason.endReason)), .init("errors", .array([.string(said)])),
            ])
            // Planned, never made: nothing to review.
            if $0.worktree?.state == .preparing { $0.worktree?.state = .discarded }
        }
        endWithoutRunning(id, saying: LogLine(.system, .info, said))
        store.deleteRequest(id)
    }

    // MARK: restart

    /// A request as the operator's choices make it: its profile applied (with the profile's
    /// permission modes and env keys in the policy it is built under), then the budgets'
    /// defaults and maxima.
    func resolve(_ asked: LaunchRequest) throws(LaunchError) -> (LaunchRequest, LaunchPolicy) {
        var request = asked
        var policy = configuration.policy
        if let name = asked.profile {
            guard let profile = configuration.profiles[name] else {
                let known = configuration.profiles.keys.sorted()
                throw LaunchError(
                    .unknownProfile, field: "profile",
                    "no profile '\(name)' on this server" + (known.isEmpty ? " (it has none)" : "; profiles: \(known.joined(separator: ", "))"))
            }
            request = try profile.apply(to: asked)
            if let mode = profile.permissionMode { policy.claudePermissionMode = mode }
            if let sandbox = profile.codexSandbox { policy.codexSandbox = sandbox }
            policy.environment.allowed += profile.allowEnv + profile.env.keys.sorted()
        } else if asked.provider == LaunchProfile.anyProvider {
            throw LaunchError(.missingField, field: "provider", "provider is required")
        }
        return (try configuration.budgets.apply(to: request), policy)
    }

    /// Keeps the request a queued job will be launched from, by the next server if this one
    /// stops first (as the client sent it: profile and budgets are applied again then), with
    /// the job records: not in the job's directory, which its agent's neighbours could write.
    func saveRequest(_ request: LaunchRequest, of id: String) throws(LaunchError) {
        do {
            try store.saveRequest(JSONWriter.string(request.json), of: id)
        } catch {
            throw LaunchError(.insufficientStorage, field: nil, "cannot keep the queued job's request: \(error)")
        }
    }

    /// A job that was queued when the last server stopped waits again, at its place, with the
    /// command line its request makes under this server's policy (which may refuse it now:
    /// then it fails, saying why).
    func requeue(_ stored: Job) {
        var job = stored
        job.lastSeq = store.lastSeq(for: job.id)
        version += job.lastSeq
        jobsByID[job.id] = job
        order.append(job.id)
        let id = job.id
        // `agentgate kill` while no server ran: cancelled before it could start.
        if StopWithoutServer.wasRequested(in: store.jobDirectory(id)) {
            var lifecycle = JobLifecycle(phase: .queued)
            _ = lifecycle.handle(.killRequested(.request))
            return endUnrun(id, lifecycle, reason: .request, said: "kill requested while no server ran: it never ran")
        }
        let spec: LaunchSpec
        let request: LaunchRequest
        do throws(LaunchError) {
            (spec, request) = try queuedSpec(of: job)
        } catch {
            update(id) {
                $0.queuePosition = nil
                $0.queueReason = nil
                // Its worktree was planned, never made: nothing to review.
                if $0.worktree?.state == .preparing { $0.worktree?.state = .discarded }
            }
            store.deleteRequest(id)
            return fail(id, reason: "could not be queued again after the server restarted: \(error.message)", lifecycle: JobLifecycle(phase: .queued), event: .spawnFailed)
        }
        // Under this server's budgets and flags: the record says what will run.
        update(id) {
            $0.command = spec.arguments
            $0.budget = JobBudget(request)
        }
        persist(id)
        queued[id] = QueuedJob(spec: spec, lifecycle: JobLifecycle(phase: .queued))
        admission.requeue(ticket(for: job))
        emit(id, .log(LogLine(.system, .info, "server restarted: still queued")))
    }

    private func queuedSpec(of job: Job) throws(LaunchError) -> (LaunchSpec, LaunchRequest) {
        let file = store.jobDirectory(job.id) + "/" + Self.requestFileName
        let stored = store.loadRequest(job.id)
        let path = stored != nil ? "the job records" : file
        // A prompt of 1 MiB may take 6 MiB escaped; the env and argv a few more.
        guard let value = stored.flatMap({ try? JSONParser.parse($0) }) ?? SmallJSONFile.read(file, maxBytes: 16 << 20) else {
            throw LaunchError(.invalidField, field: nil, "its request is missing or unreadable")
        }
        let asked = try LaunchRequest(json: value)
        let (request, policy) = try resolve(asked)
        // What it asks for must be what the job's record shows (a request file of an earlier
        // build sits where an agent running as the same user could rewrite it).
        if let field = Self.mismatch(asked: asked, resolved: request, job) {
            throw LaunchError(
                .invalidField, field: field,
                "its request (\(path)) no longer matches its record (\(field)): it was changed after the job was queued, or the profile it names was")
        }
        let builder = CommandBuilder(policy: policy, capabilities: detector.current(), searchPath: detector.configuration.path)
        let outputFile = store.jobDirectory(job.id) + "/output.txt"
        let spec = try builder.build(request, outputFile: outputFile, runningIn: job.worktree?.workingDirectory)
        if (spec.workingDirectory ?? request.cwd) != job.cwd {
            throw LaunchError(.invalidField, field: "cwd", "its request (\(path)) no longer matches its record (cwd): it was changed after the job was queued")
        }
        return (spec, request)
    }

    /// The first field where a queued job's request says other than its record. Budgets the
    /// request left to the operator may differ (the operator's defaults may have changed).
    static func mismatch(asked: LaunchRequest, resolved request: LaunchRequest, _ job: Job) -> String? {
        let prompt = job.promptWasCut ? request.prompt.hasPrefix(job.prompt) : request.prompt == job.prompt
        func same<T: Equatable>(_ asked: T?, _ recorded: T?) -> Bool { asked == nil || asked == recorded }
        let fields: [(String, Bool)] = [
            ("provider", request.provider == job.provider), ("prompt", prompt), ("profile", request.profile == job.profile),
            ("model", request.model == job.model), ("label", request.label == job.label), ("project", request.project == job.project),
            ("key", request.key == job.key), ("priority", (request.priority ?? 0) == job.priority),
            ("timeoutSeconds", same(asked.timeoutSeconds, job.budget?.timeoutSeconds)), ("maxTurns", same(asked.maxTurns, job.budget?.maxTurns)),
            ("maxBudgetUsd", same(asked.maxBudgetUsd, job.budget?.maxBudgetUsd)),
        ]
        return fields.first { !$0.1 }?.0
    }

    public static func seconds(_ value: Double) -> String {
        value < 10 ? String(Double(Int(value * 10)) / 10) + " s" : "\(Int(value)) s"
    }
}

/// Jobs admitted from the queue, and how long they waited in all: `/metrics`.
public struct QueueWaits: Sendable, Equatable {
    public var count = 0
    public var totalMilliseconds = 0
}
