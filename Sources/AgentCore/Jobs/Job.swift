/// Everything known about one job: what was asked, what ran, how it ended.
public struct Job: Sendable, Equatable {
    public var id: String
    public var provider: String
    public var status: JobStatus
    public var label: String?
    public var prompt: String
    public var cwd: String?
    public var model: String?
    /// argv as run (the prompt travels on stdin, so it is not in here).
    public var command: [String]
    /// Milliseconds since the Unix epoch.
    public var createdAt: Int
    public var startedAt: Int?
    public var endedAt: Int?
    public var pid: Int32?
    /// Equal to `pid`: every job leads its own session.
    public var pgid: Int32?
    /// /proc start time of the leader, so a reused pid is never signalled.
    public var processStartTime: UInt64?
    public var exitCode: Int32?
    public var signal: Int32?
    /// Last 4 KiB of stderr, or why the job could not start.
    public var errorTail: String?
    /// The agent's final result (`AgentReport.json`), plus `output` (the output file) and
    /// `hook` (the operator's on-complete hook), when those ran.
    public var result: JSONValue?
    public var sessionId: String?
    public var hookError: String?
    /// Seq of the job's last event.
    public var lastSeq: Int
    /// How many times a new server took the job up again after the last one stopped or
    /// crashed while it ran (its agent worked on under its supervisor), and when it last did.
    public var reattachCount = 0
    public var reattachedAt: Int?
    /// The job's own git worktree and branch (`isolation: "worktree"`), nil when it runs in
    /// the requested cwd itself.
    public var worktree: Worktree?
    /// Admission control (`AdmissionQueue`): the job's project and key as launched, its
    /// priority, and the workspace root its cwd is in (what per-workspace caps count).
    public var project: String?
    public var key: String?
    public var priority = 0
    public var workspace: String?
    /// While it is queued: its place (1: next) and why it waits ("4 of 4 jobs running").
    public var queuePosition: Int?
    public var queueReason: String?
    /// When admission control let it start (its creation, for a job that never waited).
    public var admittedAt: Int?
    /// The operator's launch profile it was launched with.
    public var profile: String?
    /// Its budgets, and what its agent reported spending so far (live while it runs).
    public var budget: JobBudget?
    public var turns: Int?
    public var costUsd: Double?
    /// A message can be sent to it now: its agent is running and takes follow-ups on its
    /// stdin (a conversation), and has not been told the conversation is over.
    public var acceptsMessages = false
    /// The follow-up messages its users sent (the prompt not counted), and the messages its
    /// agent has answered so far (the prompt counted): its stdin is closed only once it has
    /// answered all `messages + 1`.
    public var messages = 0
    public var answered = 0
    /// A finished job as the server keeps it in memory: prompt and result cut down to what
    /// the job list shows; the whole job is in the store (`JobManager.details(of:)`).
    /// Not serialized.
    public private(set) var isCompact = false
    /// The prompt was cut by `compacted()` (the summary says `promptTruncated`).
    var promptWasCut = false

    public init(id: String, provider: String, prompt: String, createdAt: Int) {
        self.id = id
        self.provider = provider
        self.status = .starting
        self.prompt = prompt
        self.command = []
        self.createdAt = createdAt
        self.lastSeq = 0
    }

    /// Everything, the whole prompt included: for the store and `GET /api/agents/jobs/{id}`.
    public var json: JSONValue { json(promptLimit: nil) }

    /// Characters of the prompt kept in `summaryJSON`.
    public static let summaryPromptCharacters = 2_000

    /// The job with its prompt cut to `summaryPromptCharacters` (and `promptTruncated: true`
    /// when cut): for the job list, snapshots and launch replies, which carry every job or go
    /// to every viewer. A prompt may be 1 MiB; a list of such jobs sent to each viewer cost
    /// the server gigabytes (third attacker trial).
    public var summaryJSON: JSONValue { json(promptLimit: Self.summaryPromptCharacters) }

    private func json(promptLimit: Int?) -> JSONValue {
        func int32(_ value: Int32?) -> JSONValue { value.map { .int(Int($0)) } ?? .null }
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        var members: [JSONValue.Member] = []
        members.append(.init("id", .string(id)))
        members.append(.init("provider", .string(provider)))
        members.append(.init("status", .string(status.rawValue)))
        members.append(.init("label", text(label)))
        if let promptLimit, prompt.utf8.count > promptLimit, case let cut = prompt.prefix(promptLimit), cut.endIndex < prompt.endIndex {
            members.append(.init("prompt", .string(String(cut))))
            members.append(.init("promptTruncated", .bool(true)))
        } else if promptWasCut {
            members.append(.init("prompt", .string(prompt)))
            members.append(.init("promptTruncated", .bool(true)))
        } else {
            members.append(.init("prompt", .string(prompt)))
        }
        members.append(.init("cwd", text(cwd)))
        members.append(.init("model", text(model)))
        members.append(.init("command", .array(command.map(JSONValue.string))))
        members.append(.init("createdAt", .int(createdAt)))
        members.append(.init("startedAt", startedAt.map(JSONValue.int) ?? .null))
        members.append(.init("endedAt", endedAt.map(JSONValue.int) ?? .null))
        members.append(.init("pid", int32(pid)))
        members.append(.init("pgid", int32(pgid)))
        members.append(.init("processStartTime", processStartTime.map { .int(Int($0)) } ?? .null))
        members.append(.init("exitCode", int32(exitCode)))
        members.append(.init("signal", int32(signal)))
        members.append(.init("signalName", signal.map { .string(ExitStatus.signalName($0)) } ?? .null))
        members.append(.init("errorTail", text(errorTail)))
        members.append(.init("result", result ?? .null))
        members.append(.init("sessionId", text(sessionId)))
        members.append(.init("hookError", text(hookError)))
        members.append(.init("lastSeq", .int(lastSeq)))
        members.append(.init("reattachCount", .int(reattachCount)))
        members.append(.init("reattachedAt", reattachedAt.map(JSONValue.int) ?? .null))
        members.append(.init("worktree", worktree?.json ?? .null))
        members.append(.init("project", text(project)))
        members.append(.init("key", text(key)))
        members.append(.init("priority", .int(priority)))
        members.append(.init("workspace", text(workspace)))
        members.append(.init("queuePosition", queuePosition.map(JSONValue.int) ?? .null))
        members.append(.init("queueReason", text(queueReason)))
        members.append(.init("admittedAt", admittedAt.map(JSONValue.int) ?? .null))
        members.append(.init("profile", text(profile)))
        members.append(.init("budget", budget?.json ?? .null))
        members.append(.init("turns", turns.map(JSONValue.int) ?? .null))
        members.append(.init("costUsd", costUsd.map(JSONValue.double) ?? .null))
        members.append(.init("acceptsMessages", .bool(acceptsMessages)))
        members.append(.init("messages", .int(messages)))
        members.append(.init("answered", .int(answered)))
        return .object(members)
    }

