/// A request line (or status line) and headers, parsed.
public struct HTTPHead: Sendable, Equatable {
    /// Request: method; response: "HTTP/1.1".
    public var method: String
    /// Request: target (path and query); response: the status code.
    public var target: String
    /// "HTTP/1.1", or the reason phrase of a response.
    public var version: String
    public var headers: HTTPHeaders

    public init(method: String, target: String, version: String, headers: HTTPHeaders) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }
}

/// Why a head was refused, each with its status (RFC 9110 §15, RFC 6585 §5).
public enum HTTPHeadError: Error, Equatable, Sendable {
    case badRequest(String)
    case uriTooLong
    case headersTooLarge
    case versionNotSupported

    public var status: Int {
        switch self {
        case .badRequest: 400
        case .uriTooLong: 414
        case .headersTooLarge: 431
        case .versionNotSupported: 505
        }
    }

    public var message: String {
        switch self {
        case .badRequest(let reason): reason
        case .uriTooLong: "request line too long"
        case .headersTooLarge: "request headers too large"
        case .versionNotSupported: "only HTTP/1.0 and HTTP/1.1 are supported"
        }
    }
}

/// Incremental HTTP/1.1 head parser (RFC 9112 §2–5): feed bytes as they arrive, in any
/// split; it answers `nil` until the blank line, then the head. Limits are checked as
/// bytes arrive, so a peer cannot make it buffer more than `maxHeadBytes`.
public struct HTTPHeadParser: Sendable {
    public struct Limits: Sendable {
        /// 8 KiB per line: what common servers allow for a request line or one header.
        public var maxLineBytes = 8 * 1024
        /// 64 KiB for the whole head.
        public var maxHeadBytes = 64 * 1024
        public var maxHeaders = 100
        public init() {}
    }

    public enum Kind: Sendable { case request, response }

    public let kind: Kind
    public let limits: Limits
    private var buffer: [UInt8] = []
    private var lineStart = 0
    private var scanned = 0
    private var done = false

    public init(kind: Kind = .request, limits: Limits = Limits()) {
        self.kind = kind
        self.limits = limits
    }

    /// Bytes received after the head (a body, or the first WebSocket frames), once the head
    /// is complete.
    public private(set) var remainder: [UInt8] = []

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Result<HTTPHead?, HTTPHeadError> {
        guard !done else {
            remainder.append(contentsOf: bytes)
            return .success(nil)
        }
        let (result, used) = feedHead(bytes)
        if case .success(.some) = result { remainder = Array(bytes[used...]) }
        return result
    }

    /// Takes bytes up to the end of the head and no further: `used` says how many. The rest
    /// is left where it is, so a connection with many pipelined requests in one read parses
    /// each once instead of copying the tail of the read for every request.
    public mutating func feedHead(_ bytes: UnsafeRawBufferPointer) -> (result: Result<HTTPHead?, HTTPHeadError>, used: Int) {
        guard !done else { return (.success(nil), 0) }
        var index = 0
        while index < bytes.count {
            // One line at a time (or all that is left): the head's end is never overshot.
            var end = index
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            end = min(end + 1, bytes.count)
            buffer.append(contentsOf: bytes[index..<end])
            index = end
            if let result = scan() { return (result, index) }
        }
        return (.success(nil), index)
    }

    /// Checks the bytes buffered since the last call: a failure, the head, or nil for more.
    private mutating func scan() -> Result<HTTPHead?, HTTPHeadError>? {
        while scanned < buffer.count {
            let byte = buffer[scanned]
            scanned += 1
            if byte != 0x0A {
                if scanned - lineStart > limits.maxLineBytes {
                    return .failure(lineStart == 0 && kind == .request ? .uriTooLong : .headersTooLarge)
                }
                if scanned > limits.maxHeadBytes { return .failure(.headersTooLarge) }
                continue
            }
            let lineEnd = scanned - 1
            let thisLineStart = lineStart
            let isBlank = lineEnd == thisLineStart || (lineEnd == thisLineStart + 1 && buffer[thisLineStart] == 0x0D)
            lineStart = scanned
            guard isBlank else { continue }
            if thisLineStart > 0 {
                done = true
                let head = parseHead(Array(buffer[0..<thisLineStart]))
                buffer = []
                return head.map { Optional($0) }
            }
            // RFC 9112 §2.2: ignore empty lines before the start line.
            buffer.removeFirst(scanned)
            scanned = 0
            lineStart = 0
        }
        return nil
    }

    public mutating func feed(_ bytes: [UInt8]) -> Result<HTTPHead?, HTTPHeadError> {
        bytes.withUnsafeBytes { feed($0) }
    }

    private func parseHead(_ bytes: [UInt8]) -> Result<HTTPHead, HTTPHeadError> {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == 0x0D ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { return .failure(.badRequest("empty head")) }
        let parts = first.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { return .failure(.badRequest("malformed start line")) }
        switch kind {
        case .request:
            guard parts[0].utf8.allSatisfy(Self.isTokenByte) else { return .failure(.badRequest("malformed method")) }
            guard parts[1].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .failure(.badRequest("malformed request target")) }
            guard parts[2].hasPrefix("HTTP/") else { return .failure(.badRequest("malformed HTTP version")) }
            guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else { return .failure(.versionNotSupported) }
        case .response:
            guard parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, Int(parts[1]) != nil else {
                return .failure(.badRequest("malformed status line"))
            }
        }
        var headers = HTTPHeaders()
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return .failure(.badRequest("header line without ':'")) }
            let name = line[line.startIndex..<colon]
            // RFC 9112 §5.1: no whitespace between the name and the colon; names are tokens.
            guard !name.isEmpty, name.allSatisfy(Self.isTokenByte) else { return .failure(.badRequest("malformed header name")) }
            let rawValue = line[(colon + 1)...]
            guard rawValue.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
                return .failure(.badRequest("control character in a header value"))
            }
            headers.add(String(decoding: name, as: UTF8.self), String(decoding: rawValue, as: UTF8.self).trimmingSpaces())
            if headers.count > limits.maxHeaders { return .failure(.headersTooLarge) }
        }
        // RFC 9110 §7.2: more than one Host (as two lines, or a list in one) is a 400. Two
        // hosts let a proxy route by one and this server check the other.
        if kind == .request {
            let hosts = headers.values("Host")
            guard hosts.count <= 1, hosts.first?.contains(",") != true else { return .failure(.badRequest("more than one Host header")) }
        }
        return .success(HTTPHead(method: parts[0], target: parts[1], version: parts[2], headers: headers))
    }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }
}
