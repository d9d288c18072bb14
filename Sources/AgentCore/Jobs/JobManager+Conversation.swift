/// Conversations (issue 17): a user's follow-up message reaches a running agent that takes
/// messages on its stdin (Claude Code with `--input-format stream-json`), and shows in the
/// job's log as the user's turn. The agent's stdin stays open while it works and is closed
/// once it has answered every message it was given, so the job ends as a one-prompt job does.
extension JobManager {
    /// Why a message was not taken.
    public enum MessageError: Error, Equatable {
        case unknownJob
        /// Empty, or longer than a prompt may be.
        case invalidText(String)
        /// Its agent takes no messages while it runs.
        case notConversational(provider: String)
        /// Not running (queued, preparing, ending or ended), or its agent has answered
        /// everything and is ending.
        case notAccepting(JobStatus)
        /// Too many messages wait for the agent, or the job has had its fill.
        case tooMany(String)
        /// A finished job whose next run cannot be launched (its session, its request under
        /// today's policy, its worktree, its key).
        case cannotContinue(LaunchError)
        /// A finished job's next run would be over the server's caps: it is not queued.
        case busy(String)
    }

    /// Messages sent and not answered yet, at most; follow-ups per job, at most.
    static let maxPendingMessages = 8
    static let maxMessagesPerJob = 200

    /// Sends `text` to job `id`'s agent as the user's next message: to the running agent, or
    /// to a finished job by resuming its agent's session (`continueFinished`). Returns the seq
    /// of the log line that shows it.
    public func sendMessage(_ id: String, text: String) throws(MessageError) -> Int {
        guard let job = jobsByID[id] else { throw .unknownJob }
        guard text.contains(where: { !$0.isWhitespace }) else { throw .invalidText("text is empty") }
        guard text.utf8.count <= LaunchRequest.maxPromptBytes else {
            throw .invalidText("text is \(text.utf8.count) bytes; the limit is \(LaunchRequest.maxPromptBytes)")
        }
        if job.status.isFinished { return try continueFinished(id, text: text) }
        guard let encode = AgentProvider.named(job.provider)?.encodeMessage else { throw .notConversational(provider: job.provider) }
        guard let runner = running[id], runner.lifecycle.phase == .running, runner.spec.takesMessages, runner.process.acceptsInput else {
            throw .notAccepting(job.status)
        }
        guard job.messages < Self.maxMessagesPerJob else { throw .tooMany("job \(id) has had \(Self.maxMessagesPerJob) follow-ups; launch a new job") }
        guard 1 + job.messages - answered(runner) < Self.maxPendingMessages else {
            throw .tooMany("\(Self.maxPendingMessages) messages wait for job \(id)'s agent already; send more once it has answered")
        }
        guard runner.process.sendInput(encode(text)) else { throw .notAccepting(job.status) }
        update(id) { $0.messages += 1 }
        for line in LogLine.lines(.text, text, stream: .user) { emit(id, .log(line)) }
        persist(id)
        return jobsByID[id]?.lastSeq ?? 0
    }

    /// After a turn's summary line: once the agent has answered every message, its stdin is
    /// closed so that it ends (a later message continues the job by resume).
    /// Only once the agent has answered as many messages as it was sent (a follow-up it has
    /// not begun yet is not in its own count) and no permission question waits.
    func closeInputIfAnswered(_ id: String, _ runner: RunningJob) {
        guard runner.spec.takesMessages, let job = jobsByID[id] else { return }
        let answered = answered(runner)
        if job.answered != answered {
            update(id) { $0.answered = answered }
            persist(id)
        }
        guard runner.process.acceptsInput, runner.interpreter.formatter.answeredEveryMessage, answered >= 1 + job.messages,
            runner.questions.isEmpty, runner.claudeQuestions.isEmpty
        else { return }
        runner.process.closeInput()
        stopAcceptingMessages(id)
    }

    /// The messages its agent has answered (the prompt counted): those Claude Code echoed as
    /// taken into turns that ended (it merges messages sent during a turn into one next turn),
    /// an ACP agent's prompt responses, else one per result.
    func answered(_ runner: RunningJob) -> Int {
        let formatter = runner.interpreter.formatter
        return runner.answeredBefore + (formatter.messagesAnswered ?? formatter.report.resultCount)
    }

    func stopAcceptingMessages(_ id: String) {
        guard jobsByID[id]?.acceptsMessages == true else { return }
        update(id) { $0.acceptsMessages = false }
        persist(id)
    }

    /// How long an agent asked to stop its turn has before SIGTERM.
    static let interruptGraceMilliseconds = 3_000

