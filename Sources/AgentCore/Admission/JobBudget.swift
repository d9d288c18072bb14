/// What a job may spend: wall-clock time from its start, turns, and the cost its agent
/// reports. Past any of them the job is stopped and fails, saying which (`result.endReason`
/// `timeout`, `max_turns`, `budget`).
public struct JobBudget: Sendable, Equatable {
    public var timeoutSeconds: Int?
    public var maxTurns: Int?
    public var maxBudgetUsd: Double?

    public init(timeoutSeconds: Int? = nil, maxTurns: Int? = nil, maxBudgetUsd: Double? = nil) {
        self.timeoutSeconds = timeoutSeconds
        self.maxTurns = maxTurns
        self.maxBudgetUsd = maxBudgetUsd
    }

    /// When the timeout passes for a job started at `started` (wall clock, ms); nil for none.
    /// The server's timer, its supervisor and the check at its exit all use this one.
    public func deadline(from started: Int) -> Int? {
        timeoutSeconds.map { started + $0 * 1_000 }
    }

    /// The budgets a launch request asks for (after the operator's defaults); nil for none.
    public init?(_ request: LaunchRequest) {
        self.init(timeoutSeconds: request.timeoutSeconds, maxTurns: request.maxTurns, maxBudgetUsd: request.maxBudgetUsd)
        if timeoutSeconds == nil && maxTurns == nil && maxBudgetUsd == nil { return nil }
    }

    /// Whether the agent's reports are watched (turns or cost).
    var watchesReports: Bool { maxTurns != nil || maxBudgetUsd != nil }

    /// The first budget `turns` and `cost` (as the agent reported them so far) use up.
    func exceeded(turns: Int?, cost: Double?) -> JobManager.KillReason? {
        if let maxTurns, let turns, turns > maxTurns { return .maxTurns(maxTurns) }
        if let maxBudgetUsd, let cost, cost >= maxBudgetUsd { return .budget(maxBudgetUsd) }
        return nil
    }

    public var json: JSONValue {
        .object([
            "timeoutSeconds": timeoutSeconds.map(JSONValue.int),
            "maxTurns": maxTurns.map(JSONValue.int),
            "maxBudgetUsd": maxBudgetUsd.map(JSONValue.double),
        ])
    }

    public init?(json: JSONValue) {
        guard case .object = json else { return nil }
        self.init(
            timeoutSeconds: json["timeoutSeconds"]?.intValue, maxTurns: json["maxTurns"]?.intValue,
            maxBudgetUsd: json["maxBudgetUsd"]?.doubleValue)
    }
}

/// The operator's defaults and maxima for jobs' budgets (`serve --default-timeout` …): a
/// launch without a budget gets the default (or, with no default, the maximum), and one
/// asking for more than a maximum is refused, naming the field.
public struct BudgetPolicy: Sendable, Equatable {
    public var defaultTimeoutSeconds: Int?
    public var maxTimeoutSeconds: Int?
    public var defaultMaxTurns: Int?
    public var maxMaxTurns: Int?
    public var defaultBudgetUsd: Double?
    public var maxBudgetUsd: Double?

    public init() {}

    /// The request with the operator's budgets applied. Turn and cost budgets go only to
    /// providers that take them (`AgentProvider.fields`): a default never makes a launch
    /// invalid.
    public func apply(to request: LaunchRequest) throws(LaunchError) -> LaunchRequest {
        var request = request
        let provider = AgentProvider.named(request.provider)
        func check<T: Comparable>(_ value: T?, _ maximum: T?, field: String, option: String, shown: (T) -> String) throws(LaunchError) {
            guard let value, let maximum, value > maximum else { return }
            throw LaunchError(.invalidField, field: field, "\(field) must be at most \(shown(maximum)) on this server (serve \(option))")
        }
        try check(request.timeoutSeconds, maxTimeoutSeconds, field: "timeoutSeconds", option: "--max-timeout") { "\($0)" }
        try check(request.maxTurns, maxMaxTurns, field: "maxTurns", option: "--max-turns-limit") { "\($0)" }
        try check(request.maxBudgetUsd, maxBudgetUsd, field: "maxBudgetUsd", option: "--max-budget-usd", shown: LaunchRequest.dollars)
        request.timeoutSeconds = request.timeoutSeconds ?? defaultTimeoutSeconds ?? maxTimeoutSeconds
        if provider?.field("maxTurns") != nil { request.maxTurns = request.maxTurns ?? defaultMaxTurns ?? maxMaxTurns }
        if provider?.field("maxBudgetUsd") != nil { request.maxBudgetUsd = request.maxBudgetUsd ?? defaultBudgetUsd ?? maxBudgetUsd }
        return request
    }
}
