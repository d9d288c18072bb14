import Testing

@testable import AgentCore

/// Every transition of a job's lifecycle, with no process: events in, actions and status out.
@Suite struct JobLifecycleTests {
    /// Feeds `events` in order; returns every action and the status after each event.
    static func run(_ events: [JobLifecycle.Event], from phase: JobLifecycle.Phase = .starting) -> (JobLifecycle, [[JobLifecycle.Action]], [JobStatus]) {
        var lifecycle = JobLifecycle(phase: phase)
        var actions: [[JobLifecycle.Action]] = []
        var statuses: [JobStatus] = []
        for event in events {
            actions.append(lifecycle.handle(event))
            statuses.append(lifecycle.status)
        }
        return (lifecycle, actions, statuses)
    }

    @Test func aJobThatSucceedsRunsThenFinalizesThenIsDone() {
        let (lifecycle, actions, statuses) = Self.run([.spawned, .exited(succeeded: true), .finalized])
        #expect(JobLifecycle().status == .starting)
        #expect(actions == [[.announceStarted], [.finalize], [.announceCompleted]])
        // The job shows running while its results are ingested and its hook runs.
        #expect(statuses == [.running, .running, .done])
        #expect(lifecycle.isFinished && lifecycle.phase == .finished(.done))
    }

    @Test func anAgentThatExitsBadlyOrReportsAnErrorFails() {
        let (_, _, statuses) = Self.run([.spawned, .exited(succeeded: false), .finalized])
        #expect(statuses.last == .failed)
    }

    @Test func aJobThatCannotStartFailsAtOnceAndIsAnnouncedStartedThenCompleted() {
        let (_, actions, statuses) = Self.run([.spawnFailed])
        #expect(actions == [[.announceStarted, .announceCompleted]])
        #expect(statuses == [.failed])
    }

    @Test func aKillWhileRunningStopsTheGroupAndTheJobEndsKilledWhateverTheAgentSaid() {
        let (lifecycle, actions, statuses) = Self.run([.spawned, .killRequested(.request), .exited(succeeded: true), .finalized])
        #expect(actions == [[.announceStarted], [.announceStatus, .signalGroup], [.finalize], [.announceCompleted]])
        #expect(statuses == [.running, .stopping, .stopping, .killed])
        #expect(lifecycle.killReason == .request)
    }

    @Test func aSecondKillIsHarmlessAndTheFirstReasonWins() {
        let (lifecycle, actions, _) = Self.run([.spawned, .killRequested(.outputLimit(10)), .killRequested(.request)])
        #expect(actions.last == [])
        #expect(lifecycle.killReason == .outputLimit(10))
    }

    @Test func aLimitOrAStorageFaultFailsTheJobInsteadOfKillingIt() {
        for reason in [JobManager.KillReason.outputLimit(1 << 30), .storage("no space left on device")] {
            let (_, _, statuses) = Self.run([.spawned, .killRequested(reason), .exited(succeeded: false), .finalized])
            #expect(statuses.last == .failed)
        }
        for reason in [JobManager.KillReason.request, .serverStopping, .interrupted] {
            let (_, _, statuses) = Self.run([.spawned, .killRequested(reason), .exited(succeeded: false), .finalized])
            #expect(statuses.last == .killed)
        }
    }

    @Test func aKillWhileTheHookRunsStopsTheHookNotTheAgentAndStillCompletesOnce() {
        let (lifecycle, actions, statuses) = Self.run([.spawned, .exited(succeeded: true), .killRequested(.request), .killRequested(.request), .finalized, .finalized])
        #expect(actions == [[.announceStarted], [.finalize], [.announceStatus, .cancelHook], [], [.announceCompleted], []])
        #expect(statuses == [.running, .running, .stopping, .stopping, .killed, .killed])
        #expect(lifecycle.phase == .finished(.killed))
    }