    /// A kill of an agent that can stop its turn by itself (an ACP agent, through its client's
    /// `session/cancel`) asks it first: it ends its turn, says so, and exits; SIGTERM follows
    /// only if it has not ended in `interruptGraceMilliseconds`. False: not such an agent.
    func askToStop(_ id: String, _ runner: RunningJob) -> Bool {
        guard let line = AgentProvider.named(runner.spec.provider)?.interruptLine, runner.process.acceptsInput,
            runner.process.sendInput(line)
        else { return false }
        let reason = runner.killReason ?? .request
        let seconds = Self.interruptGraceMilliseconds / 1_000
        emit(id, .log(LogLine(.system, reason.failsTheJob ? .error : .info, "\(reason.why): the agent is asked to cancel its turn (SIGTERM in \(seconds) s if it has not ended)")))
        runner.interruptTimer = loop.schedule(afterMilliseconds: Self.interruptGraceMilliseconds) { [weak self, weak runner] in
            guard let self, let runner, self.running[id] === runner, runner.exitStatus == nil else { return }
            runner.interruptTimer = nil
            self.signalGroup(id, runner)
        }
        return true
    }

    // MARK: permission questions

    /// Why an answer was not taken.
    public enum PermissionError: Error, Equatable {
        case unknownJob
        /// No question with that request key is open (answered, expired, or never asked).
        case noQuestion(String)
        case unknownOption(String)
        case notRunning(JobStatus)
    }

    /// An ACP exchange line: a permission question the client waits on (policy ask) becomes a
    /// `job:permission` event for the job's controller; its answer (a person's, the operator's
    /// default, or a cancel) closes it with another.
    func noticeQuestion(_ id: String, _ runner: RunningJob, _ text: String) {
        let asking = text.contains("\"session/request_permission\"")
        guard asking || (!runner.questions.isEmpty && text.contains("\"outcome\"")) else { return }
        guard let message = try? JSONParser.parse(Array(text.utf8)), let requestID = message["id"] else { return }
        let key = ACPClientSession.key(of: requestID)
        if asking, message["method"]?.stringValue == "session/request_permission" {
            guard runner.questions.count < ACPClientSession.maxQuestions else { return }
            let params = message["params"]
            let options = (params?["options"]?.arrayValue ?? []).prefix(16).map { option -> JSONValue in
                .object(["optionId": option["optionId"], "name": option["name"], "kind": option["kind"]])
            }
            runner.questions[key] = Set(options.compactMap { $0["optionId"]?.stringValue })
            let title = params?["toolCall"]?["title"]?.stringValue ?? params?["toolCall"]?["toolCallId"]?.stringValue ?? "a tool call"
            let expiresAt = WallClock.milliseconds() + configuration.policy.permissionTimeoutSeconds * 1_000
            emit(id, .permission(request: key, title: String(title.prefix(500)), options: .array(options), expiresAt: expiresAt, answer: nil))
        } else if message["method"] == nil, let outcome = message["result"]?["outcome"], runner.questions.removeValue(forKey: key) != nil {
            let answer = outcome["outcome"]?.stringValue == "selected" ? outcome["optionId"]?.stringValue ?? "selected" : "cancelled"
            emit(id, .permission(request: key, title: "", options: .array([]), expiresAt: nil, answer: answer))
            // The last thing the agent waited for: a turn that ended meanwhile ends the job.
            closeInputIfAnswered(id, runner)
        }
    }

    /// Claude Code asks to use a tool (`control_request` `can_use_tool`, with
    /// `--permission-prompt-tool stdio`): answered at once by the operator's allow or deny, or,
    /// with ask, a `job:permission` question for a person, the operator's default answering
    /// once `--permission-timeout` passes. (The CLI waits for the answer on its stdin: while
    /// no server runs, nothing answers it.)
    func claudeAsks(_ id: String, _ runner: RunningJob, _ text: String) {
        guard let message = try? JSONParser.parse(Array(text.utf8)), message["type"]?.stringValue == "control_request",
            let request = message["request_id"]?.stringValue, message["request"]?["subtype"]?.stringValue == "can_use_tool",
            runner.claudeQuestions[request] == nil, runner.claudeQuestions.count < ACPClientSession.maxQuestions
        else { return }
        let title = ClaudeStreamFormatter.permissionTitle(message["request"])
        let input = message["request"]?["input"] ?? .object([])
        let policy = configuration.policy
        runner.claudeQuestions[request] = (input, title, nil)
        guard policy.agentPermissions == .ask else {
            return answerClaude(id, runner, request: request, allow: policy.agentPermissions == .allow, by: "the operator's policy")
        }
        let options: JSONValue = .array([
            .object(["optionId": "allow", "name": "Allow", "kind": "allow_once"]), .object(["optionId": "deny", "name": "Deny", "kind": "reject_once"]),
        ])
        runner.questions[request] = ["allow", "deny"]
        let milliseconds = policy.permissionTimeoutSeconds * 1_000
        runner.claudeQuestions[request]?.timer = loop.schedule(afterMilliseconds: milliseconds) { [weak self, weak runner] in
            guard let self, let runner, self.running[id] === runner, runner.claudeQuestions[request] != nil else { return }
            self.answerClaude(id, runner, request: request, allow: policy.permissionDefault == .allow, by: "the operator's default (no answer in time)")
        }
        emit(id, .permission(request: request, title: title, options: options, expiresAt: WallClock.milliseconds() + milliseconds, answer: nil))
    }

