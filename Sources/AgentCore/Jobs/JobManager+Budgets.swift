import EventLoop

/// Budgets in the job engine: a job's timeout runs from its start (its supervisor holds the
/// same deadline, so it holds while no server is attached), and its turns and cost are taken
/// from what the agent reports as it streams. Past one the job is stopped and fails with the
/// budget as its end reason (`JobBudget`, `KillReason`).
extension JobManager {
    /// Watches a started (or re-attached) job's budgets. A deadline already past (it passed
    /// while no server ran) stops the job at once.
    func armBudget(_ id: String, _ runner: RunningJob) {
        guard let job = jobsByID[id], let budget = job.budget else { return }
        runner.watchesReports = budget.watchesReports
        runner.ownTurnFlag = AgentProvider.named(job.provider)?.field("maxTurns") == AgentProvider.maxTurns
        guard let seconds = budget.timeoutSeconds, let started = job.startedAt, let deadline = budget.deadline(from: started) else { return }
        let left = deadline - WallClock.milliseconds()
        // Passed while no server ran (its supervisor stopped the agent then): it ends timed
        // out, before its exit is read.
        guard left > 0 else {
            try? kill(id, reason: .timeout(seconds))
            return
        }
        runner.deadlineTimer = loop.schedule(afterMilliseconds: left) { [weak self, weak runner] in
            guard let self, let runner, self.running[id] === runner else { return }
            runner.deadlineTimer = nil
            try? self.kill(id, reason: .timeout(seconds))
        }
    }

    /// An agent that exited at or past its deadline was stopped by its supervisor's timeout
    /// (which may beat the server's timer to it): the job ends timed out like one the server
    /// stopped (`stoppedAlready`).
    func timedOutBySupervisor(_ id: String, _ runner: RunningJob) {
        guard runner.killReason == nil, let job = jobsByID[id], let seconds = job.budget?.timeoutSeconds, let started = job.startedAt,
            let deadline = job.budget?.deadline(from: started), WallClock.milliseconds() >= deadline
        else { return }
        let reason = KillReason.timeout(seconds)
        stoppedAlready(id, runner, reason, said: "\(reason.why): its supervisor stopped the agent")
    }

    /// An agent its supervisor stopped because no server was attached for longer than
    /// `--orphan-timeout`: the job ends stopped by that limit, as the next server learns from
    /// `exit.json`.
    func orphanedBySupervisor(_ id: String, _ runner: RunningJob) {
        guard runner.killReason == nil, runner.process.endedByOrphanTimeout else { return }
        let reason = KillReason.orphanTimeout
        stoppedAlready(id, runner, reason, said: "stopped by its supervisor: \(reason.why)")
    }

    /// A stop its supervisor carried out without this server (a limit, a kill while no server
    /// ran): the job ends for `reason`, saying so; nothing is signalled and no `stopping` is
    /// shown, since the agent is gone or going.
    func stoppedAlready(_ id: String, _ runner: RunningJob, _ reason: KillReason, said: String) {
        emit(id, .log(LogLine(.system, reason.failsTheJob ? .error : .info, said)))
        carryOut(runner.lifecycle.handle(.killRequested(reason)).filter { $0 != .signalGroup && $0 != .announceStatus }, id, runner)
    }

    /// After a line of a job with turn or cost budgets: keeps what its agent reported in the
    /// job's record when it changed, and stops the job once a budget is used up.
    func checkSpending(_ id: String, _ runner: RunningJob) {
        let report = runner.interpreter.report
        let (turns, cost) = (report.numTurns, report.costUSD)
        if turns != runner.reportedTurns || cost != runner.reportedCost {
            runner.reportedTurns = turns
            runner.reportedCost = cost
            update(id) {
                $0.turns = turns
                $0.costUsd = cost
            }
            persist(id)
            emit(id, .spend(turns: turns, costUsd: cost))
        }
        guard runner.killReason == nil, let budget = jobsByID[id]?.budget else { return }
        // Turns are counted as they begin (`streamedTurns`; an agent that streams no starts,
        // as they end). An agent that takes the limit as a flag stops itself there, counting
        // its own way (Claude Code reports 2 turns for --max-turns 1, and a subagent's
        // messages may look like its own): for it the count has one turn to spare, a
        // backstop for an agent that ignores its flag.
        let counted = runner.ownTurnFlag ? report.streamedTurns.map { $0 - 1 } : report.streamedTurns ?? turns
        guard let reason = budget.exceeded(turns: counted, cost: cost) else { return }
        try? kill(id, reason: reason)
    }
}
