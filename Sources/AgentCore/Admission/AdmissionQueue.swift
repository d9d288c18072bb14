/// Which jobs may run now and which wait, with no I/O: the operator's caps, conflict keys and
/// the queue's order. The engine says what was launched (`admit`), what ended or was cancelled
/// (`release`); the queue says which jobs start, and where each waiting job stands.
///
/// A job holds its slot from admission until it is finished (making its worktree, running,
/// stopping, running its completion hook): the caps bound agents and the work around them.
/// The queue is ordered by priority, highest first, and by arrival within a priority. A job
/// starts as soon as every cap it counts against has room and its key is free, so a job held
/// back by one provider's cap does not hold up another provider's; jobs sharing a key start
/// in their order.
public struct AdmissionQueue: Sendable, Equatable {
    /// The operator's caps (`serve --max-running …`); nil: no cap.
    public struct Limits: Sendable, Equatable {
        /// Jobs running in all.
        public var maxRunning: Int?
        /// Jobs running per provider (`claude` → 2); a provider not named has no cap of its own.
        public var maxPerProvider: [String: Int] = [:]
        /// Jobs running per workspace (the `--workspace` root their cwd is in).
        public var maxPerWorkspace: Int?
        /// Jobs running per project; `maxPerNamedProject` overrides it for the projects it names.
        public var maxPerProject: Int?
        public var maxPerNamedProject: [String: Int] = [:]
        /// Jobs that may wait: a launch past it is refused (`queue_full`), so a client in a
        /// loop cannot grow the queue (and each move's position updates) without bound.
        public var maxQueued = 1_000

        public init() {}

        func projectCap(_ project: String) -> Int? { maxPerNamedProject[project] ?? maxPerProject }
    }

    /// What admission knows of a job.
    public struct Ticket: Sendable, Equatable {
        public var id: String
        public var provider: String
        public var workspace: String?
        public var project: String?
        public var key: String?
        /// Higher starts first; equal priorities start in arrival order.
        public var priority: Int

        public init(id: String, provider: String, workspace: String? = nil, project: String? = nil, key: String? = nil, priority: Int = 0) {
            self.id = id
            self.provider = provider
            self.workspace = workspace
            self.project = project
            self.key = key
            self.priority = priority
        }
    }

    /// What a launch's key does when another unfinished job holds it.
    public enum ConflictPolicy: String, Sendable, CaseIterable {
        /// Wait for it (the default).
        case queue
        /// Refuse the launch, naming the job that holds the key.
        case reject
    }

    public enum Decision: Sendable, Equatable {
        /// Room now: the job holds a slot and starts.
        case start
        /// It waits, at this position (1: next).
        case wait(position: Int)
        /// Refused: `onConflict: reject` and this job holds the key.
        case conflict(holder: String)
        /// Refused: `maxQueued` jobs wait already.
        case full
    }

    public var limits: Limits
    /// Jobs holding a slot, by id.
    public private(set) var active: [String: Ticket] = [:]
    /// Waiting jobs in the order they will be considered.
    public private(set) var waiting: [Ticket] = []

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Decides for a new job and takes it in (unless refused). It starts at once exactly when
    /// the next `startReady` would start it: waiting jobs ahead of it that fit are counted
    /// first (they start on the engine's next scan), and it never overtakes one that wants
    /// the same room.
    public mutating func admit(_ ticket: Ticket, onConflict: ConflictPolicy = .queue) -> Decision {
        if let key = ticket.key, onConflict == .reject, let holder = holder(ofKey: key) {
            return .conflict(holder: holder)
        }
        let index = insertionIndex(priority: ticket.priority)
        var trial = self
        trial.waiting.insert(ticket, at: index)
        if trial.startReady().contains(ticket.id) {
            active[ticket.id] = ticket
            return .start
        }
        guard waiting.count < limits.maxQueued else { return .full }
        waiting.insert(ticket, at: index)
        return .wait(position: index + 1)
    }

    /// A job taken up after a restart, or otherwise already running: it holds its slot
    /// whatever the caps say now.
    public mutating func hold(_ ticket: Ticket) {
        active[ticket.id] = ticket
    }

    /// A job waiting again after a restart, behind those already waiting at its priority.
    /// Never refused: it was accepted before.
    public mutating func requeue(_ ticket: Ticket) {
        waiting.insert(ticket, at: insertionIndex(priority: ticket.priority))
    }

    /// The job ended, or was cancelled while it waited. Returns whether it held a slot or a
    /// place (call `startReady` after: room may have opened).
    @discardableResult
    public mutating func release(_ id: String) -> Bool {
        if active.removeValue(forKey: id) != nil { return true }
        guard let index = waiting.firstIndex(where: { $0.id == id }) else { return false }
        waiting.remove(at: index)
        return true
    }

    /// Moves every waiting job that fits now to `active`, in queue order; returns their ids.
    /// A job whose key an earlier waiting job shares waits behind it.
    public mutating func startReady() -> [String] {
        var started: [String] = []
        var counts = counts()
        var passedKeys = Set<String>()
        var index = 0
        while index < waiting.count {
            if let maxRunning = limits.maxRunning, counts.all >= maxRunning { break }
            let ticket = waiting[index]
            if let key = ticket.key, passedKeys.contains(key) {
                index += 1
                continue
            }
            guard fits(ticket, counts: counts) else {
                if let key = ticket.key { passedKeys.insert(key) }
                index += 1
                continue
            }
            waiting.remove(at: index)
            active[ticket.id] = ticket
            counts.add(ticket)
            started.append(ticket.id)
        }
        return started
    }