    /// Writes the `control_response` to Claude Code's stdin, and says so in the log.
    func answerClaude(_ id: String, _ runner: RunningJob, request: String, allow: Bool, by whom: String) {
        guard let question = runner.claudeQuestions.removeValue(forKey: request) else { return }
        if let timer = question.timer { loop.cancel(timer) }
        let asked = runner.questions.removeValue(forKey: request) != nil
        let answer: JSONValue = allow
            ? .object(["behavior": "allow", "updatedInput": question.input])
            : .object(["behavior": "deny", "message": .string("denied by \(whom)")])
        let response: JSONValue = .object([
            "type": "control_response",
            "response": .object(["subtype": "success", "request_id": .string(request), "response": answer]),
        ])
        _ = runner.process.sendInput(JSONWriter.serialize(response) + [0x0A])
        emit(id, .log(LogLine(.system, .info, "permission for \(question.title): \(allow ? "allowed" : "denied") by \(whom)")))
        if asked { emit(id, .permission(request: request, title: "", options: .array([]), expiresAt: nil, answer: allow ? "allow" : "deny")) }
        closeInputIfAnswered(id, runner)
    }

    /// Events read back, at most, for the questions a re-attached job had open.
    static let questionScanEvents = 2_000

    /// A job taken up after a restart: the permission questions it had open (asked, not yet
    /// answered, in its log) are open again, for a person to answer, and Claude Code's get
    /// the operator's default when their time is up (the CLI waits on its stdin for an answer;
    /// an ACP agent's client answers by itself at the timeout).
    func reopenQuestions(_ id: String, _ runner: RunningJob) {
        guard runner.asksPermissions, let lastSeq = jobsByID[id]?.lastSeq else { return }
        var open: [String: (title: String, options: Set<String>, expiresAt: Int?)] = [:]
        var order: [String] = []
        var inputs: [String: JSONValue] = [:]
        for event in store.events(for: id, since: max(0, lastSeq - Self.questionScanEvents)) {
            switch event.payload {
            case .permission(let request, let title, let options, let expiresAt, let answer):
                if answer != nil {
                    open[request] = nil
                } else {
                    open[request] = (title, Set((options.arrayValue ?? []).compactMap { $0["optionId"]?.stringValue }), expiresAt)
                    order.append(request)
                }
            case .agentEvent(let text) where text.contains("\"can_use_tool\""):
                guard let message = try? JSONParser.parse(text), let request = message["request_id"]?.stringValue,
                    let input = message["request"]?["input"]
                else { continue }
                inputs[request] = input
            default:
                continue
            }
        }
        let policy = configuration.policy
        for request in order where runner.questions[request] == nil {
            guard let question = open[request], runner.questions.count < ACPClientSession.maxQuestions else { continue }
            runner.questions[request] = question.options
            guard let input = inputs[request] else { continue }  // an ACP agent's: its client answers at the timeout
            runner.claudeQuestions[request] = (input, question.title, nil)
            let left = max(0, (question.expiresAt ?? 0) - WallClock.milliseconds())
            runner.claudeQuestions[request]?.timer = loop.schedule(afterMilliseconds: left) { [weak self, weak runner] in
                guard let self, let runner, self.running[id] === runner, runner.claudeQuestions[request] != nil else { return }
                self.answerClaude(id, runner, request: request, allow: policy.permissionDefault == .allow, by: "the operator's default (no answer in time)")
            }
        }
        if !runner.questions.isEmpty {
            emit(id, .log(LogLine(.system, .info, "\(runner.questions.count) permission question(s) still open after the restart")))
        }
    }

    /// A person answers job `id`'s open permission question `request` with one of its
    /// options (nil: cancel it). The agent's client passes it on; the exchange shows it.
    public func answerPermission(_ id: String, request: String, optionId: String?) throws(PermissionError) {
        guard let job = jobsByID[id] else { throw .unknownJob }
        guard let runner = running[id], runner.lifecycle.phase == .running else { throw .notRunning(job.status) }
        guard let options = runner.questions[request] else { throw .noQuestion(request) }
        if let optionId, !options.contains(optionId) { throw .unknownOption(optionId) }
        if runner.claudeQuestions[request] != nil {
            return answerClaude(id, runner, request: request, allow: optionId == "allow", by: "a person")
        }
        var fields: [JSONValue.Member] = [.init("type", "permission"), .init("request", .string(request))]
        if let optionId { fields.append(.init("optionId", .string(optionId))) }
        guard runner.process.sendInput(JSONWriter.serialize(.object(fields)) + [0x0A]) else { throw .notRunning(job.status) }
    }
}
