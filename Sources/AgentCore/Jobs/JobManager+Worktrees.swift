#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A job waiting for its worktree: the command line it will run, and its lifecycle so far.
struct PreparingJob {
    var spec: LaunchSpec
    var lifecycle: JobLifecycle
}

/// Worktree isolation in the job engine: which launches get a worktree, the `preparing`
/// stage, the change recorded when the agent exits, and the review actions (apply,
/// discard). The git work itself is `WorktreeOperations`, run on `worktreeQueue`.
extension JobManager {
    public enum ReviewError: Error, Equatable, Sendable {
        case notFound(String)
        /// The job has no worktree, or its worktree was discarded, or its change was never recorded.
        case noWorktree(String)
        /// A job works in the worktree now, or another apply or discard is under way.
        case busy(String)
        /// git refused; with the conflicting files for an apply.
        case failed(WorktreeOperations.Failure)
        /// The newest change of the worktree was applied before.
        case alreadyApplied(String)
    }

    /// Git tasks (making worktrees, recording changes, applying, discarding) queued or running.
    public var worktreeTasksPending: Int { worktreeQueue.pending }

    /// Where worktrees are made.
    public var worktreesDirectory: String { configuration.worktreesDirectory ?? store.dataDirectory + "/worktrees" }

    /// The job's unified diff, once its change was recorded.
    public func diffPath(_ id: String) -> String { store.jobDirectory(id) + "/diff.patch" }

    /// The job's whole per-file list (`WorktreeDiff.json`); the job's result holds the first
    /// files only (`WorktreeDiff.resultJSON`), so a change of thousands of long paths cannot
    /// make every read of the job a megabyte.
    public func diffListPath(_ id: String) -> String { store.jobDirectory(id) + "/diff.json" }

    /// The worktree a launch runs in, nil when it runs in its cwd; throws for a request that
    /// asks for isolation where there can be none.
    func worktreePlan(for request: LaunchRequest, id: String, cwd: String?) throws(LaunchError) -> Worktree? {
        if let source = request.worktreeOf {
            guard let earlier = jobsByID[source] else { throw LaunchError(.unknownJob, field: "worktreeOf", "no job \(source)") }
            guard var worktree = earlier.worktree else {
                throw LaunchError(.noWorktree, field: "worktreeOf", "job \(source) did not run in a worktree")
            }
            guard worktree.state != .discarded, worktree.baseCommit != nil, WorktreeOperations.isGenuineDirectory(worktree.path) else {
                throw LaunchError(.noWorktree, field: "worktreeOf", "the worktree of job \(source) was discarded or is gone")
            }
            if let busy = jobWorking(in: worktree.owner) {
                throw LaunchError(.worktreeBusy, field: "worktreeOf", "job \(busy) works in that worktree now; wait for it to end")
            }
            if reviewing.contains(worktree.owner) {
                throw LaunchError(.worktreeBusy, field: "worktreeOf", "that worktree is being applied or discarded")
            }
            worktree.state = .active
            worktree.headCommit = nil
            worktree.summary = nil
            worktree.filesChanged = nil
            worktree.additions = nil
            worktree.deletions = nil
            return worktree
        }
        let directory = cwd ?? FileManager.default.currentDirectoryPath
        let checkout = WorktreeOperations.checkout(containing: directory)
        let wanted: Bool
        switch request.isolation {
        case LaunchRequest.Isolation.worktree?: wanted = true
        case LaunchRequest.Isolation.none?: wanted = false
        case nil:
            wanted = request.baseRef != nil
                || (checkout != nil && configuration.isolateIn.contains { WorkspacePolicy.isInside(directory, $0) })
        }
        guard wanted else { return nil }
        guard let checkout else {
            throw LaunchError(
                .notARepository, field: "cwd", "cwd '\(directory)' is not inside a git checkout; isolation \"worktree\" needs one")
        }
        guard worktreeOperations != nil else {
            throw LaunchError(.invalidField, field: "isolation", "git is not installed on this machine; isolation \"worktree\" needs it")
        }
        let subdirectory = directory == checkout ? "" : String(directory.dropFirst(checkout == "/" ? 1 : checkout.count + 1))
        // Its real path (the data dir may be reached through a link): a worktree is later
        // checked to be that directory itself, not a link an agent put in its place.
        let base = worktreesDirectory
        let above = (base as NSString).deletingLastPathComponent
        let resolved = WorkspacePolicy.realPath(base) ?? ((WorkspacePolicy.realPath(above) ?? above) + "/" + (base as NSString).lastPathComponent)
        return Worktree(
            path: resolved + "/" + id, branch: "agentgate/" + id, repository: checkout, subdirectory: subdirectory,
            baseRef: request.baseRef ?? "HEAD", owner: id)
    }

