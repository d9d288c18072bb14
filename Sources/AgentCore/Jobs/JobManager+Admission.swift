#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// A job admission control holds back, with the command line it will run.
struct QueuedJob {
    var spec: LaunchSpec
    var lifecycle: JobLifecycle
}

/// Admission control in the job engine: a launch over a cap waits `queued` (its request kept
/// in `request.json`, so the queue survives a restart), every move of the queue tells each
/// waiting job its new place (`job:queue`), and a job that ends lets the next ones start.
/// The rules themselves are `AdmissionQueue`'s.
extension JobManager {
    /// The request a queued job keeps for the next server.
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
        queued[id] = QueuedJob(spec: spec, lifecycle: lifecycle)
        let reason = admission.reason(for: id)
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
        update(id) {
            $0.admittedAt = WallClock.milliseconds()
            $0.queuePosition = nil
            $0.queueReason = nil
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
        for (index, ticket) in admission.waiting.enumerated() {
            let position = index + 1
            let reason = admission.reason(for: ticket.id)
            guard let job = jobsByID[ticket.id], job.queuePosition != position || job.queueReason != reason else { continue }
            update(ticket.id) {
                $0.queuePosition = position
                $0.queueReason = reason
            }
            emit(ticket.id, .queue(position: position, reason: reason))
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
        emit(id, .log(LogLine(.system, .info, "\(reason.why) while queued" + (position.map { " (\(AdmissionQueue.ordinal($0)))" } ?? "") + ": it never ran")))
        update(id) {
            $0.status = lifecycle.status
            $0.endedAt = WallClock.milliseconds()
            $0.queuePosition = nil
            $0.queueReason = nil
            $0.result = .object([.init("isError", .bool(true)), .init("endReason", .string(reason.endReason))])
            // Planned, never made: nothing to review.
            if $0.worktree?.state == .preparing { $0.worktree?.state = .discarded }
        }
        emit(id, .completed(jobsByID[id]!))
        persist(id)
        flushLogs()
        store.events.close(job: id)
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

    /// Writes the request a queued job will be launched from, by the next server if this one
    /// stops first (as the client sent it: profile and budgets are applied again then).
    func saveRequest(_ request: LaunchRequest, of id: String) throws(LaunchError) {
        let path = store.jobDirectory(id) + "/" + Self.requestFileName
        guard SmallJSONFile.write(request.json, to: path) else {
            throw LaunchError(.insufficientStorage, field: nil, "cannot keep the queued job's request in \(store.dataDirectory): \(String(cString: strerror(errno)))")
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
        let spec: LaunchSpec
        do throws(LaunchError) {
            spec = try queuedSpec(of: job)
        } catch {
            // Its worktree was planned, never made: nothing to review.
            update(id) { if $0.worktree?.state == .preparing { $0.worktree?.state = .discarded } }
            return fail(id, reason: "could not be queued again after the server restarted: \(error.message)", lifecycle: JobLifecycle(phase: .queued), event: .spawnFailed)
        }
        queued[id] = QueuedJob(spec: spec, lifecycle: JobLifecycle(phase: .queued))
        admission.requeue(ticket(for: job))
        emit(id, .log(LogLine(.system, .info, "server restarted: still queued")))
    }

    private func queuedSpec(of job: Job) throws(LaunchError) -> LaunchSpec {
        let path = store.jobDirectory(job.id) + "/" + Self.requestFileName
        // A prompt of 1 MiB may take 6 MiB escaped; the env and argv a few more.
        guard let value = SmallJSONFile.read(path, maxBytes: 16 << 20) else { throw LaunchError(.invalidField, field: nil, "its request (\(path)) is missing or unreadable") }
        let (request, policy) = try resolve(LaunchRequest(json: value))
        let builder = CommandBuilder(policy: policy, capabilities: detector.current(), searchPath: detector.configuration.path)
        let outputFile = store.jobDirectory(job.id) + "/output.txt"
        return try builder.build(request, outputFile: outputFile, runningIn: job.worktree?.workingDirectory)
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
