import Foundation
import Testing
import TestSupport

@testable import AgentCore

/// Worktree isolation through the job engine, with real git and real child processes: the
/// `preparing` stage, the change recorded when the agent exits, the review actions, and work
/// that nothing but a discard ever deletes.
@Suite struct WorktreeEngineTests {
    static func harness(_ configure: (inout JobManager.Configuration) -> Void = { _ in }) throws -> EngineHarness {
        try EngineHarness(configure: {
            $0.policy.allowCustomCommands = true
            configure(&$0)
        })
    }

    /// A `sh -c SCRIPT` job in `cwd`.
    static func launch(
        _ engine: EngineHarness, _ script: String, cwd: String? = nil, isolation: LaunchRequest.Isolation? = .worktree,
        baseRef: String? = nil, worktreeOf: String? = nil
    ) throws -> Job {
        try engine.manager.launch(
            LaunchRequest(
                provider: "custom", prompt: "", cwd: cwd, command: ["/bin/sh", "-c", script], isolation: isolation, baseRef: baseRef,
                worktreeOf: worktreeOf))
    }

    static func finished(_ engine: EngineHarness, _ id: String) throws -> Job {
        _ = try #require(engine.waitForCompletion(id))
        return try #require(engine.manager.details(of: id))
    }

    /// Runs the loop until `body` called back.
    static func await<Value>(_ engine: EngineHarness, _ body: (@escaping (Value) -> Void) -> Void) throws -> Value {
        var value: Value?
        body { value = $0 }
        _ = engine.spin(until: { value != nil }, milliseconds: 30_000)
        return try #require(value)
    }

    @Test func twoJobsOnOneRepositoryAtOnceEachSeeOnlyTheirOwnChange() throws {
        let engine = try Self.harness()
        let repository = GitRepository(files: ["shared.txt": "base\n", "src/main.c": "int main;\n"])
        let head = repository.head
        let first = try Self.launch(engine, "echo a > a.txt; sleep 0.5; ls; pwd", cwd: repository.path + "/src")
        let second = try Self.launch(engine, "echo b > b.txt; sleep 0.5; ls; pwd", cwd: repository.path + "/src")
        #expect(first.status == .preparing && second.status == .preparing)
        #expect(first.worktree?.branch == "agentgate/\(first.id)")
        let a = try Self.finished(engine, first.id)
        let b = try Self.finished(engine, second.id)
        #expect(a.status == .done && b.status == .done)
        #expect(a.worktree?.state == .ready && a.worktree?.summary == "1 file changed, +1 \u{2212}0")
        #expect(engine.manager.diff(of: a.id)?.files.map(\.path) == ["src/a.txt"])
        #expect(engine.manager.diff(of: b.id)?.files.map(\.path) == ["src/b.txt"])
        // Each ran in its own worktree, at the requested subdirectory, and saw only its own file.
        let aText = engine.logLines(of: a.id).map(\.text)
        #expect(aText.contains("a.txt") && !aText.contains("b.txt") && aText.contains(a.worktree!.path + "/src"))
        #expect(!engine.logLines(of: b.id).map(\.text).contains("a.txt"))
        #expect(a.worktree?.workingDirectory == a.cwd)
        // Lifecycle as viewers see it: started preparing, then running, then completed; the
        // summary in the log and in the final status line.
        let kinds = engine.events(of: a.id).compactMap { event -> String? in
            switch event.payload {
            case .started(let job): "started:\(job.status.rawValue)"
            case .status(let job): "status:\(job.status.rawValue)"
            case .completed(let job): "completed:\(job.status.rawValue)"
            default: nil
            }
        }
        #expect(kinds == ["started:preparing", "status:running", "completed:done"])
        #expect(aText.contains("1 file changed, +1 \u{2212}0 in agentgate/\(a.id)"))
        #expect(a.statusLine.hasSuffix(": 1 file changed, +1 \u{2212}0 in agentgate/\(a.id)"))
        // The user's checkout: untouched.
        #expect(repository.head == head && repository.status.isEmpty && repository.read("src/a.txt") == nil)
    }

    @Test func killedAndFailedJobsKeepTheirWorktreeAndTheirChangeIsRecorded() throws {
        let engine = try Self.harness()
        let repository = GitRepository()
        let killed = try Self.launch(engine, "echo half > half.txt; exec sleep 30", cwd: repository.path)
        #expect(engine.spin(until: { FileManager.default.fileExists(atPath: killed.worktree!.path + "/half.txt") }))
        try engine.manager.kill(killed.id)
        let failing = try Self.launch(engine, "echo broken > broken.txt; exit 3", cwd: repository.path)
        let k = try Self.finished(engine, killed.id)
        let f = try Self.finished(engine, failing.id)
        #expect(k.status == .killed && f.status == .failed)
        for job in [k, f] {
            #expect(FileManager.default.fileExists(atPath: job.worktree!.path))
            #expect(job.worktree?.state == .ready && job.worktree?.filesChanged == 1)
            #expect(repository.branches.contains(job.worktree!.branch))
        }
        #expect(engine.manager.diff(of: k.id)?.files.first?.path == "half.txt")
    }

