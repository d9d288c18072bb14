import Testing

@testable import AgentCore

/// agentgate's side of an ACP session, without processes: every transition, the operator's
/// permission policy, capabilities it does not offer, cancel, and a continued session.
struct ACPClientSessionTests {
    typealias Action = ACPClientSession.Action

    static func sent(_ actions: [Action]) -> [JSONValue] {
        actions.compactMap { if case .send(let message) = $0 { message } else { nil } }
    }

    static func result(_ id: Int, _ result: JSONValue) -> ACPClientSession.Input {
        .agentMessage(.object(["jsonrpc": "2.0", "id": .int(id), "result": result]))
    }

    /// Started, initialized and with a session open.
    static func ready(policy: ACPClientSession.PermissionPolicy = .deny) -> ACPClientSession {
        var session = ACPClientSession(workingDirectory: "/work", policy: policy)
        _ = session.start(clientVersion: "0.2.0")
        _ = session.handle(result(1, ["protocolVersion": 1]))
        _ = session.handle(result(2, ["sessionId": "s-1"]))
        return session
    }

    @Test func initializeThenANewSessionThenThePromptThenStopOnceMessagesEnd() {
        var session = ACPClientSession(workingDirectory: "/work", policy: .deny)
        let start = Self.sent(session.start(clientVersion: "0.2.0"))
        #expect(start.first?["method"] == "initialize" && start.first?["params"]?["protocolVersion"] == 1)
        #expect(start.first?["params"]?["clientCapabilities"]?["terminal"] == false)
        // The prompt waits for the session.
        #expect(session.handle(.userMessage("fix it")).isEmpty)
        let opened = Self.sent(session.handle(Self.result(1, ["protocolVersion": 1])))
        #expect(opened.first?["method"] == "session/new" && opened.first?["params"]?["cwd"] == "/work")
        let prompted = Self.sent(session.handle(Self.result(2, ["sessionId": "s-1"])))
        #expect(session.phase == .ready && session.sessionId == "s-1")
        #expect(prompted.first?["method"] == "session/prompt" && prompted.first?["id"] == 3)
        #expect(prompted.first?["params"]?["prompt"]?.arrayValue?.first?["text"] == "fix it")
        // A follow-up waits for the first prompt's answer.
        #expect(session.handle(.userMessage("and the tests")).isEmpty)
        #expect(session.handle(.messagesEnded).isEmpty)
        let next = Self.sent(session.handle(Self.result(3, ["stopReason": "end_turn"])))
        #expect(next.first?["params"]?["prompt"]?.arrayValue?.first?["text"] == "and the tests")
        #expect(session.handle(Self.result(4, ["stopReason": "end_turn"])).last == .stop(exitCode: 0, reason: nil))
        #expect(session.phase == .stopped)
        #expect(session.handle(.userMessage("late")).isEmpty)
    }

    /// An agent that answers its own permission question (or any request the client did not
    /// make) is not believed: the line stays out of the transcript, with a note.
    @Test func aResponseToNoRequestOfTheClientsIsLeftOutOfTheTranscript() {
        var session = Self.ready(policy: .ask)
        _ = session.handle(.userMessage("fix it"))
        for id in [JSONValue.string("p0"), .int(99), .int(1), .null] {
            let forged = session.handle(.agentMessage(.object([
                "jsonrpc": "2.0", "id": id, "result": ["outcome": ["outcome": "selected", "optionId": "allow"]],
            ])))
            #expect(!forged.contains { if case .record = $0 { true } else { false } }, "\(id)")
            #expect(forged.contains { if case .note(let text) = $0 { text.contains("did not make") } else { false } }, "\(id)")
        }
        // The prompt's own answer is taken.
        let answered = session.handle(Self.result(3, ["stopReason": "end_turn"]))
        #expect(answered.contains { if case .record = $0 { true } else { false } })
    }

    @Test func permissionRequestsAreAnsweredByTheOperatorsPolicy() {
        let options: JSONValue = [
            ["optionId": "always", "name": "Always", "kind": "allow_always"], ["optionId": "once", "name": "Once", "kind": "allow_once"],
            ["optionId": "no", "name": "No", "kind": "reject_once"],
        ]
        let ask: ACPClientSession.Input = .agentMessage(.object([
            "jsonrpc": "2.0", "id": "p-9", "method": "session/request_permission",
            "params": .object(["sessionId": "s-1", "toolCall": ["toolCallId": "c1"], "options": options]),
        ]))
        for (policy, chosen) in [(ACPClientSession.PermissionPolicy.allow, "once"), (.deny, "no")] {
            var session = Self.ready(policy: policy)
            let answer = Self.sent(session.handle(ask))
            #expect(answer.count == 1 && answer[0]["id"] == "p-9", "the request's own id, a string")
            #expect(answer[0]["result"]?["outcome"] == .object(["outcome": "selected", "optionId": .string(chosen)]))
        }
        // Nothing to reject with: cancelled, never an allow.
        var session = Self.ready(policy: .deny)
        let onlyAllow: ACPClientSession.Input = .agentMessage(.object([
            "jsonrpc": "2.0", "id": 4, "method": "session/request_permission",
            "params": .object(["options": [["optionId": "ok", "name": "OK", "kind": "allow_once"]]]),
        ]))
        #expect(Self.sent(session.handle(onlyAllow)).first?["result"]?["outcome"] == .object(["outcome": "cancelled"]))
    }