    /// 1 for the next job to be considered; nil for a job not waiting.
    public func position(of id: String) -> Int? {
        waiting.firstIndex { $0.id == id }.map { $0 + 1 }
    }

    /// Why a waiting job waits, for people: the first cap or key that holds it back, or the
    /// jobs ahead of it.
    public func reason(for id: String) -> String? {
        guard let index = waiting.firstIndex(where: { $0.id == id }) else { return nil }
        let earlier = waiting[index].key.flatMap { key in waiting[..<index].first(where: { $0.key == key })?.id }
        return reason(at: index, counts: counts(), heldKeys: heldKeys(), earlierWithKey: earlier)
    }

    /// Every waiting job's reason, in queue order, in one pass (a move of a queue of a
    /// thousand asks for all of them).
    public func reasons() -> [String] {
        let counts = counts()
        let held = heldKeys()
        var firstWithKey: [String: String] = [:]
        return waiting.indices.map { index in
            let key = waiting[index].key
            let earlier = key.flatMap { firstWithKey[$0] }
            if let key, earlier == nil { firstWithKey[key] = waiting[index].id }
            return reason(at: index, counts: counts, heldKeys: held, earlierWithKey: earlier)
        }
    }

    /// The running job holding each key.
    private func heldKeys() -> [String: String] {
        var held: [String: String] = [:]
        for ticket in active.values { if let key = ticket.key { held[key] = min(held[key] ?? ticket.id, ticket.id) } }
        return held
    }

    private func reason(at index: Int, counts: Counts, heldKeys: [String: String], earlierWithKey: String?) -> String {
        let ticket = waiting[index]
        if let key = ticket.key, let holder = heldKeys[key] {
            return "key \(key) is held by job \(holder)"
        }
        if let maxRunning = limits.maxRunning, counts.all >= maxRunning {
            return "\(counts.all) of \(maxRunning) jobs running"
        }
        if let cap = limits.maxPerProvider[ticket.provider], counts.providers[ticket.provider, default: 0] >= cap {
            return "\(counts.providers[ticket.provider, default: 0]) of \(cap) \(ticket.provider) jobs running"
        }
        if let workspace = ticket.workspace, let cap = limits.maxPerWorkspace, counts.workspaces[workspace, default: 0] >= cap {
            return "\(counts.workspaces[workspace, default: 0]) of \(cap) jobs running in workspace \(workspace)"
        }
        if let project = ticket.project, let cap = limits.projectCap(project), counts.projects[project, default: 0] >= cap {
            return "\(counts.projects[project, default: 0]) of \(cap) jobs running in project \(project)"
        }
        if let key = ticket.key, let earlierWithKey {
            return "job \(earlierWithKey) with key \(key) is ahead of it"
        }
        return index == 0 ? "starting" : "\(index) job\(index == 1 ? "" : "s") ahead of it"
    }

    /// "1st", "2nd", "3rd", "11th", "22nd": how a position is said to people.
    public static func ordinal(_ number: Int) -> String {
        let suffix: String
        switch (number % 10, number % 100) {
        case (_, 11...13): suffix = "th"
        case (1, _): suffix = "st"
        case (2, _): suffix = "nd"
        case (3, _): suffix = "rd"
        default: suffix = "th"
        }
        return "\(number)\(suffix)"
    }

    // MARK: rules

    /// The unfinished job with `key`: the running one, else the first waiting.
    public func holder(ofKey key: String) -> String? {
        if let running = active.values.filter({ $0.key == key }).map(\.id).min() { return running }
        return waiting.first { $0.key == key }?.id
    }

    /// Where a ticket of `priority` goes: after every waiting job of the same or a higher one.
    private func insertionIndex(priority: Int) -> Int {
        waiting.firstIndex { $0.priority < priority } ?? waiting.count
    }

    private func fits(_ ticket: Ticket, counts: Counts) -> Bool {
        if let maxRunning = limits.maxRunning, counts.all >= maxRunning { return false }
        if let cap = limits.maxPerProvider[ticket.provider], counts.providers[ticket.provider, default: 0] >= cap { return false }
        if let workspace = ticket.workspace, let cap = limits.maxPerWorkspace, counts.workspaces[workspace, default: 0] >= cap { return false }
        if let project = ticket.project, let cap = limits.projectCap(project), counts.projects[project, default: 0] >= cap { return false }
        if let key = ticket.key, active.values.contains(where: { $0.key == key }) { return false }
        return true
    }

    private struct Counts {
        var all = 0
        var providers: [String: Int] = [:]
        var workspaces: [String: Int] = [:]
        var projects: [String: Int] = [:]

        mutating func add(_ ticket: Ticket) {
            all += 1
            providers[ticket.provider, default: 0] += 1
            if let workspace = ticket.workspace { workspaces[workspace, default: 0] += 1 }
            if let project = ticket.project { projects[project, default: 0] += 1 }
        }
    }

    private func counts() -> Counts {
        var counts = Counts()
        for ticket in active.values { counts.add(ticket) }
        return counts
    }
}
