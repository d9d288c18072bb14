/// agentgate's side of an Agent Client Protocol session (JSON-RPC 2.0 over the agent's stdio),
/// as a state machine with no I/O: what arrives (a user's message, the end of the messages,
/// a line from the agent, a cancel) goes in; what to write to the agent, what to keep in the
/// transcript and when to stop come out. `agentgate acp-client` does the I/O.
///
/// ```
///  start ─▶ initialize ─▶ session/new (or session/load to continue) ─▶ ready
///  ready + a message ─▶ session/prompt … its response ─▶ the next message, or, once the
///  messages ended, stop (exit 0)
///  session/request_permission ─▶ answered at once by the operator's policy
///  cancel ─▶ session/cancel; the prompt's response (stopReason "cancelled") ─▶ stop
/// ```
public struct ACPClientSession: Sendable {
    /// How permission requests are answered: the operator's choice, never a request's.
    public enum PermissionPolicy: String, Sendable, CaseIterable {
        /// The first option of kind allow_once (or allow_always).
        case allow
        /// The first option of kind reject_once (or reject_always); cancelled when none.
        case deny
        /// The job's controller answers (a `permission` line on the client's stdin); past
        /// the operator's timeout, the operator's default (allow or deny) does.
        case ask
    }

    public enum Input: Sendable {
        /// A user's message: the job's prompt, then each follow-up.
        case userMessage(String)
        /// No more messages will come (the job's stdin ended).
        case messagesEnded
        /// One JSON-RPC message from the agent.
        case agentMessage(JSONValue)
        /// The job is being stopped.
        case cancel
        /// A person's answer to a permission question (`key`: the request's id as JSON):
        /// one of its options, or nil to cancel it.
        case permissionAnswer(key: String, optionId: String?)
        /// Nobody answered in time: the operator's default answers.
        case permissionTimedOut(key: String)
    }

    public enum Action: Sendable, Equatable {
        /// Write to the agent (and keep in the transcript).
        case send(JSONValue)
        /// Keep in the transcript only (what the agent sent).
        case record(JSONValue)
        /// Close the agent's stdin, let it exit (killing it if it does not) and exit with this code.
        case stop(exitCode: Int32, reason: String?)
        /// A permission question waits for a person: `permissionTimedOut(key)` after this long.
        case awaitAnswer(key: String, milliseconds: Int)
        /// Something the client itself has to say (a refused answer), for its stderr.
        case note(String)
    }

    public enum Phase: Sendable, Equatable {
        case starting, initializing, openingSession, ready, stopped
    }

    public let workingDirectory: String
    /// A session of the agent to continue (`session/load`) rather than a new one.
    public let resumeSession: String?
    public let policy: PermissionPolicy
    /// With `ask`: how long a question waits, and the operator's answer after that.
    public let askTimeoutMilliseconds: Int
    public let askDefault: PermissionPolicy
    public private(set) var phase = Phase.starting
    /// Permission questions waiting for a person, by the request's id as JSON.
    public private(set) var questions: [String: (id: JSONValue, options: [JSONValue])] = [:]
    static let maxQuestions = 64
    public private(set) var sessionId: String?
    private var nextID = 1
    private var initializeID = 0
    private var sessionRequestID = 0
    private var promptID: Int?
    private var queued: [String] = []
    private var messagesEnded = false
    private var cancelling = false
    /// The last prompt failed (an error response or a refusal): the exit code says so.
    private var lastPromptFailed = false

    public init(
        workingDirectory: String, resumeSession: String? = nil, policy: PermissionPolicy, askTimeoutMilliseconds: Int = 120_000,
        askDefault: PermissionPolicy = .deny
    ) {
        self.workingDirectory = workingDirectory
        self.resumeSession = resumeSession
        self.policy = policy
        self.askTimeoutMilliseconds = askTimeoutMilliseconds
        self.askDefault = askDefault == .ask ? .deny : askDefault
    }

    /// A JSON-RPC id as the key of a question (`5`, `"p-9"`).
    public static func key(of id: JSONValue) -> String { JSONWriter.string(id) }