    @Test func theHookIsShownTheStatusTheJobIsAboutToEndWith() {
        var lifecycle = JobLifecycle()
        _ = lifecycle.handle(.spawned)
        _ = lifecycle.handle(.exited(succeeded: true))
        #expect(lifecycle.endingStatus == .done && lifecycle.status == .running)
        _ = lifecycle.handle(.killRequested(.storage("full")))
        #expect(lifecycle.endingStatus == .failed)
    }

    @Test func aKillBeforeTheSpawnIsHeldAndCarriedOutWhenTheProcessExists() {
        let (_, actions, statuses) = Self.run([.killRequested(.request), .spawned, .exited(succeeded: true), .finalized])
        #expect(actions == [[], [.announceStarted, .signalGroup], [.finalize], [.announceCompleted]])
        #expect(statuses == [.starting, .stopping, .stopping, .killed])
    }

    // MARK: queued (admission control)

    @Test func aQueuedJobIsAnnouncedQueuedThenStartsOnceAdmittedAndSaysItRuns() {
        let (lifecycle, actions, statuses) = Self.run([.enqueue, .admitted, .spawned, .exited(succeeded: true), .finalized])
        // Announced once, when it was queued: running is a status change.
        #expect(actions == [[.announceStarted], [], [.announceStatus], [.finalize], [.announceCompleted]])
        #expect(statuses == [.queued, .starting, .running, .running, .done])
        #expect(lifecycle.phase == .finished(.done))
    }

    @Test func aQueuedJobWithAWorktreeSaysPreparingAsAStatusChange() {
        let (_, actions, statuses) = Self.run([.enqueue, .admitted, .isolate, .prepared, .spawned])
        #expect(actions == [[.announceStarted], [], [.announceStatus, .prepare], [.spawn], [.announceStatus]])
        #expect(statuses == [.queued, .starting, .preparing, .starting, .running])
    }

    @Test func aKillWhileQueuedEndsTheJobAtOnceWithoutRunningIt() {
        let (lifecycle, actions, statuses) = Self.run([.enqueue, .killRequested(.request), .admitted, .spawned])
        #expect(actions == [[.announceStarted], [.announceCompleted], [], []])
        #expect(statuses == [.queued, .killed, .killed, .killed])
        #expect(lifecycle.killReason == .request)
        // Stopped by the server instead: still killed, not failed.
        #expect(Self.run([.killRequested(.serverStopping)], from: .queued).2 == [.killed])
    }

    @Test func aQueuedJobWhoseCommandCannotBeMadeAgainFails() {
        let (_, actions, statuses) = Self.run([.spawnFailed], from: .queued)
        #expect(actions == [[.announceCompleted]])
        #expect(statuses == [.failed])
    }

    @Test func eventsThatCannotHappenWhileQueuedAreIgnored() {
        for event: JobLifecycle.Event in [.spawned, .exited(succeeded: true), .finalized, .prepared, .isolate, .enqueue] {
            let (lifecycle, actions, _) = Self.run([event], from: .queued)
            #expect(actions == [[]] && lifecycle.phase == .queued, "\(event)")
        }
    }

    // MARK: preparing (a worktree)

    @Test func aJobWithAWorktreeIsAnnouncedPreparingThenSpawnsThenSaysItRuns() {
        let (lifecycle, actions, statuses) = Self.run([.isolate, .prepared, .spawned, .exited(succeeded: true), .finalized])
        #expect(actions == [[.announceStarted, .prepare], [.spawn], [.announceStatus], [.finalize], [.announceCompleted]])
        #expect(statuses == [.preparing, .starting, .running, .running, .done])
        #expect(lifecycle.phase == .finished(.done))
    }

    @Test func aWorktreeThatCannotBeMadeFailsTheJobWhichWasAlreadyAnnounced() {
        let (_, actions, statuses) = Self.run([.isolate, .prepareFailed])
        #expect(actions == [[.announceStarted, .prepare], [.announceCompleted]])
        #expect(statuses == [.preparing, .failed])
        // Announced while preparing: a spawn that then fails only completes it.
        #expect(Self.run([.isolate, .prepared, .spawnFailed]).1.last == [.announceCompleted])
    }

