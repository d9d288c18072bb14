import AgentCore

/// One message a WebSocket client sends on `/ws`, checked: what the hub does with it, or the
/// error it answers. No I/O, so every malformed message is a unit test.
enum ViewerCommand: Equatable {
    /// `project`: a `"*"` subscription to that project's jobs only.
    /// `presence`: also get `presence` messages for the job (viewers, who controls it).
    case subscribe(job: String, since: Int, rawEvents: Bool, project: String? = nil, presence: Bool = false)
    case unsubscribe(job: String)
    /// The launch request's fields (the message without `op` and `req`).
    case launch(JSONValue)
    /// `"*"`: every running job.
    case kill(job: String)
    /// A finished job, deleted with its events and files.
    case delete(job: String)
    /// A user's message to a running job's agent (a follow-up).
    case send(job: String, text: String)
    /// Ask for control of a job (`JobControl`); give it up; hand it to another connection.
    case control(job: String)
    case release(job: String)
    case handOver(job: String, to: Int)
    /// An answer to a job's permission question (the fields of `POST …/permissions`).
    case answer(job: String, fields: JSONValue)

    /// Parses a text message; the error names what is wrong. `request` is the message's
    /// `req` (echoed in the answer), when it has one.
    static func parse(_ payload: [UInt8], isText: Bool) -> (command: Result<ViewerCommand, APIError>, request: JSONValue?) {
        guard isText, let value = try? JSONParser.parse(payload), case .object(let members) = value else {
            return (.failure(.invalidMessage("send one JSON object per text message")), nil)
        }
        let request = value["req"]
        return (parse(value, members: members), request)
    }

    private static func parse(_ value: JSONValue, members: [JSONValue.Member]) -> Result<ViewerCommand, APIError> {
        let op = value["op"]?.stringValue
        switch op {
        case "subscribe":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("subscribe needs job")) }
            let since = value["since"]?.intValue ?? 0
            guard since >= 0 else { return .failure(.invalidMessage("since must be ≥ 0")) }
            let project = value["project"]?.stringValue
            if value["project"] != nil, job != "*" || project.map(LaunchRequest.isProjectName) != true {
                return .failure(.invalidMessage("project filters a \"*\" subscription: a project name (\(LaunchRequest.projectPattern))"))
            }
            return .success(.subscribe(
                job: job, since: since, rawEvents: value["events"]?.boolValue ?? false, project: project,
                presence: job != "*" && value["presence"]?.boolValue == true))
        case "unsubscribe":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("unsubscribe needs job")) }
            return .success(.unsubscribe(job: job))
        case "launch":
            // The launch fields sit beside op and req, which are the message's own.
            return .success(.launch(.object(members.filter { $0.key != "op" && $0.key != "req" })))
        case "kill":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("kill needs job")) }
            return .success(.kill(job: job))
        case "delete":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("delete needs job")) }
            return .success(.delete(job: job))
        case "send":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("send needs job")) }
            do throws(APIError) {
                return .success(.send(job: job, text: try JobCommands.messageText(value)))
            } catch {
                return .failure(error)
            }
        case "control", "release":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("\(op ?? "") needs job")) }
            return .success(op == "control" ? .control(job: job) : .release(job: job))
        case "answer":
            guard let job = value["job"]?.stringValue else { return .failure(.invalidMessage("answer needs job")) }
            return .success(.answer(job: job, fields: value))
        case "handover":
            guard let job = value["job"]?.stringValue, let to = value["to"]?.intValue, to > 0 else {
                return .failure(.invalidMessage("handover needs job and to (a connection id from a control_request)"))
            }
            return .success(.handOver(job: job, to: to))
        default:
            return .failure(APIError(
                400, "unknown_op", "op must be subscribe, unsubscribe, launch, kill, delete, send, answer, control, release or handover"))
        }
    }
}
