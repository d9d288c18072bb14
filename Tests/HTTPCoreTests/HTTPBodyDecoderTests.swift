import HTTPCore
import Testing

struct HTTPBodyDecoderTests {
    static func head(_ headers: [(String, String)]) -> HTTPHead {
        HTTPHead(method: "POST", target: "/", version: "HTTP/1.1", headers: HTTPHeaders(headers))
    }

    /// Feeds `bytes` split at every position; every split must give the same outcome.
    static func decode(_ headers: [(String, String)], _ bytes: [UInt8], max: Int = 1 << 20) -> Result<HTTPBodyDecoder.Progress, HTTPBodyDecoder.Failure> {
        var outcomes: [Result<HTTPBodyDecoder.Progress, HTTPBodyDecoder.Failure>] = []
        for cut in 0...bytes.count {
            var decoder: HTTPBodyDecoder
            do { decoder = try HTTPBodyDecoder(head: head(headers), maxBodyBytes: max) } catch { return .failure(error) }
            var result = decoder.feed(Array(bytes[..<cut]))
            switch result {
            case .success(.needMore): result = decoder.feed(Array(bytes[cut...]))
            case .success(.complete(let body, let rest)): result = .success(.complete(body: body, rest: rest + bytes[cut...]))
            case .failure: break
            }
            outcomes.append(result)
        }
        #expect(Set(outcomes.map { "\($0)" }).count == 1, "outcome depends on the split")
        return outcomes[0]
    }

    @Test func contentLengthBodiesLeaveTheNextRequestAlone() {
        #expect(Self.decode([("Content-Length", "5")], Array("helloGET /".utf8))
            == .success(.complete(body: Array("hello".utf8), rest: Array("GET /".utf8))))
        #expect(Self.decode([], Array("GET /".utf8)) == .success(.complete(body: [], rest: Array("GET /".utf8))))
    }

    @Test func chunkedBodiesWithExtensionsAndTrailers() {
        let wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
        #expect(Self.decode([("Transfer-Encoding", "chunked")], Array(wire.utf8))
            == .success(.complete(body: Array("hello world".utf8), rest: Array("NEXT".utf8))))
    }

    @Test func oversizedBodiesAre413BeforeTheyArrive() throws {
        #expect(throws: HTTPBodyDecoder.Failure.tooLarge) {
            try HTTPBodyDecoder(head: Self.head([("Content-Length", "1048577")]), maxBodyBytes: 1 << 20)
        }
        #expect(Self.decode([("Transfer-Encoding", "chunked")], Array("100001\r\n".utf8)) == .failure(.tooLarge))
    }

    @Test(arguments: [
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")], [("Content-Length", "5"), ("Content-Length", "6")],
        [("Content-Length", "-1")], [("Content-Length", "5x")], [("Content-Length", "")],
    ])
    func ambiguousOrInvalidFramingIs400(_ headers: [(String, String)]) {
        #expect(throws: HTTPBodyDecoder.Failure.self) { try HTTPBodyDecoder(head: Self.head(headers), maxBodyBytes: 100) }
    }

    @Test func unknownTransferCodingsAre501() {
        #expect(throws: HTTPBodyDecoder.Failure.notImplemented("gzip, chunked")) {
            try HTTPBodyDecoder(head: Self.head([("Transfer-Encoding", "gzip, chunked")]), maxBodyBytes: 100)
        }
    }

    @Test(arguments: ["zz\r\n", "5\r\nhelloXX\r\n", String(repeating: "1", count: 5000)])
    func malformedChunksAre400(_ wire: String) {
        guard case .failure(let failure) = Self.decode([("Transfer-Encoding", "chunked")], Array(wire.utf8)) else {
            Issue.record("accepted \(wire.prefix(20))")
            return
        }
        #expect(failure.status == 400)
    }

    /// RFC 9112 §7.1 chunk-size is hex digits only. A sign, a `0x`, spaces or more than 16
    /// digits are a 400 (a proxy that reads them differently could smuggle a request).
    @Test(arguments: [
        "+5\r\nhello\r\n0\r\n\r\n", "-0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n", " 5\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n", "5 ;ext\r\nhello\r\n0\r\n\r\n", "\t5\r\nhello\r\n0\r\n\r\n",
        "00000000000000005\r\nhello\r\n0\r\n\r\n", "\r\nhello\r\n0\r\n\r\n", "5_\r\nhello\r\n0\r\n\r\n",
    ])
    func chunkSizesThatAreNotPlainHexAre400(_ wire: String) {
        guard case .failure(let failure) = Self.decode([("Transfer-Encoding", "chunked")], Array(wire.utf8)) else {
            Issue.record("accepted \(wire.debugDescription)")
            return
        }
        #expect(failure == .badRequest("invalid chunk size"))
    }

    @Test func sixteenHexDigitsAndUppercaseAreFineAndHugeSizesAre413() {
        #expect(Self.decode([("Transfer-Encoding", "chunked")], Array("0000000000000005\r\nhello\r\n0\r\n\r\n".utf8))
            == .success(.complete(body: Array("hello".utf8), rest: [])))
        #expect(Self.decode([("Transfer-Encoding", "chunked")], Array("A;x=y\r\n0123456789\r\n0\r\n\r\n".utf8))
            == .success(.complete(body: Array("0123456789".utf8), rest: [])))
        // Past Int.max: refused as a bad size, never wrapped around.
        #expect(Self.decode([("Transfer-Encoding", "chunked")], Array("FFFFFFFFFFFFFFFF\r\n".utf8)) == .failure(.badRequest("invalid chunk size")))
        #expect(Self.decode([("Transfer-Encoding", "chunked")], Array("7FFFFFFFFFFFFFFF\r\n".utf8)) == .failure(.tooLarge))
    }
}
