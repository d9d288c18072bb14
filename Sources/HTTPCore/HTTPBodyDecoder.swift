/// Reads a request body framed by `Content-Length` or `Transfer-Encoding: chunked`
/// (RFC 9112 §6–7), incrementally and with a size cap, leaving any bytes after the body for
/// the next pipelined request.
public struct HTTPBodyDecoder: Sendable {
    public enum Failure: Error, Equatable, Sendable {
        case badRequest(String)
        /// The body is over the cap (413).
        case tooLarge
        /// A transfer coding other than chunked (501).
        case notImplemented(String)

        public var status: Int {
            switch self {
            case .badRequest: 400
            case .tooLarge: 413
            case .notImplemented: 501
            }
        }

        public var message: String {
            switch self {
            case .badRequest(let reason): reason
            case .tooLarge: "request body too large"
            case .notImplemented(let coding): "transfer coding '\(coding)' is not supported"
            }
        }
    }

    /// The outcome of feeding bytes.
    public enum Progress: Equatable, Sendable {
        case needMore
        /// The whole body, and the bytes after it.
        case complete(body: [UInt8], rest: [UInt8])
    }

    private enum State: Sendable {
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case done
    }

    public let maxBodyBytes: Int
    private var state: State
    private var body: [UInt8] = []
    private var line: [UInt8] = []
    /// 4 KiB for a chunk-size line (with extensions) or a trailer line.
    private static let maxLineBytes = 4096

    /// Picks the framing from the head. A request with both `Transfer-Encoding` and
    /// `Content-Length` is refused (RFC 9112 §6.3: a smuggling vector).
    public init(head: HTTPHead, maxBodyBytes: Int) throws(Failure) {
        self.maxBodyBytes = maxBodyBytes
        let codings = head.headers.tokens("Transfer-Encoding")
        let lengths = head.headers.values("Content-Length")
        if !codings.isEmpty {
            guard lengths.isEmpty else { throw .badRequest("both Transfer-Encoding and Content-Length") }
            guard codings == ["chunked"] else { throw .notImplemented(codings.joined(separator: ", ")) }
            state = .chunkSize
            return
        }
        // Repeated or comma-listed lengths must all agree (RFC 9110 §8.6).
        let values = Set(lengths.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }.map { $0.trimmingSpaces() })
        guard values.count <= 1 else { throw .badRequest("conflicting Content-Length values") }
        guard let text = values.first else {
            state = .done
            return
        }
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let length = Int(text) else {
            throw .badRequest("invalid Content-Length")
        }
        guard length <= maxBodyBytes else { throw .tooLarge }
        state = .fixed(remaining: length)
    }

    /// True when the request has no body at all.
    public var isEmpty: Bool {
        if case .done = state { return body.isEmpty }
        if case .fixed(0) = state { return true }
        return false
    }

    public mutating func feed(_ bytes: [UInt8]) -> Result<Progress, Failure> {
        bytes.withUnsafeBytes { buffer in
            feedBody(buffer).map { taken in
                taken.body.map { .complete(body: $0, rest: Array(bytes[taken.used...])) } ?? .needMore
            }
        }
    }

    /// Takes bytes up to the end of the body and no further: the body once it is whole (nil
    /// until then) and how many bytes were used. What follows is the next request's.
    public mutating func feedBody(_ bytes: UnsafeRawBufferPointer) -> Result<(body: [UInt8]?, used: Int), Failure> {
        var index = 0
        while true {
            switch state {
            case .done:
                return .success((body, index))
            case .fixed(let remaining):
                if remaining == 0 {
                    state = .done
                    continue
                }
                let take = min(remaining, bytes.count - index)
                if take == 0 { return .success((nil, index)) }
                body += bytes[index..<(index + take)]
                index += take
                state = .fixed(remaining: remaining - take)
            case .chunkSize:
                guard let text = takeLine(bytes, &index) else { return lineOverflow() ?? .success((nil, index)) }
                let sizeText = text.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                guard let size = Self.chunkSize(sizeText) else { return .failure(.badRequest("invalid chunk size")) }
                guard size <= maxBodyBytes - body.count else { return .failure(.tooLarge) }
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                let take = min(remaining, bytes.count - index)
                if take == 0 { return .success((nil, index)) }
                body += bytes[index..<(index + take)]
                index += take
                state = remaining - take == 0 ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .chunkDataEnd:
                guard let text = takeLine(bytes, &index) else { return lineOverflow() ?? .success((nil, index)) }
                guard text.isEmpty else { return .failure(.badRequest("chunk data longer than its size")) }
                state = .chunkSize
            case .trailers:
                guard let text = takeLine(bytes, &index) else { return lineOverflow() ?? .success((nil, index)) }
                if text.isEmpty { state = .done }  // trailer fields are read and dropped
            }
        }
    }

    /// RFC 9112 §7.1 `chunk-size = 1*HEXDIG`, and nothing else: no sign, no `0x`, no spaces
    /// (not even the optional ones before `;`), at most 16 digits. `Int(_:radix:)` alone takes
    /// "+5" and "-0"; a proxy in front that reads such a size differently from us could smuggle
    /// a request past it, so anything but plain hex digits is a 400.
    static func chunkSize(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 16 else { return nil }
        var value: UInt64 = 0
        for byte in text.utf8 {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value <= UInt64(Int.max) ? Int(value) : nil
    }

    /// The next CRLF- (or LF-) terminated line, or nil when it is not complete yet.
    private mutating func takeLine(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> String? {
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == 0x0A {
                if line.last == 0x0D { line.removeLast() }
                let text = String(decoding: line, as: UTF8.self)
                line.removeAll(keepingCapacity: true)
                return text
            }
            line.append(byte)
            if line.count > Self.maxLineBytes { return nil }
        }
        return nil
    }

    private func lineOverflow() -> Result<(body: [UInt8]?, used: Int), Failure>? {
        line.count > Self.maxLineBytes ? .failure(.badRequest("chunk line too long")) : nil
    }
}
