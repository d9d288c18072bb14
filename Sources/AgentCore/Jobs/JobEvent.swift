/// One entry of a job's history. Seqs start at 1 and increase by one per event, so a viewer
/// that saw seq N resumes with everything after N.
public struct JobEvent: Sendable, Equatable {
    /// The rare, large cases (a whole `Job`, a permission question) are boxed (`indirect`):
    /// the payload stays the size of a log line, so the events of a job's output, copied
    /// from the job to storage and to the viewers, are small (with `Job` inline each copy
    /// moved several hundred bytes, a tenth of the server's time at 100,000 lines a second).
    public enum Payload: Sendable, Equatable {
        /// The job is running (or failed to start: `job:completed` follows at once).
        indirect case started(Job)
        /// The job's status changed while it runs (`stopping` during a kill's grace period).
        indirect case status(Job)
        case log(LogLine)
        /// One raw JSON line of the agent's stdout, verbatim, for clients that want structure.
        case agentEvent(String)
        indirect case completed(Job)
        /// A queued job's place changed (1: next), and why it waits: small, since every move of
        /// the queue sends one to each job behind.
        case queue(position: Int, reason: String?)
        /// What a job with a turn or cost budget has spent so far, as its agent reported it,
        /// each time that changes: small, so viewers see the spend against the budget live.
        case spend(turns: Int?, costUsd: Double?)
        /// A permission question the agent asked while the operator's policy is "ask": for the
        /// job's controller to answer (`request`, one of `options` by its optionId) before
        /// `expiresAt`, when the operator's default answers. Again with `answer` (an optionId,
        /// or "cancelled") once it is answered.
        indirect case permission(request: String, title: String, options: JSONValue, expiresAt: Int?, answer: String?)
    }

    public var jobId: String
    public var seq: Int
    /// Milliseconds since the Unix epoch.
    public var time: Int
    public var payload: Payload

    public init(jobId: String, seq: Int, time: Int, payload: Payload) {
        self.jobId = jobId
        self.seq = seq
        self.time = time
        self.payload = payload
    }

    public var type: String {
        switch payload {
        case .started: "job:started"
        case .status: "job:status"
        case .log: "job:log"
        case .agentEvent: "job:event"
        case .completed: "job:completed"
        case .queue: "job:queue"
        case .spend: "job:spend"
        case .permission: "job:permission"
        }
    }

    /// The event as one JSON object, serialized once and reused for storage and every viewer:
    ///
    ///     {"type":"job:log","job":"…","seq":7,"time":…,"stream":"stdout","kind":"tool","text":"→ Bash: ls"}
    ///     {"type":"job:event","job":"…","seq":8,"time":…,"event":{…the agent's line…}}
    ///     {"type":"job:started","job":"…","seq":1,"time":…,"status":"running","info":{…job…}}
    ///     {"type":"job:completed","job":"…","seq":42,"time":…,"status":"done","exitCode":0,
    ///      "signal":null,"errorTail":null,"result":{…},"hookError":null,"info":{…job…}}
    ///     {"type":"job:queue","job":"…","seq":3,"time":…,"position":2,"reason":"4 of 4 jobs running"}
    ///     {"type":"job:spend","job":"…","seq":9,"time":…,"turns":3,"costUsd":0.41}
    ///     {"type":"job:permission","job":"…","seq":12,"time":…,"request":"5","title":"Write notes.txt",
    ///      "options":[{"optionId":"allow","name":"Allow once","kind":"allow_once"},…],"expiresAt":…,"answer":null}
    public func encoded() -> [UInt8] {
        var writer = JSONWriter(capacity: Self.estimatedSize(payload))
        writer.raw("{\"type\":\"")
        writer.rawText(type)
        writer.raw("\",\"job\":")
        writer.string(jobId)
        writer.raw(",\"seq\":")
        writer.int(seq)
        writer.raw(",\"time\":")
        writer.int(time)
        switch payload {
        case .log(let line):
            Self.writeFields(of: line, to: &writer)
        case .agentEvent(let raw):
            writer.raw(",\"event\":")
            writer.rawText(raw)
        case .started(let job), .status(let job):
            writer.raw(",\"status\":")
            writer.string(job.status.rawValue)
            writer.raw(",\"info\":")
            writer.value(job.json)
        case .completed(let job):
            writer.raw(",\"status\":")
            writer.string(job.status.rawValue)
            writer.raw(",\"exitCode\":")
            writer.value(job.exitCode.map { .int(Int($0)) } ?? .null)
            writer.raw(",\"signal\":")
            writer.value(job.signal.map { .int(Int($0)) } ?? .null)
            writer.raw(",\"errorTail\":")
            writer.value(job.errorTail.map(JSONValue.string) ?? .null)
            writer.raw(",\"result\":")
            writer.value(job.result ?? .null)
            writer.raw(",\"hookError\":")
            writer.value(job.hookError.map(JSONValue.string) ?? .null)
            writer.raw(",\"info\":")
            writer.value(job.json)
        case .queue(let position, let reason):
            writer.raw(",\"position\":")
            writer.int(position)
            writer.raw(",\"reason\":")
            writer.value(reason.map(JSONValue.string) ?? .null)
        case .spend(let turns, let costUsd):
            writer.raw(",\"turns\":")
            writer.value(turns.map(JSONValue.int) ?? .null)
            writer.raw(",\"costUsd\":")
            writer.value(costUsd.map(JSONValue.double) ?? .null)
        case .permission(let request, let title, let options, let expiresAt, let answer):
            writer.raw(",\"request\":")
            writer.string(request)
            writer.raw(",\"title\":")
            writer.string(title)
            writer.raw(",\"options\":")
            writer.value(options)
            writer.raw(",\"expiresAt\":")
            writer.value(expiresAt.map(JSONValue.int) ?? .null)
            writer.raw(",\"answer\":")
            writer.value(answer.map(JSONValue.string) ?? .null)
        }
        writer.raw("}")
        return writer.bytes
    }