    /// `initialize`, with what agentgate offers: no file system, no terminal (the agent uses
    /// its own tools in its working directory).
    public mutating func start(clientVersion: String) -> [Action] {
        guard phase == .starting else { return [] }
        phase = .initializing
        initializeID = takeID()
        return [.send(Self.request(initializeID, "initialize", [
            "protocolVersion": .int(1),
            "clientCapabilities": .object(["fs": .object(["readTextFile": .bool(false), "writeTextFile": .bool(false)]), "terminal": .bool(false)]),
            "clientInfo": .object(["name": .string("agentgate"), "version": .string(clientVersion)]),
        ]))]
    }

    public mutating func handle(_ input: Input) -> [Action] {
        guard phase != .stopped else { return [] }
        switch input {
        case .userMessage(let text):
            queued.append(text)
            return promptIfReady()
        case .messagesEnded:
            messagesEnded = true
            return stopIfDone()
        case .cancel:
            guard !cancelling else { return [] }
            cancelling = true
            queued.removeAll()
            // Questions still open are answered "cancelled" (the protocol's rule on cancel).
            let open = questions.values.map { Action.send(Self.outcome(for: $0.id, nil)) }
            questions.removeAll()
            guard promptID != nil, let sessionId else { return open + stop(143, "cancelled before a prompt ran") }
            return open + [.send(Self.notification("session/cancel", ["sessionId": .string(sessionId)]))]
        case .permissionAnswer(let key, let optionId):
            guard let question = questions[key] else { return [.note("no open permission question \(key)")] }
            if let optionId, !question.options.contains(where: { $0["optionId"]?.stringValue == optionId }) {
                return [.note("permission question \(key) has no option \(optionId)")]
            }
            questions[key] = nil
            return [.send(Self.outcome(for: question.id, optionId.map(JSONValue.string)))]
        case .permissionTimedOut(let key):
            guard let question = questions.removeValue(forKey: key) else { return [] }
            return [.send(Self.outcome(for: question.id, Self.choose(askDefault, from: question.options)))]
        case .agentMessage(let message):
            return received(message)
        }
    }

    // MARK: from the agent

    private mutating func received(_ message: JSONValue) -> [Action] {
        if let method = message["method"]?.stringValue {
            guard let id = message["id"] else { return [.record(message)] }  // a notification
            return [.record(message), agentRequest(method, id: id, message["params"])]
        }
        // A response to a request agentgate did not make (or no longer waits for) is not put
        // in the transcript: an agent could answer its own permission question there, and the
        // log would show an answer nobody gave (attacker trial).
        guard let id = message["id"]?.intValue, awaits(id) else {
            let shown = message["id"].map { String(JSONWriter.string($0).prefix(64)) } ?? "none"
            return [.note("the agent answered a request agentgate did not make (id \(shown)): left out of the transcript")]
        }
        var actions: [Action] = [.record(message)]
        let error = message["error"]
        switch id {
        case initializeID where phase == .initializing:
            if let error { return actions + stop(1, "the agent refused initialize: \(Self.describe(error))") }
            guard message["result"]?["protocolVersion"]?.intValue == 1 else {
                return actions + stop(1, "the agent speaks ACP protocol \(message["result"]?["protocolVersion"].map(JSONWriter.string) ?? "?"), not 1")
            }
            phase = .openingSession
            sessionRequestID = takeID()
            var params: [String: JSONValue] = ["cwd": .string(workingDirectory), "mcpServers": .array([])]
            if let resumeSession { params["sessionId"] = .string(resumeSession) }
            actions.append(.send(Self.request(sessionRequestID, resumeSession == nil ? "session/new" : "session/load", params)))
        case sessionRequestID where phase == .openingSession:
            if let error { return actions + stop(1, "the agent could not open a session: \(Self.describe(error))") }
            guard let session = resumeSession ?? message["result"]?["sessionId"]?.stringValue else {
                return actions + stop(1, "the agent's session/new answer has no sessionId")
            }
            sessionId = session
            phase = .ready
            actions += cancelling ? stop(143, nil) : promptIfReady()
        case promptID:
            promptID = nil
            lastPromptFailed = error != nil || message["result"]?["stopReason"]?.stringValue == "refusal"
            if cancelling { return actions + stop(143, nil) }
            actions += promptIfReady()
        default:
            break
        }
        return actions
    }

