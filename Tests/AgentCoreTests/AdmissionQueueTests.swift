import Testing

@testable import AgentCore

/// Caps, keys and queue order with no process: launches and ends in, starts and positions out.
@Suite struct AdmissionQueueTests {
    typealias Ticket = AdmissionQueue.Ticket

    static func queue(maxRunning: Int? = nil, configure: (inout AdmissionQueue.Limits) -> Void = { _ in }) -> AdmissionQueue {
        var limits = AdmissionQueue.Limits()
        limits.maxRunning = maxRunning
        configure(&limits)
        return AdmissionQueue(limits: limits)
    }

    @Test func withoutCapsEveryJobStarts() {
        var queue = Self.queue()
        for index in 0..<100 { #expect(queue.admit(Ticket(id: "j\(index)", provider: "claude")) == .start) }
        #expect(queue.active.count == 100 && queue.waiting.isEmpty)
    }

    @Test func fiftyLaunchesAgainstACapOfFourRunFourAtATimeInArrivalOrder() {
        var queue = Self.queue(maxRunning: 4)
        var started: [String] = []
        for index in 0..<50 {
            switch queue.admit(Ticket(id: "j\(index)", provider: "claude")) {
            case .start: started.append("j\(index)")
            case .wait(let position): #expect(position == index - 3)
            default: Issue.record("refused")
            }
        }
        #expect(started == ["j0", "j1", "j2", "j3"])
        var finished = 0
        while let next = started.first {
            started.removeFirst()
            queue.release(next)
            finished += 1
            let now = queue.startReady()
            #expect(now.count <= 1)
            started += now
            #expect(queue.active.count <= 4)
            // Every waiting job's position is its place in arrival order.
            for (offset, ticket) in queue.waiting.enumerated() { #expect(queue.position(of: ticket.id) == offset + 1) }
        }
        #expect(finished == 50)
    }

    @Test func aStartOrderIsArrivalOrderWithinAPriorityAndHigherPrioritiesGoFirst() {
        var queue = Self.queue(maxRunning: 1)
        _ = queue.admit(Ticket(id: "running", provider: "claude"))
        #expect(queue.admit(Ticket(id: "a", provider: "claude")) == .wait(position: 1))
        #expect(queue.admit(Ticket(id: "b", provider: "claude", priority: 5)) == .wait(position: 1))
        #expect(queue.admit(Ticket(id: "c", provider: "claude", priority: 5)) == .wait(position: 2))
        #expect(queue.admit(Ticket(id: "d", provider: "claude", priority: -1)) == .wait(position: 4))
        #expect(queue.waiting.map(\.id) == ["b", "c", "a", "d"])
        var order: [String] = []
        var current = "running"
        while true {
            queue.release(current)
            guard let next = queue.startReady().first else { break }
            order.append(next)
            current = next
        }
        #expect(order == ["b", "c", "a", "d"])
    }

    @Test func cancellingFromTheMiddleMovesThoseBehindItUp() {
        var queue = Self.queue(maxRunning: 1)
        for id in ["r", "a", "b", "c", "d"] { _ = queue.admit(Ticket(id: id, provider: "claude")) }
        let released = queue.release("b")
        #expect(released)
        #expect(queue.startReady().isEmpty)
        #expect(["a", "c", "d"].map { queue.position(of: $0) } == [1, 2, 3])
        #expect(queue.position(of: "b") == nil)
        let again = queue.release("b")
        #expect(!again)
    }

    @Test func aProviderCapHoldsBackOnlyThatProvider() {
        var queue = Self.queue(maxRunning: 10) { $0.maxPerProvider = ["claude": 2] }
        #expect(queue.admit(Ticket(id: "c1", provider: "claude")) == .start)
        #expect(queue.admit(Ticket(id: "c2", provider: "claude")) == .start)
        #expect(queue.admit(Ticket(id: "c3", provider: "claude")) == .wait(position: 1))
        // The global cap has room: a codex job starts past the held-back claude job.
        #expect(queue.admit(Ticket(id: "x1", provider: "codex")) == .start)
        #expect(queue.startReady().isEmpty)
        #expect(queue.reason(for: "c3") == "2 of 2 claude jobs running")
        queue.release("c1")
        #expect(queue.startReady() == ["c3"])
    }

    @Test func withOnlyAProviderCapAnotherProviderStartsAtOnce() {
        var queue = Self.queue { $0.maxPerProvider = ["claude": 1] }
        #expect(queue.admit(Ticket(id: "c1", provider: "claude")) == .start)
        #expect(queue.admit(Ticket(id: "c2", provider: "claude")) == .wait(position: 1))
        #expect(queue.admit(Ticket(id: "x1", provider: "codex")) == .start)
    }

    @Test func projectAndWorkspaceCapsCountTheirOwnJobs() {
        var queue = Self.queue { limits in
            limits.maxPerProject = 1
            limits.maxPerNamedProject = ["big": 2]
            limits.maxPerWorkspace = 3
        }
        #expect(queue.admit(Ticket(id: "w1", provider: "claude", workspace: "/w", project: "web")) == .start)
        #expect(queue.admit(Ticket(id: "w2", provider: "claude", workspace: "/w", project: "web")) == .wait(position: 1))
        #expect(queue.admit(Ticket(id: "b1", provider: "claude", workspace: "/w", project: "big")) == .start)
        #expect(queue.admit(Ticket(id: "b2", provider: "claude", workspace: "/w", project: "big")) == .start)
        // The workspace is full now (3 of 3), whatever the project.
        #expect(queue.admit(Ticket(id: "n1", provider: "claude", workspace: "/w")) == .wait(position: 2))
        #expect(queue.admit(Ticket(id: "o1", provider: "claude", workspace: "/other", project: "big")) == .wait(position: 3))
        // Held back by both its workspace and its project: the first cap is said.
        #expect(queue.reason(for: "w2") == "3 of 3 jobs running in workspace /w")
        #expect(queue.reason(for: "n1") == "3 of 3 jobs running in workspace /w")
        #expect(queue.reason(for: "o1") == "2 of 2 jobs running in project big")
        queue.release("b1")
        // Room in /w (n1 has no project) and in big (o1); w2 still waits for web.
        #expect(queue.startReady() == ["n1", "o1"])
    }

    @Test func aKeyRunsOneJobAtATimeAndTheNextWithTheKeyWaitsItsTurn() {
        var queue = Self.queue()
        #expect(queue.admit(Ticket(id: "a", provider: "claude", key: "story-7")) == .start)
        #expect(queue.admit(Ticket(id: "b", provider: "claude", key: "story-7")) == .wait(position: 1))
        #expect(queue.admit(Ticket(id: "c", provider: "claude", key: "story-7")) == .wait(position: 2))
        #expect(queue.admit(Ticket(id: "d", provider: "claude", key: "story-8")) == .start)
        #expect(queue.reason(for: "b") == "key story-7 is held by job a")
        #expect(queue.startReady().isEmpty)
        queue.release("a")
        #expect(queue.startReady() == ["b"])
        #expect(queue.position(of: "c") == 1)
    }

    @Test func rejectNamesTheJobHoldingTheKeyRunningOrWaiting() {
        var queue = Self.queue(maxRunning: 1)
        _ = queue.admit(Ticket(id: "a", provider: "claude", key: "k"))
        #expect(queue.admit(Ticket(id: "b", provider: "claude", key: "k"), onConflict: .reject) == .conflict(holder: "a"))
        #expect(queue.active.count == 1 && queue.waiting.isEmpty)
        _ = queue.admit(Ticket(id: "x", provider: "claude"))
        _ = queue.admit(Ticket(id: "y", provider: "claude", key: "k2"))
        #expect(queue.admit(Ticket(id: "z", provider: "claude", key: "k2"), onConflict: .reject) == .conflict(holder: "y"))
        // A free key is no conflict.
        #expect(queue.admit(Ticket(id: "f", provider: "claude", key: "free"), onConflict: .reject) == .wait(position: 3))
    }

    @Test func aFullQueueRefusesButAJobThatFitsStillStarts() {
        var queue = Self.queue { limits in
            limits.maxPerProvider = ["claude": 1]
            limits.maxQueued = 2
        }
        _ = queue.admit(Ticket(id: "c1", provider: "claude"))
        _ = queue.admit(Ticket(id: "c2", provider: "claude"))
        _ = queue.admit(Ticket(id: "c3", provider: "claude"))
        #expect(queue.admit(Ticket(id: "c4", provider: "claude")) == .full)
        #expect(queue.admit(Ticket(id: "x1", provider: "codex")) == .start)
    }

    @Test func aNewcomerNeverOvertakesAWaitingJobThatWantsTheSameRoom() {
        var queue = Self.queue(maxRunning: 2)
        _ = queue.admit(Ticket(id: "a", provider: "claude"))
        _ = queue.admit(Ticket(id: "b", provider: "claude"))
        _ = queue.admit(Ticket(id: "c", provider: "claude"))
        queue.release("a")
        // Room opened but the engine has not scanned yet: d queues behind c.
        #expect(queue.admit(Ticket(id: "d", provider: "claude")) == .wait(position: 2))
        #expect(queue.startReady() == ["c"])
    }

    @Test func heldAndRequeuedJobsAfterARestartKeepTheirPlaces() {
        var queue = Self.queue(maxRunning: 1)
        queue.hold(Ticket(id: "adopted1", provider: "claude"))
        queue.hold(Ticket(id: "adopted2", provider: "claude"))
        queue.requeue(Ticket(id: "q1", provider: "claude"))
        queue.requeue(Ticket(id: "q2", provider: "claude", priority: 1))
        #expect(queue.waiting.map(\.id) == ["q2", "q1"])
        queue.release("adopted1")
        // Still one over the cap: nothing starts.
        #expect(queue.startReady().isEmpty)
        queue.release("adopted2")
        #expect(queue.startReady() == ["q2"])
    }

    /// The reasons of a whole queue in one pass say what each job's own reason says.
    @Test func aQueuesReasonsInOnePassAreEachJobsReason() {
        var queue = Self.queue(maxRunning: 3) {
            $0.maxPerProvider = ["codex": 1]
            $0.maxPerProject = 1
        }
        _ = queue.admit(Ticket(id: "r1", provider: "codex", key: "k"))
        _ = queue.admit(Ticket(id: "r2", provider: "claude", project: "web"))
        let tickets = [
            Ticket(id: "w1", provider: "codex"), Ticket(id: "w2", provider: "claude", key: "k"),
            Ticket(id: "w3", provider: "claude", project: "web"), Ticket(id: "w4", provider: "claude", key: "q"),
            Ticket(id: "w5", provider: "claude", key: "q"), Ticket(id: "w6", provider: "claude", priority: 2),
        ]
        for ticket in tickets { _ = queue.admit(ticket) }
        #expect(!queue.waiting.isEmpty)
        #expect(queue.reasons() == queue.waiting.map { queue.reason(for: $0.id) })
        #expect(queue.reasons().contains("key k is held by job r1"))
    }
}