    @Test func aKillWhilePreparingShowsStoppingAndTheJobNeverSpawns() {
        let (lifecycle, actions, statuses) = Self.run([.isolate, .killRequested(.request), .killRequested(.serverStopping), .prepared, .spawned])
        #expect(actions == [[.announceStarted, .prepare], [.announceStatus], [], [.announceCompleted], []])
        #expect(statuses == [.preparing, .stopping, .stopping, .killed, .killed])
        #expect(lifecycle.killReason == .request)
        // A limit or a fault fails it; a worktree that failed after a kill ends as the kill says.
        #expect(Self.run([.isolate, .killRequested(.storage("full")), .prepared]).2.last == .failed)
        #expect(Self.run([.isolate, .killRequested(.request), .prepareFailed]).2.last == .killed)
    }

    @Test func onlyAStartingJobEntersPreparingAndOnlyAPreparingOneLeavesIt() {
        #expect(Self.run([.spawned, .isolate]).1.last == [])
        #expect(Self.run([.prepared]).1 == [[]])
        #expect(Self.run([.prepareFailed]).2 == [.starting])
        #expect(Self.run([.isolate, .spawned]).1.last == [])
    }

    @Test func aJobFoundUnfinishedAtStartIsInterruptedWhateverItsPhase() {
        for phase in [JobLifecycle.Phase.queued, .preparing, .starting, .running, .stopping, .finalizing] {
            let (lifecycle, actions, _) = Self.run([.serverRestarted], from: phase)
            #expect(actions == [[.announceCompleted]])
            #expect(lifecycle.phase == .finished(.interrupted))
        }
    }

    @Test func eventsThatCannotHappenInAPhaseAreIgnoredAndAFinishedJobTakesNoMore() {
        // An exit before the spawn was reported, a finalize before the exit, a second spawn.
        #expect(Self.run([.exited(succeeded: true)]).1 == [[]])
        #expect(Self.run([.spawned, .finalized]).2 == [.running, .running])
        #expect(Self.run([.spawned, .spawned]).1 == [[.announceStarted], []])
        #expect(Self.run([.spawned, .exited(succeeded: true), .exited(succeeded: false)]).1.last == [])
        let finished = Self.run([.spawnFailed, .spawned, .killRequested(.request), .exited(succeeded: true), .finalized, .serverRestarted])
        #expect(finished.1.dropFirst().allSatisfy { $0.isEmpty })
        #expect(finished.2.allSatisfy { $0 == .failed })
    }

    @Test func aFinishedJobContinuedByAFollowUpRunsAgainAsANewRun() {
        // Killed last time: the kill does not carry over to the new run, which succeeds.
        let (lifecycle, actions, statuses) = Self.run(
            [.spawned, .killRequested(.request), .exited(succeeded: true), .finalized, .continued, .spawned, .exited(succeeded: true), .finalized])
        #expect(actions.suffix(4) == [[.announceStatus], [.announceStatus], [.finalize], [.announceCompleted]])
        #expect(statuses == [.running, .stopping, .stopping, .killed, .starting, .running, .running, .done])
        #expect(lifecycle.killReason == nil)
        // A new run that cannot start fails (it was announced when it continued).
        let failed = Self.run([.continued, .spawnFailed], from: .finished(.done))
        #expect(failed.1 == [[.announceStatus], [.announceCompleted]])
        #expect(failed.2 == [.starting, .failed])
        // A new run killed while it runs ends killed.
        let killed = Self.run([.continued, .spawned, .killRequested(.request), .exited(succeeded: true), .finalized], from: .finished(.failed))
        #expect(killed.2.last == .killed)
    }

    @Test func onlyAFinishedJobIsContinued() {
        for phase in [JobLifecycle.Phase.queued, .preparing, .starting, .running, .stopping, .finalizing] {
            let (lifecycle, actions, _) = Self.run([.continued], from: phase)
            #expect(actions == [[]])
            #expect(lifecycle.phase == phase)
        }
    }
}
