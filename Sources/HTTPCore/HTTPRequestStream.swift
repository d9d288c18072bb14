/// One complete request: head and body.
public struct HTTPRequest: Sendable, Equatable {
    public var head: HTTPHead
    public var body: [UInt8]

    public init(head: HTTPHead, body: [UInt8]) {
        self.head = head
        self.body = body
    }

    /// The path without the query.
    public var path: Substring { head.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }

    /// Whether the connection stays open after the response (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    public var keepsAlive: Bool {
        let tokens = head.headers.tokens("Connection")
        if tokens.contains("close") { return false }
        return head.version == "HTTP/1.1" || tokens.contains("keep-alive")
    }
}

/// The requests of one keep-alive connection, in order: bytes in, complete requests out,
/// however the bytes are split and however many requests one read holds (pipelining).
/// A failure is final: the connection answers it and closes.
public struct HTTPRequestStream: Sendable {
    public struct Failure: Error, Equatable, Sendable {
        public var status: Int
        public var message: String
    }

    public let limits: HTTPHeadParser.Limits
    /// 1 MiB: the largest body the API takes (a launch request with its prompt).
    public let maxBodyBytes: Int
    private var headParser: HTTPHeadParser
    private var pendingHead: HTTPHead?
    private var bodyDecoder: HTTPBodyDecoder?
    private var failed: Failure?

    public init(limits: HTTPHeadParser.Limits = HTTPHeadParser.Limits(), maxBodyBytes: Int = 1 << 20) {
        self.limits = limits
        self.maxBodyBytes = maxBodyBytes
        headParser = HTTPHeadParser(kind: .request, limits: limits)
    }

    /// True while part of a request has arrived (for the idle/slowloris timer).
    public private(set) var hasPartialRequest = false

    public mutating func feed(_ bytes: [UInt8]) -> Result<[HTTPRequest], Failure> {
        if let failed { return .failure(failed) }
        var requests: [HTTPRequest] = []
        var input = bytes
        while !input.isEmpty || pendingHead != nil {
            if pendingHead == nil {
                hasPartialRequest = true
                switch headParser.feed(input) {
                case .failure(let error):
                    return fail(Failure(status: error.status, message: error.message))
                case .success(nil):
                    return .success(requests)
                case .success(let head?):
                    input = headParser.remainder
                    headParser = HTTPHeadParser(kind: .request, limits: limits)
                    do {
                        bodyDecoder = try HTTPBodyDecoder(head: head, maxBodyBytes: maxBodyBytes)
                    } catch {
                        return fail(Failure(status: error.status, message: error.message))
                    }
                    pendingHead = head
                }
            }
            guard var decoder = bodyDecoder, let head = pendingHead else { break }
            switch decoder.feed(input) {
            case .failure(let error):
                return fail(Failure(status: error.status, message: error.message))
            case .success(.needMore):
                bodyDecoder = decoder
                return .success(requests)
            case .success(.complete(let body, let rest)):
                requests.append(HTTPRequest(head: head, body: body))
                pendingHead = nil
                bodyDecoder = nil
                hasPartialRequest = false
                input = rest
            }
        }
        return .success(requests)
    }

    private mutating func fail(_ failure: Failure) -> Result<[HTTPRequest], Failure> {
        failed = failure
        return .failure(failure)
    }
}
