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
///
/// Bytes wait here until `next()` asks for a request, so the connection decides how many
/// pipelined requests it takes on at once (answers it cannot send yet are not produced).
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
    /// Received bytes no parser has taken yet, from `inputStart` on.
    private var input: [UInt8] = []
    private var inputStart = 0
    /// A parser holds part of a request.
    private var started = false

    public init(limits: HTTPHeadParser.Limits = HTTPHeadParser.Limits(), maxBodyBytes: Int = 1 << 20) {
        self.limits = limits
        self.maxBodyBytes = maxBodyBytes
        headParser = HTTPHeadParser(kind: .request, limits: limits)
    }

    /// True while part of a request has arrived (for the idle/slowloris timer), or bytes
    /// wait that `next()` has not looked at.
    public var hasPartialRequest: Bool { started || inputStart < input.count }

    /// Bytes received and not yet parsed.
    public var bufferedBytes: Int { input.count - inputStart }

    /// Parses every complete request in the bytes so far (and `bytes`).
    public mutating func feed(_ bytes: [UInt8]) -> Result<[HTTPRequest], Failure> {
        bytes.withUnsafeBytes { append($0) }
        var requests: [HTTPRequest] = []
        while true {
            switch next() {
            case .failure(let failure): return .failure(failure)
            case .success(nil): return .success(requests)
            case .success(let request?): requests.append(request)
            }
        }
    }

    /// Keeps bytes for `next()`.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard failed == nil, !bytes.isEmpty else { return }
        if inputStart > 0 {
            input.removeFirst(inputStart)
            inputStart = 0
        }
        input.append(contentsOf: bytes)
    }

    /// The next complete request, nil when more bytes are needed, or the failure that ends
    /// the connection.
    public mutating func next() -> Result<HTTPRequest?, Failure> {
        if let failed { return .failure(failed) }
        defer {
            if inputStart == input.count {
                input = []
                inputStart = 0
            }
        }
        while true {
            if pendingHead == nil {
                guard inputStart < input.count else { return .success(nil) }
                started = true
                let (result, used) = input[inputStart...].withUnsafeBytes { headParser.feedHead($0) }
                inputStart += used
                switch result {
                case .failure(let error):
                    return fail(Failure(status: error.status, message: error.message))
                case .success(nil):
                    return .success(nil)
                case .success(let head?):
                    headParser = HTTPHeadParser(kind: .request, limits: limits)
                    do {
                        bodyDecoder = try HTTPBodyDecoder(head: head, maxBodyBytes: maxBodyBytes)
                    } catch {
                        return fail(Failure(status: error.status, message: error.message))
                    }
                    pendingHead = head
                }
            }
            guard var decoder = bodyDecoder, let head = pendingHead else { return .success(nil) }
            let result = input[inputStart...].withUnsafeBytes { decoder.feedBody($0) }
            bodyDecoder = decoder
            switch result {
            case .failure(let error):
                return fail(Failure(status: error.status, message: error.message))
            case .success(let taken):
                inputStart += taken.used
                guard let body = taken.body else { return .success(nil) }
                pendingHead = nil
                bodyDecoder = nil
                started = false
                return .success(HTTPRequest(head: head, body: body))
            }
        }
    }

    private mutating func fail(_ failure: Failure) -> Result<HTTPRequest?, Failure> {
        failed = failure
        input = []
        inputStart = 0
        return .failure(failure)
    }
}