    /// A job's in-progress line, live only: `{"type":"job:partial","job":…,"seq":N,"stream":
    /// "stdout","kind":"text","text":"Hello wor"}`. It follows stored event `seq` and is never
    /// stored or replayed; a viewer shows it until the next `job:partial` of the job or any
    /// stored event of the job replaces it. An empty `text` means there is none now.
    public static func encodedPartial(jobId: String, seq: Int, line: LogLine?) -> [UInt8] {
        let line = line ?? LogLine(.stdout, .text, "")
        var writer = JSONWriter(capacity: line.text.utf8.count + 128)
        writer.raw("{\"type\":\"job:partial\",\"job\":")
        writer.string(jobId)
        writer.raw(",\"seq\":")
        writer.int(seq)
        writeFields(of: line, to: &writer)
        writer.raw("}")
        return writer.bytes
    }

    /// `,"stream":…,"kind":…,"text":…`: a log line's fields, the same in `job:log` and `job:partial`.
    private static func writeFields(of line: LogLine, to writer: inout JSONWriter) {
        writer.raw(",\"stream\":\"")
        writer.rawText(line.stream.rawValue)
        writer.raw("\",\"kind\":\"")
        writer.rawText(line.kind.rawValue)
        writer.raw("\",\"text\":")
        writer.string(line.text)
    }

    /// Room for the encoded event, so the writer rarely grows: the text or raw line plus
    /// the fixed fields (the job's JSON for lifecycle events).
    private static func estimatedSize(_ payload: Payload) -> Int {
        switch payload {
        case .log(let line): line.text.utf8.count + 128
        case .agentEvent(let raw): raw.utf8.count + 96
        case .started, .status, .completed: 1_024
        case .queue: 192
        case .spend: 160
        case .permission(_, let title, _, _, _): title.utf8.count + 512
        }
    }

    /// Decodes a stored event line; nil for a line that is not one (e.g. a torn last line).
    public init?(json: JSONValue) {
        guard let type = json["type"]?.stringValue, let jobId = json["job"]?.stringValue,
            let seq = json["seq"]?.intValue, let time = json["time"]?.intValue
        else { return nil }
        self.jobId = jobId
        self.seq = seq
        self.time = time
        switch type {
        case "job:log":
            guard let stream = json["stream"]?.stringValue.flatMap(LogLine.Stream.init(rawValue:)),
                let kind = json["kind"]?.stringValue.flatMap(LogLine.Kind.init(rawValue:)),
                let text = json["text"]?.stringValue
            else { return nil }
            payload = .log(LogLine(stream, kind, text))
        case "job:event":
            guard let event = json["event"] else { return nil }
            payload = .agentEvent(JSONWriter.string(event))
        case "job:started":
            guard let job = json["info"].flatMap(Job.init(json:)) else { return nil }
            payload = .started(job)
        case "job:status":
            guard let job = json["info"].flatMap(Job.init(json:)) else { return nil }
            payload = .status(job)
        case "job:completed":
            guard let job = json["info"].flatMap(Job.init(json:)) else { return nil }
            payload = .completed(job)
        case "job:queue":
            guard let position = json["position"]?.intValue else { return nil }
            payload = .queue(position: position, reason: json["reason"]?.stringValue)
        case "job:spend":
            payload = .spend(turns: json["turns"]?.intValue, costUsd: json["costUsd"]?.doubleValue)
        case "job:permission":
            guard let request = json["request"]?.stringValue else { return nil }
            payload = .permission(
                request: request, title: json["title"]?.stringValue ?? "", options: json["options"] ?? .array([]),
                expiresAt: json["expiresAt"]?.intValue, answer: json["answer"]?.stringValue)
        default:
            return nil
        }
    }
}