    /// Whether a response with this id answers a request the client waits on.
    private func awaits(_ id: Int) -> Bool {
        (id == initializeID && phase == .initializing) || (id == sessionRequestID && phase == .openingSession) || id == promptID
    }

    /// The agent asks something of the client: a permission (answered by the policy), or a
    /// capability agentgate does not offer (an error, so the agent goes on without it).
    private mutating func agentRequest(_ method: String, id: JSONValue, _ params: JSONValue?) -> Action {
        guard method == "session/request_permission" else {
            return .send(.object(["jsonrpc": .string("2.0"), "id": id, "error": .object([
                "code": .int(-32601), "message": .string("\(method) is not offered by agentgate"),
            ])]))
        }
        let options = params?["options"]?.arrayValue ?? []
        guard policy == .ask, !cancelling else { return .send(Self.outcome(for: id, cancelling ? nil : Self.choose(policy, from: options))) }
        let key = Self.key(of: id)
        // More open questions than anyone could answer: the operator's default, at once.
        guard questions.count < Self.maxQuestions || questions[key] != nil else {
            return .send(Self.outcome(for: id, Self.choose(askDefault, from: options)))
        }
        questions[key] = (id, options)
        return .awaitAnswer(key: key, milliseconds: askTimeoutMilliseconds)
    }

    /// The option a policy picks: allow_once (or allow_always) for allow, reject_once (or
    /// reject_always) for deny; nil (cancelled) when the request offers none of those.
    static func choose(_ policy: PermissionPolicy, from options: [JSONValue]) -> JSONValue? {
        let kinds: [String] = policy == .allow ? ["allow_once", "allow_always"] : ["reject_once", "reject_always"]
        return kinds.lazy.compactMap { kind in options.first { $0["kind"]?.stringValue == kind }?["optionId"] }.first
    }

    /// The response to a permission request: the option selected, or cancelled.
    static func outcome(for id: JSONValue, _ optionId: JSONValue?) -> JSONValue {
        let outcome: JSONValue = optionId.map { .object(["outcome": .string("selected"), "optionId": $0]) }
            ?? .object(["outcome": .string("cancelled")])
        return .object(["jsonrpc": .string("2.0"), "id": id, "result": .object(["outcome": outcome])])
    }

    // MARK: prompts

    private mutating func promptIfReady() -> [Action] {
        guard phase == .ready, promptID == nil, !cancelling else { return [] }
        guard !queued.isEmpty, let sessionId else { return stopIfDone() }
        let text = queued.removeFirst()
        let id = takeID()
        promptID = id
        return [.send(Self.request(id, "session/prompt", [
            "sessionId": .string(sessionId), "prompt": .array([.object(["type": .string("text"), "text": .string(text)])]),
        ]))]
    }

    /// Every message answered and no more to come: the session ends.
    private mutating func stopIfDone() -> [Action] {
        guard messagesEnded, queued.isEmpty, promptID == nil, phase == .ready else { return [] }
        return stop(lastPromptFailed ? 1 : 0, nil)
    }

    private mutating func stop(_ code: Int32, _ reason: String?) -> [Action] {
        phase = .stopped
        return [.stop(exitCode: code, reason: reason)]
    }

    private mutating func takeID() -> Int {
        defer { nextID += 1 }
        return nextID
    }

    static func request(_ id: Int, _ method: String, _ params: [String: JSONValue]) -> JSONValue {
        .object(["jsonrpc": .string("2.0"), "id": .int(id), "method": .string(method), "params": .object(params.sorted { $0.key < $1.key }.map { .init($0.key, $0.value) })])
    }

    static func notification(_ method: String, _ params: [String: JSONValue]) -> JSONValue {
        .object(["jsonrpc": .string("2.0"), "method": .string(method), "params": .object(params.sorted { $0.key < $1.key }.map { .init($0.key, $0.value) })])
    }

    private static func describe(_ error: JSONValue) -> String {
        (error["message"]?.stringValue ?? "error") + (error["code"]?.intValue.map { " (\($0))" } ?? "")
    }
}