    @Test func retentionAndDeletionNeverRemoveWorkNobodyAppliedOrDiscarded() throws {
        let engine = try Self.harness()
        let repository = GitRepository()
        let changed = try Self.finished(engine, try Self.launch(engine, "echo keep > keep.txt", cwd: repository.path).id)
        let unchanged = try Self.finished(engine, try Self.launch(engine, "true", cwd: repository.path).id)
        #expect(unchanged.worktree?.summary == "no changes")

        // Retention keeping nothing still keeps the job with unreviewed work.
        let pruned = engine.manager.prune(.init(maxAgeMilliseconds: 0, maxFinishedJobs: 0), now: WallClock.milliseconds() + 1_000)
        #expect(pruned == [unchanged.id])
        #expect(engine.manager.job(changed.id) != nil)
        #expect(throws: JobManager.DeleteError.unreviewedWork(changed.id, "agentgate/\(changed.id)")) { try engine.manager.delete(changed.id) }
        #expect(FileManager.default.fileExists(atPath: changed.worktree!.path))
        // The job with nothing to lose took its worktree and branch with it.
        #expect(engine.spin(until: { !FileManager.default.fileExists(atPath: unchanged.worktree!.path) }))
        #expect(engine.spin(until: { !repository.branches.contains("agentgate/\(unchanged.id)") }))

        // Discarded, it may go.
        let discarded = try Self.await(engine) { engine.manager.discardChange(of: changed.id, completion: $0) }
        #expect((try? discarded.get())?.worktree?.state == .discarded)
        #expect(!FileManager.default.fileExists(atPath: changed.worktree!.path))
        #expect(repository.branches == ["main"])
        try engine.manager.delete(changed.id)
    }

    @Test func aRestartKeepsEveryWorktreeAndReportsOnesWithoutAJob() throws {
        let data: String
        let worktreePath: String
        var keep: EngineHarness?
        do {
            let engine = try Self.harness()
            let repository = GitRepository()
            let job = try Self.finished(engine, try Self.launch(engine, "echo w > w.txt", cwd: repository.path).id)
            worktreePath = job.worktree!.path
            data = engine.data.path
            try FileManager.default.createDirectory(atPath: data + "/worktrees/ffffffffffffffff", withIntermediateDirectories: true)
            // A new engine on the same data dir, as after a restart.
            let store = try JobStore(dataDirectory: data)
            let again = JobManager(loop: engine.loop, store: store, detector: engine.manager.detector, configuration: engine.manager.configuration)
            try again.recover()
            #expect(again.job(job.id)?.worktree?.state == .ready)
            #expect(again.strayWorktrees() == [data + "/worktrees/ffffffffffffffff"])
            #expect(FileManager.default.fileExists(atPath: worktreePath))
            #expect(repository.branches.contains("agentgate/\(job.id)"))
            keep = engine
        }
        _ = keep
    }

    @Test func whereIsolationIsAskedForOrDefaultedAndWhereItIsRefused() throws {
        let repository = GitRepository()
        let plain = TemporaryDirectory("agentgate-plain")
        let engine = try Self.harness { $0.isolateIn = [repository.directory.path, plain.path] }
        #expect(throws: LaunchError(.notARepository, field: "cwd", "cwd '\(plain.path)' is not inside a git checkout; isolation \"worktree\" needs one")) {
            try Self.launch(engine, "true", cwd: plain.path)
        }
        // The operator's default: a worktree in a checkout, the cwd itself elsewhere or when asked.
        #expect(try Self.launch(engine, "true", cwd: repository.path, isolation: nil).worktree != nil)
        #expect(try Self.launch(engine, "true", cwd: repository.path, isolation: LaunchRequest.Isolation.none).worktree == nil)
        #expect(try Self.launch(engine, "true", cwd: plain.path, isolation: nil).worktree == nil)
        let elsewhere = try Self.harness()
        #expect(try Self.launch(elsewhere, "true", cwd: repository.path, isolation: nil).worktree == nil)
        // baseRef alone asks for a worktree.
        #expect(try Self.launch(elsewhere, "true", cwd: repository.path, isolation: nil, baseRef: "main").worktree?.baseRef == "main")
        #expect(throws: LaunchError.self) { try Self.launch(elsewhere, "true", cwd: repository.path, isolation: LaunchRequest.Isolation.none, baseRef: "main") }
        #expect(throws: LaunchError.self) { try Self.launch(elsewhere, "true", cwd: repository.path, baseRef: "-x") }
        for harness in [engine, elsewhere] {
            for job in harness.manager.jobs { #expect(harness.waitForCompletion(job.id)?.status == .done) }
        }
    }