    /// The unfinished job working in the worktree of `owner`, if any.
    func jobWorking(in owner: String) -> String? {
        for id in running.keys.sorted() + preparing.keys.sorted() + queued.keys.sorted() where jobsByID[id]?.worktree?.owner == owner {
            return id
        }
        return nil
    }

    func sharesWorktreeWithAnotherJob(_ id: String, _ worktree: Worktree) -> Bool {
        order.contains { $0 != id && jobsByID[$0]?.worktree?.owner == worktree.owner }
    }

    /// Does what a preparing job's lifecycle asked for.
    func carryOutPreparing(_ actions: [JobLifecycle.Action], _ id: String) {
        for action in actions {
            guard let waiting = preparing[id] else { return }
            switch action {
            case .announceStarted:
                announce(id, status: waiting.lifecycle.status, first: true)
            case .announceStatus:
                announce(id, status: waiting.lifecycle.status, first: false)
            case .prepare:
                prepareWorktree(id)
            case .spawn:
                preparing[id] = nil
                spawn(id, waiting.spec, lifecycle: waiting.lifecycle)
            case .announceCompleted:
                // Killed while its worktree was made: it ends without having run.
                preparing[id] = nil
                update(id) {
                    // Made but never worked in: nothing to review, so nothing holds it back.
                    $0.worktree?.recordNothing()
                    $0.status = waiting.lifecycle.status
                    $0.result = .object([.init("isError", .bool(true)), .init("endReason", .string(waiting.lifecycle.killReason?.endReason ?? "killed"))])
                    if $0.worktree?.headCommit != nil {
                        $0.result = $0.result?.setting("diff", to: WorktreeDiff(files: [], patchBytes: 0, truncated: false, capBytes: configuration.maxDiffBytes).json)
                    }
                }
                if jobsByID[id]?.worktree?.headCommit != nil { _ = FileManager.default.createFile(atPath: diffPath(id), contents: nil) }
                endWithoutRunning(id, saying: LogLine(.system, .info, "stopped before its agent started: it changed nothing"))
            case .signalGroup, .cancelHook, .finalize:
                break
            }
        }
    }

    private func prepareWorktree(_ id: String) {
        guard let operations = worktreeOperations, let worktree = jobsByID[id]?.worktree else { return }
        emit(id, .log(LogLine(.system, .info, "making a worktree on branch \(worktree.branch) from \(worktree.baseRef) of \(worktree.repository)")))
        // The setup the newest earlier worktree of this repository was made with.
        let previous = order.reversed().lazy.compactMap { self.jobsByID[$0]?.worktree }
            .first { $0.repository == worktree.repository && $0.owner != worktree.owner && $0.gitSetup != nil }?.gitSetup
        worktreeQueue.perform(in: worktree.repository, { operations.create(worktree, previousSetup: previous) }) { [weak self] result in
            guard let self, var waiting = self.preparing[id] else { return }
            switch result {
            case .success(let made):
                self.update(id) { $0.worktree = made }
                self.persist(id)
                let base = made.baseCommit.map { String($0.prefix(12)) } ?? "?"
                self.emit(id, .log(LogLine(.system, .info, "worktree ready: \(made.workingDirectory) (\(made.branch) at \(base))")))
                let actions = waiting.lifecycle.handle(.prepared)
                self.preparing[id] = waiting
                self.carryOutPreparing(actions, id)
            case .failure(let failure):
                self.preparing[id] = nil
                // git made nothing (it cleans up a worktree it could not finish): nothing to keep.
                self.update(id) { $0.worktree?.state = .discarded }
                self.fail(id, reason: "cannot make the job's worktree: \(failure.message)", lifecycle: waiting.lifecycle, event: .prepareFailed)
            }
        }
    }