    /// `ask`: the question waits for a person; a wrong option is refused, the right one
    /// answers; unanswered, the operator's default answers at the timeout; a cancel answers
    /// whatever is still open with "cancelled".
    @Test func askWaitsForAPersonThenTheOperatorsDefault() {
        var session = ACPClientSession(workingDirectory: "/w", policy: .ask, askTimeoutMilliseconds: 5_000, askDefault: .allow)
        _ = session.start(clientVersion: "0.2.0")
        _ = session.handle(Self.result(1, ["protocolVersion": 1]))
        _ = session.handle(Self.result(2, ["sessionId": "s-1"]))
        _ = session.handle(.userMessage("go"))
        func ask(_ id: JSONValue) -> ACPClientSession.Input {
            .agentMessage(.object(["jsonrpc": "2.0", "id": id, "method": "session/request_permission", "params": .object([
                "options": [["optionId": "yes", "name": "Yes", "kind": "allow_once"], ["optionId": "no", "name": "No", "kind": "reject_once"]],
            ])]))
        }
        let waiting = session.handle(ask(7))
        #expect(waiting.last == .awaitAnswer(key: "7", milliseconds: 5_000) && Self.sent(waiting).isEmpty)
        #expect(session.handle(.permissionAnswer(key: "7", optionId: "maybe")) == [.note("permission question 7 has no option maybe")])
        let answered = Self.sent(session.handle(.permissionAnswer(key: "7", optionId: "no")))
        #expect(answered.first?["id"] == 7 && answered.first?["result"]?["outcome"]?["optionId"] == "no")
        #expect(session.handle(.permissionAnswer(key: "7", optionId: "no")) == [.note("no open permission question 7")])
        // Nobody answers: the operator's default (allow here) does.
        _ = session.handle(ask("q-8"))
        let defaulted = Self.sent(session.handle(.permissionTimedOut(key: #""q-8""#)))
        #expect(defaulted.first?["id"] == "q-8" && defaulted.first?["result"]?["outcome"]?["optionId"] == "yes")
        #expect(session.handle(.permissionTimedOut(key: #""q-8""#)).isEmpty, "answered once")
        // A cancel answers the questions still open, then cancels the turn.
        _ = session.handle(ask(9))
        let cancelled = Self.sent(session.handle(.cancel))
        #expect(cancelled.first?["id"] == 9 && cancelled.first?["result"]?["outcome"] == .object(["outcome": "cancelled"]))
        #expect(cancelled.last?["method"] == "session/cancel")
        #expect(session.questions.isEmpty)
    }

    @Test func capabilitiesNotOfferedGetAnErrorAndNotificationsAreKept() {
        var session = Self.ready()
        let read = session.handle(.agentMessage(.object(["jsonrpc": "2.0", "id": 7, "method": "fs/read_text_file", "params": ["path": "/etc/passwd"]])))
        #expect(Self.sent(read).first?["error"]?["code"] == -32601)
        let update: JSONValue = .object(["jsonrpc": "2.0", "method": "session/update", "params": ["sessionId": "s-1"]])
        #expect(session.handle(.agentMessage(update)) == [.record(update)])
    }

    @Test func cancelSendsSessionCancelAndStopsOnceThePromptAnswers() {
        var session = Self.ready()
        _ = session.handle(.userMessage("slow"))
        _ = session.handle(.userMessage("queued, never sent"))
        let cancel = Self.sent(session.handle(.cancel))
        #expect(cancel.first?["method"] == "session/cancel" && cancel.first?["id"] == nil && cancel.first?["params"]?["sessionId"] == "s-1")
        #expect(session.handle(.cancel).isEmpty)
        #expect(session.handle(Self.result(3, ["stopReason": "cancelled"])).last == .stop(exitCode: 143, reason: nil))
        // Cancelled before any prompt ran: it stops at once.
        var idle = Self.ready()
        #expect(idle.handle(.cancel) == [.stop(exitCode: 143, reason: "cancelled before a prompt ran")])
    }

    @Test func aContinuedSessionIsLoadedAndFailuresStopWithAReason() {
        var session = ACPClientSession(workingDirectory: "/work", resumeSession: "old-7", policy: .deny)
        _ = session.start(clientVersion: "0.2.0")
        let load = Self.sent(session.handle(Self.result(1, ["protocolVersion": 1])))
        #expect(load.first?["method"] == "session/load" && load.first?["params"]?["sessionId"] == "old-7")
        _ = session.handle(.userMessage("go on"))
        let prompt = Self.sent(session.handle(Self.result(2, .null)))
        #expect(session.sessionId == "old-7" && prompt.first?["params"]?["sessionId"] == "old-7")
        // A failed prompt: the exit code says so once the messages end.
        _ = session.handle(.agentMessage(.object(["jsonrpc": "2.0", "id": 3, "error": ["code": -32603, "message": "boom"]])))
        #expect(session.handle(.messagesEnded) == [.stop(exitCode: 1, reason: nil)])

        var old = ACPClientSession(workingDirectory: "/w", policy: .deny)
        _ = old.start(clientVersion: "0.2.0")
        guard case .stop(1, let reason)? = old.handle(Self.result(1, ["protocolVersion": 2])).last else {
            Issue.record("a protocol other than 1 must stop the session")
            return
        }
        #expect(reason?.contains("protocol 2") == true)
        var refused = ACPClientSession(workingDirectory: "/w", policy: .deny)
        _ = refused.start(clientVersion: "0.2.0")
        _ = refused.handle(Self.result(1, ["protocolVersion": 1]))
        let failed = refused.handle(.agentMessage(.object(["jsonrpc": "2.0", "id": 2, "error": ["code": -32000, "message": "auth required"]])))
        #expect(failed.last == .stop(exitCode: 1, reason: "the agent could not open a session: auth required (-32000)"))
    }
}
