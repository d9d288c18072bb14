import Testing

@testable import HTTPCore

struct HTTPResponseTests {
    static func head(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        return String(text.prefix { $0 != "{" })
    }

    @Test func everyResponseSaysNoSniffExceptA101() {
        #expect(Self.head(HTTPResponse.encode(status: 200, body: Array("{}".utf8))).contains("\r\nX-Content-Type-Options: nosniff\r\n"))
        #expect(Self.head(HTTPResponse.jsonError(status: 400, code: "bad_request", message: "<b>")).contains("\r\nX-Content-Type-Options: nosniff\r\n"))
        #expect(Self.head(HTTPResponse.encodeHead(status: 200, headers: HTTPHeaders([("Content-Type", "text/event-stream")])))
            .contains("\r\nX-Content-Type-Options: nosniff\r\n"))
        #expect(!Self.head(HTTPResponse.encode(status: 101, headers: HTTPHeaders([("Upgrade", "websocket")]))).contains("nosniff"))
    }

    @Test func aHandlerThatSetsItGetsItOnce() {
        let text = Self.head(HTTPResponse.encode(status: 200, headers: HTTPHeaders([("X-Content-Type-Options", "nosniff")])))
        #expect(text.split(separator: "\r\n").filter { $0.hasPrefix("X-Content-Type-Options:") }.count == 1)
    }
}