    /// Commits what the agent left in its worktree and takes the diff (off the loop), records
    /// it with the job, then `then`.
    func recordChange(_ id: String, _ worktree: Worktree, then: @escaping () -> Void) {
        guard let operations = worktreeOperations, let job = jobsByID[id] else { return then() }
        let firstLine = job.prompt.split(whereSeparator: \.isNewline).first.map { String($0.prefix(72)) } ?? ""
        let title = job.label ?? firstLine.trimmingCharacters(in: .whitespaces)
        let message = "agentgate job \(id)" + (title.isEmpty ? "" : ": \(title)")
        let patchPath = diffPath(id)
        let listPath = diffListPath(id)
        let cap = configuration.maxDiffBytes
        worktreeQueue.perform(in: worktree.repository, { () -> Result<(Worktree, WorktreeDiff), WorktreeOperations.Failure> in
            let recorded = operations.record(worktree, message: message, patchPath: patchPath, capBytes: cap)
            if case .success(let (_, diff)) = recorded {
                try? Data(JSONWriter.serialize(diff.json)).write(to: URL(fileURLWithPath: listPath), options: .atomic)
            }
            return recorded
        }) {
            [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let (recorded, diff)):
                self.update(id) {
                    $0.worktree = recorded
                    $0.result = ($0.result ?? .object([])).setting("diff", to: diff.resultJSON)
                }
                let cut = diff.truncated ? " (diff cut at \(ByteCount.text(diff.capBytes)))" : ""
                self.emit(id, .log(LogLine(.system, .info, "\(diff.summary) in \(recorded.branch)\(cut)")))
            case .failure(let failure):
                self.emit(id, .log(LogLine(.system, .error, "the job's change could not be recorded: \(failure.message); its worktree \(worktree.path) is kept")))
            }
            self.persist(id)
            FailPoint.reach(.changeRecorded)
            then()
        }
    }

    /// The change a finished job made (its per-file summary), nil when none was recorded.
    public func diff(of id: String) -> WorktreeDiff? {
        details(of: id)?.result?["diff"].flatMap(WorktreeDiff.init(json:))
    }

    /// Applies the job's change to the checkout it was launched in (`completion` on the loop).
    public func applyChange(of id: String, mode: WorktreeOperations.ApplyMode, completion: @escaping (Result<Job, ReviewError>) -> Void) {
        let worktree: Worktree
        switch reviewable(id) {
        case .failure(let error): return completion(.failure(error))
        case .success(let found): worktree = found
        }
        guard worktree.headCommit != nil, worktree.state == .ready || worktree.state == .applied else {
            return completion(.failure(.noWorktree("job \(id)'s change was never recorded (its agent did not finish in this worktree)")))
        }
        guard worktree.state != .applied else {
            return completion(.failure(.alreadyApplied("job \(id)'s change was applied already (\(worktree.appliedAs ?? "merge") into \(worktree.appliedTo ?? worktree.repository))")))
        }
        guard let operations = worktreeOperations else { return completion(.failure(.failed(.init("git is not installed")))) }
        let summary = worktree.summary ?? "its change"
        let message = "Merge agentgate job \(worktree.owner) (\(worktree.branch)): \(summary)"
        review(worktree, then: completion, id: id, work: { operations.apply(worktree, mode: mode, message: message) })
    }

    /// Removes the job's worktree and branch: its change is gone unless it was applied.
    public func discardChange(of id: String, completion: @escaping (Result<Job, ReviewError>) -> Void) {
        let worktree: Worktree
        switch reviewable(id) {
        case .failure(let error): return completion(.failure(error))
        case .success(let found): worktree = found
        }
        guard let operations = worktreeOperations else { return completion(.failure(.failed(.init("git is not installed")))) }
        review(worktree, then: completion, id: id, work: { operations.discard(worktree) })
    }

    /// The newest recorded change in the worktree of job `id` (a follow-up's, in a chain): what
    /// an apply brings in.
    public func newestChange(of id: String) -> Worktree? {
        guard let owner = jobsByID[id]?.worktree?.owner else { return nil }
        return order.reversed().lazy.compactMap { self.jobsByID[$0]?.worktree }.first { $0.owner == owner && $0.headCommit != nil }
    }

    /// The newest record of the job's worktree, when a review action may run on it now.
    private func reviewable(_ id: String) -> Result<Worktree, ReviewError> {
        guard let job = jobsByID[id] else { return .failure(.notFound(id)) }
        guard let own = job.worktree else { return .failure(.noWorktree("job \(id) did not run in a worktree")) }
        guard own.state != .discarded else { return .failure(.noWorktree("job \(id)'s worktree was discarded")) }
        if let busy = jobWorking(in: own.owner) {
            return .failure(.busy("job \(busy) works in this worktree now; kill it or wait for it to end"))
        }
        guard !reviewing.contains(own.owner) else { return .failure(.busy("an apply or discard of this worktree is under way")) }
        // A follow-up's record holds the latest change of a shared worktree.
        return .success(newestChange(of: id) ?? own)
    }

    private func review(
        _ worktree: Worktree, then completion: @escaping (Result<Job, ReviewError>) -> Void, id: String,
        work: @escaping @Sendable () -> Result<Worktree, WorktreeOperations.Failure>
    ) {
        reviewing.insert(worktree.owner)
        worktreeQueue.perform(in: worktree.repository, work) { [weak self] result in
            guard let self else { return }
            self.reviewing.remove(worktree.owner)
            switch result {
            case .success(let done):
                self.setWorktreeState(owner: worktree.owner, done)
                completion(self.jobsByID[id].map { .success(self.details(of: $0.id) ?? $0) } ?? .failure(.notFound(id)))
            case .failure(let failure):
                completion(.failure(.failed(failure)))
            }
        }
    }

    /// Sets the state of the worktree shared by every job of `owner` (and how it was applied),
    /// in memory and in the store.
    private func setWorktreeState(owner: String, _ done: Worktree) {
        func change(_ job: inout Job) {
            job.worktree?.state = done.state
            if done.appliedAs != nil {
                job.worktree?.appliedAs = done.appliedAs
                job.worktree?.appliedTo = done.appliedTo
            }
            // Discarded: there is nothing for a follow-up to work on.
            if job.status.isFinished { job.acceptsMessages = mayContinue(job) }
        }
        for id in order where jobsByID[id]?.worktree?.owner == owner {
            change(&jobsByID[id]!)
            if jobsByID[id]?.isCompact == true {
                if var stored = store.loadJob(id) {
                    change(&stored)
                    try? store.save(stored)
                }
            } else {
                persist(id)
            }
        }
        // Pollers of the job list see the change (`?since=<version>`).
        version += 1
    }

    /// Directories in the worktrees directory that belong to no job (its record was deleted
    /// by hand, or another data dir's): reported at start, never deleted.
    public func strayWorktrees() -> [String] {
        let owners = Set(order.compactMap { jobsByID[$0]?.worktree?.owner })
        let names = (try? FileManager.default.contentsOfDirectory(atPath: worktreesDirectory)) ?? []
        return names.filter { !owners.contains($0) }.sorted().map { worktreesDirectory + "/" + $0 }
    }

    /// After a job was deleted: its worktree and branch go too when they hold nothing to
    /// lose (applied, or no change) and no other job shares them.
    func removeWorktreeOfDeletedJob(_ worktree: Worktree) {
        guard worktree.state != .discarded, !worktree.holdsUnreviewedWork, let operations = worktreeOperations,
            !order.contains(where: { jobsByID[$0]?.worktree?.owner == worktree.owner })
        else { return }
        worktreeQueue.perform(in: worktree.repository, { operations.discard(worktree) }) { _ in }
    }
}
