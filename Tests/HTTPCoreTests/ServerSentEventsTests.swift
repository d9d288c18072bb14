import Testing

@testable import HTTPCore

struct ServerSentEventsTests {
    @Test func multiLineDataBecomesSeveralDataFields() {
        let bytes = ServerSentEvents.event(id: "42", name: "job:log", data: "line one\nline two")
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 42\nevent: job:log\ndata: line one\ndata: line two\n\n")
    }

    @Test func lineBreaksCannotInjectFields() {
        let bytes = ServerSentEvents.event(id: "1\nevent: evil", name: "x\r\ny", data: "a\r\nb")
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 1event: evil\nevent: xy\ndata: a\ndata: b\n\n")
    }

    @Test(arguments: [("17", 17), ("0", 0), (" 5 ", 5), ("-1", nil), ("x", nil), ("", nil), ("99999999999999999999", nil)] as [(String, Int?)])
    func lastEventIDIsANonNegativeSeq(_ value: String, _ expected: Int?) {
        #expect(ServerSentEvents.lastEventID(HTTPHeaders([("Last-Event-ID", value)])) == expected)
    }

    @Test func heartbeatIsAComment() {
        #expect(ServerSentEvents.heartbeat().first == UInt8(ascii: ":"))
    }
}
