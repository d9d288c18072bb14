import EventLoop

/// The subreaper's sweeps after jobs end (`JobContainer.release`), batched over jobs: each
/// job is swept at its delays after its end, and the jobs due within `slackMilliseconds` of
/// each other share one read of the process table. One by one, 100 jobs ending together cost
/// the loop 600 sweeps of /proc, each a read of every process's stat (about 1.4 ms with 300
/// processes), most of a second in all.
final class SubreaperSweeps {
    static let slackMilliseconds = 20

    private var due: [(at: Int, jobID: String)] = []
    private var timer: EventLoop.TimerID?
    private var timerAt = Int.max

    /// Sweeps for `jobID` `delays` milliseconds from now (0: in the next turn).
    func add(_ jobID: String, after delays: [Int], on loop: EventLoop) {
        let now = MonotonicClock.milliseconds()
        due += delays.map { (now + $0, jobID) }
        arm(loop)
    }

    private func arm(_ loop: EventLoop) {
        guard let next = due.lazy.map(\.at).min() else { return }
        if timer != nil, timerAt <= next { return }
        if let timer { loop.cancel(timer) }
        timerAt = next
        timer = loop.schedule(afterMilliseconds: max(0, next - MonotonicClock.milliseconds())) { [weak self, unowned loop] in
            guard let self else { return }
            self.timer = nil
            self.timerAt = .max
            self.sweepDue(loop)
        }
    }

    private func sweepDue(_ loop: EventLoop) {
        let horizon = MonotonicClock.milliseconds() + Self.slackMilliseconds
        let jobs = Set(due.lazy.filter { $0.at <= horizon }.map(\.jobID))
        due.removeAll { $0.at <= horizon }
        Subreaper.sweep(jobIDs: jobs)
        arm(loop)
    }
}