    @Test func aBaseThatNamesNothingFailsTheJobWithGitsWordsAndItCompletesOnce() throws {
        let engine = try Self.harness()
        let repository = GitRepository()
        let job = try Self.finished(engine, try Self.launch(engine, "echo never", cwd: repository.path, baseRef: "no-such-ref").id)
        #expect(job.status == .failed && job.pid == nil)
        #expect(job.errorTail?.contains("no-such-ref") == true)
        #expect(engine.logLines(of: job.id).contains { $0.kind == .error && $0.text.contains("cannot make the job's worktree") })
        #expect(engine.events(of: job.id).filter { if case .completed = $0.payload { true } else { false } }.count == 1)
        #expect(!engine.logLines(of: job.id).map(\.text).contains("never"))
        // Nothing was made, so nothing holds the job back from retention or deletion.
        #expect(job.worktree?.state == .discarded && job.worktree?.holdsUnreviewedWork == false)
        try engine.manager.delete(job.id)
    }

    @Test func aFollowUpContinuesTheChangeInTheSameWorktreeAndApplyTakesTheWholeOfIt() throws {
        let engine = try Self.harness()
        let repository = GitRepository(files: ["notes.txt": "one\n"])
        let first = try Self.finished(engine, try Self.launch(engine, "echo two >> notes.txt", cwd: repository.path).id)
        let follow = try Self.launch(engine, "echo three >> notes.txt; sleep 0.5", isolation: nil, worktreeOf: first.id)
        #expect(follow.worktree?.path == first.worktree?.path && follow.worktree?.owner == first.id)
        // One job at a time in a worktree; and no review while one works in it.
        #expect(throws: LaunchError.self) { try Self.launch(engine, "true", isolation: nil, worktreeOf: first.id) }
        let busy = try Self.await(engine) { engine.manager.discardChange(of: first.id, completion: $0) }
        guard case .failure(.busy) = busy else { Issue.record("discarded under a running job: \(busy)"); return }
        let second = try Self.finished(engine, follow.id)
        #expect(second.status == .done)
        #expect(second.worktree?.summary == "1 file changed, +2 \u{2212}0")

        let applied = try Self.await(engine) { engine.manager.applyChange(of: first.id, mode: .merge, completion: $0) }
        #expect((try? applied.get())?.worktree?.state == .applied)
        #expect(repository.read("notes.txt") == "one\ntwo\nthree\n")
        #expect(engine.manager.job(second.id)?.worktree?.state == .applied)
        // What was applied is the chain's newest change, and it is said where it went.
        #expect(engine.manager.newestChange(of: first.id)?.summary == "1 file changed, +2 \u{2212}0")
        #expect(engine.manager.job(first.id)?.worktree?.appliedAs == "merge" && engine.manager.job(first.id)?.worktree?.appliedTo == "main")
        let again = try Self.await(engine) { engine.manager.applyChange(of: second.id, mode: .merge, completion: $0) }
        guard case .failure(.alreadyApplied) = again else { Issue.record("applied twice: \(again)"); return }
        // Discarded after it was applied: that it was applied is kept.
        let gone = try Self.await(engine) { engine.manager.discardChange(of: first.id, completion: $0) }
        #expect((try? gone.get())?.worktree?.state == .discarded && (try? gone.get())?.worktree?.appliedAs == "merge")
    }

    /// A follow-up cancelled while it waited in the queue changed nothing: its record shows the
    /// shared worktree as it is, and it can be deleted like any finished job.
    @Test func aFollowUpCancelledWhileQueuedLeavesTheWorktreeAsItWas() throws {
        let engine = try Self.harness { $0.admission.maxRunning = 1 }
        let repository = GitRepository(files: ["notes.txt": "one\n"])
        let first = try Self.finished(engine, try Self.launch(engine, "echo two >> notes.txt", cwd: repository.path).id)
        let blocker = try Self.launch(engine, "sleep 30", cwd: repository.path, isolation: LaunchRequest.Isolation.none)
        let follow = try Self.launch(engine, "echo three >> notes.txt", isolation: nil, worktreeOf: first.id)
        #expect(follow.status == .queued && follow.worktree?.state == .active)
        try engine.manager.kill(follow.id)
        let cancelled = try Self.finished(engine, follow.id)
        #expect(cancelled.status == .killed && cancelled.worktree == first.worktree, "\(String(describing: cancelled.worktree))")
        try engine.manager.delete(follow.id)
        try engine.manager.kill(blocker.id)
        engine.waitForCompletion(blocker.id)
    }

