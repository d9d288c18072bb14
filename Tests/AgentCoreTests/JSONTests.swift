import Testing

@testable import AgentCore

struct JSONTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(#"{"a":[1,-2.5,1e3,true,false,null],"b":{"c":"d\n\"e\"\u00e9\ud83d\ude00"}}"#)
        #expect(value["a"] == [1, -2.5, 1000.0, true, false, nil])
        #expect(value["b"]?["c"] == .string("d\n\"e\"é😀"))
    }

    @Test func keepsMemberOrderAndDuplicateKeys() throws {
        let text = #"{"z":1,"id":"a","id":"b"}"#
        let value = try JSONParser.parse(text)
        #expect(JSONWriter.string(value) == text)
        #expect(value["id"] == "a")
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "tru", "\"abc", "\"\\x\"", "\"a\u{01}\"", "[1] x", "{\"a\":1,}",
        "\"\\u12\"", "nul",
    ])
    func rejectsMalformedInput(_ text: String) {
        #expect(throws: JSONParser.Error.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsNestingPastTheLimitWithoutCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParser.Error.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONParser.parse(ok) }
    }

    @Test func loneSurrogatesBecomeReplacementCharacters() throws {
        #expect(try JSONParser.parse(#""\ud800x""#) == "\u{FFFD}x")
        #expect(try JSONParser.parse(#""\udc00""#) == "\u{FFFD}")
    }

    @Test func writerEscapesControlCharactersAndRoundTrips() throws {
        let value: JSONValue = .object(["t": "tab\tnl\nnul\u{0}bell\u{7}quote\"back\\", "n": 12, "d": 0.25])
        let text = JSONWriter.string(value)
        #expect(text == #"{"t":"tab\tnl\nnul\u0000bell\u0007quote\"back\\","n":12,"d":0.25}"#)
        #expect(try JSONParser.parse(text) == value)
    }

    /// Output shown on a terminal (`websocat`, `--json`) must not carry a raw DEL or C1
    /// control: U+009B alone starts a control sequence on many terminals.
    @Test func writerEscapesDELAndC1ControlsButNotOtherNonASCII() throws {
        let value: JSONValue = .string("a\u{7F}b\u{9B}31m\u{80}é\u{A0}😀\u{9F}")
        let text = JSONWriter.string(value)
        #expect(text == "\"a\\u007fb\\u009b31m\\u0080é\u{A0}😀\\u009f\"")
        #expect(!text.unicodeScalars.contains { $0.value == 0x7F || (0x80...0x9F).contains($0.value) })
        #expect(try JSONParser.parse(text) == value)
    }

    /// Integers are written digit by digit into the buffer (no String per number): the edges.
    @Test(arguments: [0, 7, -7, 10, -10, 1_733_400_000_123, Int.max, Int.min])
    func writerWritesIntegersAsSwiftDoes(_ value: Int) throws {
        var writer = JSONWriter()
        writer.int(value)
        #expect(String(decoding: writer.bytes, as: UTF8.self) == String(value))
        #expect(try JSONParser.parse(writer.bytes) == .int(value))
    }
}
