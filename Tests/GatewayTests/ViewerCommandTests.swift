import AgentCore
import Testing

@testable import Gateway

/// What `/ws` makes of each message, and how a refusal is said on each transport.
@Suite struct ViewerCommandTests {
    static func parse(_ text: String, isText: Bool = true) -> (Result<ViewerCommand, APIError>, JSONValue?) {
        let (command, request) = ViewerCommand.parse(Array(text.utf8), isText: isText)
        return (command, request)
    }

    @Test func wellFormedOpsBecomeCommands() throws {
        #expect(try Self.parse(#"{"op":"subscribe","job":"j","since":7,"events":true,"req":1}"#).0.get() == .subscribe(job: "j", since: 7, rawEvents: true))
        #expect(try Self.parse(#"{"op":"subscribe","job":"j"}"#).0.get() == .subscribe(job: "j", since: 0, rawEvents: false))
        #expect(try Self.parse(#"{"op":"subscribe","job":"*","project":"web"}"#).0.get() == .subscribe(job: "*", since: 0, rawEvents: false, project: "web"))
        for bad in [#"{"op":"subscribe","job":"j","project":"web"}"#, #"{"op":"subscribe","job":"*","project":"-x"}"#, #"{"op":"subscribe","job":"*","project":7}"#] {
            #expect(throws: APIError.self, "\(bad)") { try Self.parse(bad).0.get() }
        }
        #expect(try Self.parse(#"{"op":"unsubscribe","job":"*"}"#).0.get() == .unsubscribe(job: "*"))
        #expect(try Self.parse(#"{"op":"kill","job":"*","req":"k"}"#).0.get() == .kill(job: "*"))
        // A launch keeps its fields, not the message's own op and req.
        let launch = try Self.parse(#"{"op":"launch","req":3,"provider":"claude","prompt":"hi"}"#).0.get()
        #expect(launch == .launch(.object(["provider": "claude", "prompt": "hi"])))
        #expect(Self.parse(#"{"op":"kill","job":"x","req":{"n":1}}"#).1 == .object(["n": .int(1)]))
        #expect(try Self.parse(#"{"op":"send","job":"j","text":"now the tests","req":2}"#).0.get() == .send(job: "j", text: "now the tests"))
        #expect(try Self.parse(#"{"op":"control","job":"j"}"#).0.get() == .control(job: "j"))
        #expect(try Self.parse(#"{"op":"release","job":"j"}"#).0.get() == .release(job: "j"))
        #expect(try Self.parse(#"{"op":"handover","job":"j","to":4}"#).0.get() == .handOver(job: "j", to: 4))
        #expect(try Self.parse(#"{"op":"subscribe","job":"j","presence":true}"#).0.get() == .subscribe(job: "j", since: 0, rawEvents: false, presence: true))
    }

    @Test func malformedMessagesAreRefusedWithACodeAndTheirReq() {
        let cases: [(String, String)] = [
            ("not json", "invalid_message"),
            ("[1,2]", "invalid_message"),
            (#"{"op":"subscribe","req":1}"#, "invalid_message"),
            (#"{"op":"subscribe","job":"j","since":-1}"#, "invalid_message"),
            (#"{"op":"unsubscribe"}"#, "invalid_message"),
            (#"{"op":"kill","job":5}"#, "invalid_message"),
            (#"{"op":"explode","req":9}"#, "unknown_op"),
            (#"{"op":"send","text":"hi"}"#, "invalid_message"),
            (#"{"op":"send","job":"j"}"#, "missing_field"),
            (#"{"op":"send","job":"j","text":7}"#, "missing_field"),
            (#"{"op":"send","job":"j","text":"hi","urgent":true}"#, "unknown_field"),
            (#"{"op":"control"}"#, "invalid_message"),
            (#"{"op":"handover","job":"j"}"#, "invalid_message"),
            (#"{"op":"handover","job":"j","to":0}"#, "invalid_message"),
            (#"{"op":"answer","request":"5"}"#, "invalid_message"),
            (#"{"job":"j"}"#, "unknown_op"),
        ]
        for (text, code) in cases {
            guard case .failure(let error) = Self.parse(text).0 else {
                Issue.record("accepted: \(text)")
                continue
            }
            #expect(error.code == code, "\(text)")
            #expect(error.status == 400)
        }
        #expect(Self.parse(#"{"op":"subscribe"}"#, isText: false).0 == .failure(.invalidMessage("send one JSON object per text message")))
    }

    @Test func oneErrorSaysItselfOnRESTAndOnWebSocket() throws {
        var error = APIError(400, "invalid_field", "bad model", field: "model")
        let rest = error.response
        #expect(rest.status == 400)
        #expect(try JSONParser.parse(rest.body) == .object(["error": "bad model", "code": "invalid_field", "field": "model"]))
        #expect(error.message(request: .int(4)) == .object(["type": "error", "error": "bad model", "code": "invalid_field", "field": "model", "req": .int(4)]))
        error = .methodNotAllowed("GET, POST")
        #expect(error.response.status == 405)
        #expect(error.response.headers["Allow"] == "GET, POST")
        #expect(APIError(LaunchError(.insufficientStorage, field: nil, "full")).status == 507)
        #expect(APIError(JobManager.KillError.alreadyFinished("j", .done)).status == 409)
        #expect(APIError(JobManager.KillError.notFound("j")) == .unknownJob("j"))
    }
}
