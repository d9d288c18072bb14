/// Who steers each job (issue 17): sending it messages, answering its permission questions
/// and killing it over `/ws` are its controller's; everyone else watching is a viewer. Roles
/// are per connection, not per token: the connection that launched a job controls it; control
/// is asked for, handed over or given up, and when its holder stops watching (unsubscribes or
/// disconnects) it passes to the longest-waiting asker still there. A job nobody controls may
/// be steered by any connection. (REST routes act as the operator, as the token always has.)
///
/// No I/O: the hub tells it what happened and sends what changed.
struct JobControl {
    typealias Connection = Int

    struct State: Equatable {
        var controller: Connection?
        /// Connections that asked for control while someone held it, oldest first.
        var asking: [Connection] = []
    }

    enum Answer: Equatable {
        /// Nobody held it (or the asker did): the asker controls the job now.
        case granted
        /// Someone else holds it: the asker waits; the holder is told the first time it asks
        /// (`new`), not again for each repeat (a viewer flooding asks must not flood the holder).
        case asked(holder: Connection, new: Bool)
    }

    private(set) var jobs: [String: State] = [:]
    /// Connections a job keeps track of, at most: an asker beyond it is still refused control.
    static let maxAsking = 64

    func controller(of job: String) -> Connection? { jobs[job]?.controller }

    /// Whether `connection` may steer `job`: it holds control, or nobody does (a holder that
    /// does not watch the job, as a launcher that never subscribed, holds nothing).
    func mayControl(_ job: String, _ connection: Connection, isWatching: (Connection) -> Bool = { _ in true }) -> Bool {
        guard let holder = jobs[job]?.controller, isWatching(holder) else { return true }
        return holder == connection
    }

    /// The connection that launched a job controls it.
    mutating func launched(_ job: String, by connection: Connection) {
        jobs[job] = State(controller: connection)
    }

    mutating func ask(_ job: String, _ connection: Connection) -> Answer {
        var state = jobs[job] ?? State()
        defer { jobs[job] = state }
        guard let holder = state.controller, holder != connection else {
            state.controller = connection
            state.asking.removeAll { $0 == connection }
            return .granted
        }
        let new = !state.asking.contains(connection) && state.asking.count < Self.maxAsking
        if new { state.asking.append(connection) }
        return .asked(holder: holder, new: new)
    }

    /// The controller gives control to `to` (who must be watching: `isWatching`). False when
    /// `from` does not hold it or `to` is not there.
    mutating func handOver(_ job: String, from: Connection, to: Connection, isWatching: (Connection) -> Bool) -> Bool {
        guard var state = jobs[job], state.controller == from, isWatching(to) else { return false }
        state.controller = to
        state.asking.removeAll { $0 == to }
        jobs[job] = state
        return true
    }

    /// `connection` stopped watching `job` (or gave control up): it asks no more, and if it
    /// held control, control passes to the oldest asker still watching. True when the
    /// controller changed.
    @discardableResult
    mutating func left(_ job: String, _ connection: Connection, isWatching: (Connection) -> Bool) -> Bool {
        guard var state = jobs[job] else { return false }
        state.asking.removeAll { $0 == connection || !isWatching($0) }
        var changed = false
        if state.controller == connection {
            state.controller = state.asking.isEmpty ? nil : state.asking.removeFirst()
            changed = true
        }
        jobs[job] = state.controller == nil && state.asking.isEmpty ? nil : state
        return changed
    }

    /// The jobs `connection` holds or asks for (to leave them all when it closes).
    func jobs(of connection: Connection) -> [String] {
        jobs.compactMap { job, state in state.controller == connection || state.asking.contains(connection) ? job : nil }
    }

    mutating func forget(_ job: String) {
        jobs[job] = nil
    }
}
