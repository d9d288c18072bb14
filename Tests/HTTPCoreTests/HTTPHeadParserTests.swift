import Testing

@testable import HTTPCore

struct HTTPHeadParserTests {
    @Test func parsesAtEverySplitAndKeepsTheRemainder() throws {
        let bytes = Array("\r\nGET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Many: 1\r\nx-many: 2\r\n\r\nBODY".utf8)
        for cut in 0...bytes.count {
            var parser = HTTPHeadParser()
            var head = try parser.feed(Array(bytes[..<cut])).get()
            let second = try parser.feed(Array(bytes[cut...])).get()
            if head == nil { head = second }
            #expect(head?.target == "/x?y=1")
            #expect(head?.headers.values("X-MANY") == ["1", "2"])
            #expect(parser.remainder == Array("BODY".utf8))
        }
    }

    @Test func limitsAnswer414And431() {
        var long = HTTPHeadParser()
        let result6 = long.feed(Array(("GET /" + String(repeating: "a", count: 9000)).utf8)) == .failure(.uriTooLong)
        #expect(result6)
        var header = HTTPHeadParser()
        let result7 = header.feed(Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000)).utf8)) == .failure(.headersTooLarge)
        #expect(result7)
        var many = HTTPHeadParser()
        let lines = (0..<101).map { "X-\($0): v\r\n" }.joined()
        let result8 = many.feed(Array("GET / HTTP/1.1\r\n\(lines)\r\n".utf8)) == .failure(.headersTooLarge)
        #expect(result8)
        var total = HTTPHeadParser()
        let big = (0..<20).map { "X-\($0): \(String(repeating: "v", count: 4000))\r\n" }.joined()
        let result9 = total.feed(Array("GET / HTTP/1.1\r\n\(big)".utf8)) == .failure(.headersTooLarge)
        #expect(result9)
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nNo colon\r\n\r\n", "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", "GET /\r\n\r\n", "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\u{01}b\r\n\r\n", "GET / HTTQ/1.1\r\n\r\n",
    ])
    func malformedHeadsAre400(_ text: String) {
        var parser = HTTPHeadParser()
        guard case .failure(let error) = parser.feed(Array(text.utf8)) else {
            Issue.record("accepted \(text)")
            return
        }
        #expect(error.status == 400)
    }

    @Test func unknownVersionIs505() {
        var parser = HTTPHeadParser()
        let result10 = parser.feed(Array("GET / HTTP/2.0\r\n\r\n".utf8)) == .failure(.versionNotSupported)
        #expect(result10)
    }

    /// RFC 9110 §7.2: two Host lines (or a list in one) are a 400, never "the first one wins".
    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
    ])
    func moreThanOneHostIs400(_ text: String) {
        var parser = HTTPHeadParser()
        guard case .failure(let error) = parser.feed(Array(text.utf8)) else {
            Issue.record("accepted \(text)")
            return
        }
        #expect(error == .badRequest("more than one Host header"))
    }

    @Test func oneHostOrNoneIsFineAndResponsesAreNotChecked() throws {
        var one = HTTPHeadParser()
        #expect(try one.feed(Array("GET / HTTP/1.1\r\nHost: a:1\r\n\r\n".utf8)).get()?.headers["Host"] == "a:1")
        var none = HTTPHeadParser()
        #expect(try none.feed(Array("GET / HTTP/1.0\r\n\r\n".utf8)).get() != nil)
    }

    @Test func feedHeadTakesNoByteBeyondTheHead() throws {
        var parser = HTTPHeadParser()
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n\r\n".utf8)
        let (result, used) = bytes.withUnsafeBytes { parser.feedHead($0) }
        #expect(try result.get()?.target == "/")
        #expect(used == "GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8.count)
    }
}
