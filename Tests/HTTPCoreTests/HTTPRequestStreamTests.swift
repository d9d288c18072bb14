import Testing

@testable import HTTPCore

struct HTTPRequestStreamTests {
    static let pipelined = Array(
        ("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            + "POST /c?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
            + "GET /d HTTP/1.0\r\n\r\n").utf8)

    @Test func pipelinedRequestsComeOutInOrderWhateverTheSplit() throws {
        for cut in stride(from: 0, through: Self.pipelined.count, by: 1) {
            var stream = HTTPRequestStream()
            let requests = try stream.feed(Array(Self.pipelined[..<cut])).get() + stream.feed(Array(Self.pipelined[cut...])).get()
            #expect(requests.map(\.path) == ["/a", "/b", "/c", "/d"], "split at \(cut)")
            #expect(requests.map { String(decoding: $0.body, as: UTF8.self) } == ["", "abc", "hi", ""])
            #expect(requests.map(\.keepsAlive) == [true, true, true, false])
            #expect(!stream.hasPartialRequest)
        }
    }

    @Test func aFailureIsFinalAndCarriesItsStatus() {
        var stream = HTTPRequestStream(maxBodyBytes: 10)
        let result = stream.feed(Array("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n".utf8))
        #expect(result == .failure(.init(status: 413, message: "request body too large")))
        #expect(stream.feed(Array("GET / HTTP/1.1\r\n\r\n".utf8)) == .failure(.init(status: 413, message: "request body too large")))
    }

    @Test func aPartialRequestIsVisibleForTheIdleTimer() throws {
        var stream = HTTPRequestStream()
        #expect(try stream.feed(Array("GET / HT".utf8)).get().isEmpty)
        #expect(stream.hasPartialRequest)
        #expect(try stream.feed(Array("TP/1.1\r\n\r\n".utf8)).get().count == 1)
        #expect(!stream.hasPartialRequest)
    }

    @Test func connectionCloseEndsKeepAlive() throws {
        var stream = HTTPRequestStream()
        let requests = try stream.feed(Array("GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".utf8)).get()
        #expect(requests.map(\.keepsAlive) == [false, true])
    }

    /// `next()` parses one request at a time from what was appended: the connection takes on
    /// only as many pipelined requests as it can answer now, the rest stay bytes.
    @Test func nextTakesOneRequestAtATime() throws {
        var stream = HTTPRequestStream()
        let one = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
        let wire = Array(String(repeating: one, count: 1000).utf8)
        wire.withUnsafeBytes { stream.append($0) }
        #expect(try stream.next().get()?.path == "/x")
        #expect(stream.bufferedBytes == wire.count - one.utf8.count)
        var count = 1
        while try stream.next().get() != nil { count += 1 }
        #expect(count == 1000)
        #expect(stream.bufferedBytes == 0)
        #expect(!stream.hasPartialRequest)
    }

    @Test func aGoodRequestBeforeABadOneIsStillHandedOut() throws {
        var stream = HTTPRequestStream()
        Array("GET /ok HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".utf8).withUnsafeBytes { stream.append($0) }
        #expect(try stream.next().get()?.path == "/ok")
        #expect(stream.next() == .failure(.init(status: 400, message: "more than one Host header")))
    }
}