    @Test func aJobKilledWhileItsWorktreeIsMadeNeverRunsAndLeavesNothingToReview() throws {
        let engine = try Self.harness()
        let repository = GitRepository()
        let witness = repository.directory.file("ran")
        let launched = try Self.launch(engine, "touch '\(witness)'", cwd: repository.path)
        try engine.manager.kill(launched.id)
        #expect(engine.manager.job(launched.id)?.status == .stopping)
        let job = try Self.finished(engine, launched.id)
        #expect(job.status == .killed && job.pid == nil)
        #expect(!FileManager.default.fileExists(atPath: witness))
        #expect(job.worktree?.state == .ready && job.worktree?.summary == "no changes" && job.worktree?.holdsUnreviewedWork == false)
        #expect(engine.manager.diff(of: job.id)?.filesChanged == 0)
        #expect(engine.logLines(of: job.id).contains { $0.text.contains("the job stops once its worktree is made") })
        // Nothing to lose: deleting the job takes its worktree and branch with it.
        try engine.manager.delete(job.id)
        #expect(engine.spin(until: { !repository.branches.contains("agentgate/\(job.id)") }))
        #expect(!FileManager.default.fileExists(atPath: job.worktree!.path))
    }

    @Test func aConflictingApplyNamesTheFilesAndChangesNothing() throws {
        let engine = try Self.harness()
        let repository = GitRepository(files: ["a.txt": "one\n"])
        let job = try Self.finished(engine, try Self.launch(engine, "echo job >> a.txt", cwd: repository.path).id)
        repository.write(["a.txt": "one\nuser\n"])
        repository.commit("user")
        let head = repository.head
        let result = try Self.await(engine) { engine.manager.applyChange(of: job.id, mode: .merge, completion: $0) }
        guard case .failure(.failed(let failure)) = result else { Issue.record("applied over a conflict: \(result)"); return }
        #expect(failure.conflicts == ["a.txt"])
        #expect(repository.head == head && repository.status.isEmpty)
        #expect(engine.manager.job(job.id)?.worktree?.state == .ready)
        let unknown = try Self.await(engine) { engine.manager.applyChange(of: "0000000000000000", mode: .patch, completion: $0) }
        #expect(unknown == .failure(.notFound("0000000000000000")))
    }

    @Test func theCompletionHookIsToldTheWorktreeBranchAndDiff() throws {
        let engine = try Self.harness {
            $0.onComplete = ExternalHook.Configuration(
                command: #"printf '{"w":"%s","b":"%s","d":"%s","bytes":%s}' "$AGENTGATE_WORKTREE" "$AGENTGATE_BRANCH" "$AGENTGATE_DIFF" "$(wc -c < "$AGENTGATE_DIFF")""#)
        }
        let repository = GitRepository()
        let job = try Self.finished(engine, try Self.launch(engine, "echo h > h.txt", cwd: repository.path).id)
        let hook = job.result?["hook"]
        #expect(job.hookError == nil)
        #expect(hook?["w"]?.stringValue == job.worktree?.path)
        #expect(hook?["b"]?.stringValue == "agentgate/\(job.id)")
        #expect(hook?["d"]?.stringValue == engine.manager.diffPath(job.id))
        #expect(hook?["bytes"]?.intValue == engine.manager.diff(of: job.id)?.patchBytes)
        #expect(job.result?["diff"]?["summary"]?.stringValue == "1 file changed, +1 \u{2212}0")
    }

    @Test func commandsAnAgentLeftInTheRepositorysConfigNeverRunWhenTheNextWorktreeIsMade() throws {
        let engine = try Self.harness()
        let repository = GitRepository(files: ["a.txt": "a\n"])
        let witness = repository.directory.file("smudge-ran")
        let first = try Self.finished(engine, try Self.launch(engine, "echo one > one.txt", cwd: repository.path).id)
        #expect(first.worktree?.state == .ready)
        // What an agent (or anything) left: a smudge filter for every file.
        repository.git("config", "filter.x.smudge", "touch '\(witness)'; cat")
        repository.directory.write("repo/.git/info/attributes", "* filter=x\n")
        let second = try Self.finished(engine, try Self.launch(engine, "echo two > two.txt", cwd: repository.path).id)
        #expect(second.status == .failed)
        #expect(second.errorTail?.contains("filter.x.smudge") == true, "\(second.errorTail ?? "")")
        #expect(!FileManager.default.fileExists(atPath: witness))
    }
}