    /// Reads back what `json` wrote (for the store); nil when required fields are missing.
    public init?(json: JSONValue) {
        guard let id = json["id"]?.stringValue, let provider = json["provider"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(JobStatus.init(rawValue:)),
            let createdAt = json["createdAt"]?.intValue
        else { return nil }
        self.init(id: id, provider: provider, prompt: json["prompt"]?.stringValue ?? "", createdAt: createdAt)
        self.status = status
        label = json["label"]?.stringValue
        cwd = json["cwd"]?.stringValue
        model = json["model"]?.stringValue
        command = json["command"]?.arrayValue?.compactMap(\.stringValue) ?? []
        startedAt = json["startedAt"]?.intValue
        endedAt = json["endedAt"]?.intValue
        pid = json["pid"]?.intValue.map(Int32.init)
        pgid = json["pgid"]?.intValue.map(Int32.init)
        processStartTime = json["processStartTime"]?.intValue.map(UInt64.init)
        exitCode = json["exitCode"]?.intValue.map(Int32.init)
        signal = json["signal"]?.intValue.map(Int32.init)
        errorTail = json["errorTail"]?.stringValue
        result = json["result"].flatMap { value -> JSONValue? in value.isNull ? Optional.none : value }
        sessionId = json["sessionId"]?.stringValue
        hookError = json["hookError"]?.stringValue
        lastSeq = json["lastSeq"]?.intValue ?? 0
        reattachCount = json["reattachCount"]?.intValue ?? 0
        reattachedAt = json["reattachedAt"]?.intValue
        worktree = json["worktree"].flatMap(Worktree.init(json:))
        project = json["project"]?.stringValue
        key = json["key"]?.stringValue
        priority = json["priority"]?.intValue ?? 0
        workspace = json["workspace"]?.stringValue
        queuePosition = json["queuePosition"]?.intValue
        queueReason = json["queueReason"]?.stringValue
        admittedAt = json["admittedAt"]?.intValue
        profile = json["profile"]?.stringValue
        budget = json["budget"].flatMap(JobBudget.init(json:))
        turns = json["turns"]?.intValue
        costUsd = json["costUsd"]?.doubleValue
        acceptsMessages = json["acceptsMessages"]?.boolValue ?? false
        messages = json["messages"]?.intValue ?? 0
        answered = json["answered"]?.intValue ?? 0
    }
}

extension Job {
    /// Equal when they say the same (how much of it is kept in memory does not count).
    public static func == (a: Job, b: Job) -> Bool { a.json == b.json }

    /// Results larger than this (an output file, a hook's answer, a long final text) are kept
    /// in memory as their summary fields only.
    public static let compactResultBytes = 4_096
    /// End reasons of a job agentgate stopped for passing a budget or a limit.
    static let limitEndReasons: Set<String> = ["timeout", "max_turns", "budget", "output_limit", "storage"]

    /// The result fields the job list and the dashboard show.
    static let summaryResultKeys: Set<String> = [
        "isError", "costUsd", "numTurns", "durationMs", "endReason", "errors", "sessionId", "model", "denials",
    ]

    /// The job as a finished one is kept in memory: the prompt cut to what the job list
    /// shows, a large result cut to its summary fields. 10,000 finished jobs then cost a few
    /// KiB each, whatever their prompts and results.
    public func compacted() -> Job {
        var job = self
        job.isCompact = true
        if prompt.utf8.count > Self.summaryPromptCharacters {
            job.prompt = String(prompt.prefix(Self.summaryPromptCharacters))
            job.promptWasCut = true
        }
        if let result, case .object(let members) = result, JSONWriter.serialize(result).count > Self.compactResultBytes {
            job.result = .object(members.filter { Self.summaryResultKeys.contains($0.key) })
        }
        return job
    }

    /// `[agentgate] job ID status (exit N) (signal N)`: how plain-text viewers report a job's end.
    public var statusLine: String {
        var text = "[agentgate] job \(id) \(status.rawValue)"
        if let exitCode { text += " (exit \(exitCode))" }
        if let signal { text += " (\(ExitStatus.signalName(signal)))" }
        if let worktree, let summary = worktree.summary { text += ": \(summary) in \(worktree.branch)" }
        // Stopped by agentgate for a budget or a limit: the last line says which (an agent that
        // stopped itself at its own --max-turns says so in its log already).
        if let reason = result?["endReason"]?.stringValue, Self.limitEndReasons.contains(reason), let why = result?["errors"]?[0]?.stringValue,
            why.hasPrefix("stopped: ") {
            text += ": \(why)"
        }
        return text
    }
}
