import HTTPCore
import Testing

@testable import WebSocketCore

/// Feeds `bytes` to a fresh parser split at every position (and byte by byte), and checks
/// every split gives the same frames.
func framesAtEverySplit(_ bytes: [UInt8], role: FrameParser.Role = .server, max: Int = 1 << 20) -> Result<[Frame], FrameParser.Failure> {
    var whole = FrameParser(role: role, maxFramePayload: max)
    let expected = whole.parse(bytes)
    for cut in 0...bytes.count {
        var parser = FrameParser(role: role, maxFramePayload: max)
        let first = parser.parse(Array(bytes[..<cut]))
        let second = parser.parse(Array(bytes[cut...]))
        switch (first, second) {
        case (.success(let a), .success(let b)):
            #expect(.success(a + b) == expected, "split at \(cut)")
        case (.failure(let failure), _), (_, .failure(let failure)):
            #expect(.failure(failure) == expected, "split at \(cut)")
        }
    }
    var byteByByte = FrameParser(role: role, maxFramePayload: max)
    var frames: [Frame] = []
    for byte in bytes {
        switch byteByByte.parse([byte]) {
        case .success(let more): frames += more
        case .failure(let failure): return .failure(failure)
        }
    }
    #expect(.success(frames) == expected)
    return expected
}

let testKey: (UInt8, UInt8, UInt8, UInt8) = (0x37, 0xFA, 0x21, 0x3D)

struct FrameParserTests {
    @Test func parsesMaskedFramesOfEveryLengthFormAtEverySplit() throws {
        for length in [0, 5, 125, 126, 1000, 65535, 65536, 70000] {
            let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            var bytes = FrameEncoder.encode(opcode: .binary, payload: payload, maskingKey: testKey)
            bytes += FrameEncoder.encode(opcode: .ping, payload: [1, 2], maskingKey: testKey)
            if length > 2000 {
                // Every split of a large frame is slow; the small ones cover the header paths.
                var parser = FrameParser(role: .server, maxFramePayload: 1 << 20)
                #expect(try parser.parse(bytes).get().map(\.payload) == [payload, [1, 2]])
                continue
            }
            let frames = try framesAtEverySplit(bytes).get()
            #expect(frames == [Frame(opcode: .binary, payload: payload), Frame(opcode: .ping, payload: [1, 2])])
        }
    }

    @Test func theRFCExampleFramesDecode() throws {
        // RFC 6455 §5.7: a masked "Hello" and an unmasked one.
        #expect(try framesAtEverySplit([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]).get()
            == [Frame(opcode: .text, payload: Array("Hello".utf8))])
        #expect(try framesAtEverySplit([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F], role: .client).get()
            == [Frame(opcode: .text, payload: Array("Hello".utf8))])
        // A fragmented unmasked text message.
        #expect(try framesAtEverySplit([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F], role: .client).get().map(\.fin) == [false, true])
    }

    @Test func clientFramesMustBeMaskedAndServerFramesMustNot() {
        #expect(framesAtEverySplit([0x81, 0x05] + Array("Hello".utf8)) == .failure(.protocolError("client frames must be masked")))
        #expect(framesAtEverySplit(FrameEncoder.encode(opcode: .text, payload: [1], maskingKey: testKey), role: .client)
            == .failure(.protocolError("server frames must not be masked")))
    }

    @Test(arguments: [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] as [UInt8])
    func reservedOpcodesFail(_ opcode: UInt8) {
        #expect(framesAtEverySplit([0x80 | opcode, 0x80, 0, 0, 0, 0]) == .failure(.protocolError("reserved opcode \(opcode)")))
    }

    @Test func controlFramesAreShortAndUnfragmented() {
        #expect(framesAtEverySplit([0x09, 0x80, 0, 0, 0, 0]) == .failure(.protocolError("fragmented control frame")))
        #expect(framesAtEverySplit([0x89, 0xFE, 0x00, 0x7E, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 126))
            == .failure(.protocolError("control frame longer than 125 bytes")))
    }

    @Test func lengthsAreCheckedBeforeThePayloadArrives() {
        var parser = FrameParser(role: .server, maxFramePayload: 1000)
        // Only the header of a 1 GiB frame: refused at once.
        let result1 = parser.parse([0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]) == .failure(.tooBig("frame of 1073741824 bytes"))
        #expect(result1)
        var high = FrameParser(role: .server, maxFramePayload: 1000)
        let result2 = high.parse([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]) == .failure(.protocolError("64-bit length with the high bit set"))
        #expect(result2)
    }

    @Test func maskingRoundTripsAtEveryOffset() {
        let original = (0..<100).map { UInt8($0) }
        for offset in 0..<4 {
            var bytes = original
            Masking.apply(key: [1, 2, 3, 4], to: &bytes, from: 3, keyOffset: offset)
            #expect(bytes != original)
            #expect(bytes[0..<3] == original[0..<3])
            Masking.apply(key: [1, 2, 3, 4], to: &bytes, from: 3, keyOffset: offset)
            #expect(bytes == original)
        }
    }
}

struct UTF8ValidatorTests {
    @Test(arguments: [
        ([0x48, 0x65], true), ([0xCE, 0xBA, 0xE1, 0xBD, 0xB9], true), ([0xF4, 0x8F, 0xBF, 0xBF], true),
        ([0xEF, 0xBF, 0xBF], true), ([0xED, 0x9F, 0xBF], true),
        ([0xC0, 0x80], false), ([0xC1, 0xBF], false),  // overlong 2-byte
        ([0xE0, 0x80, 0xAF], false), ([0xF0, 0x80, 0x80, 0xAF], false),  // overlong 3/4-byte
        ([0xED, 0xA0, 0x80], false), ([0xED, 0xBF, 0xBF], false),  // surrogates
        ([0xF4, 0x90, 0x80, 0x80], false), ([0xF5, 0x80, 0x80, 0x80], false),  // > U+10FFFF
        ([0x80], false), ([0xFE], false), ([0xFF], false), ([0xCE, 0x41], false),
    ] as [([UInt8], Bool)])
    func validatesSequences(_ bytes: [UInt8], _ valid: Bool) {
        #expect(UTF8Validator.isValid(bytes) == valid)
    }

    @Test func failsAtTheFirstBadByteAndAcrossFragmentBoundaries() {
        var validator = UTF8Validator()
        let result3 = validator.feed([0xCE, 0xBA, 0xE1])
        #expect(result3)
        #expect(!validator.isComplete)  // truncated at a fragment boundary
        let result4 = validator.feed([0xBD, 0xB9])
        #expect(result4)
        #expect(validator.isComplete)
        var early = UTF8Validator()
        let lead = early.feed([0xED])
        #expect(lead)
        let second = early.feed([0xA0])
        #expect(!second)  // a surrogate, known bad at its second byte
    }
}

struct SHA1AndBase64Tests {
    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    @Test func fipsVectors() {
        #expect(Self.hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(Self.hex(SHA1.hash([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(Self.hex(SHA1.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
            == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(Self.hex(SHA1.hash([UInt8](repeating: 0x61, count: 1_000_000))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    @Test func base64RoundTripsAndIsStrict() {
        for length in 0..<20 {
            let bytes = (0..<length).map { UInt8($0 * 13 & 0xFF) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.decode("dGhlIHNhbXBsZSBub25jZQ==") == Array("the sample nonce".utf8))
        for bad in ["dGhl IHNh", "dGhlIHNhbXBsZSBub25jZQ=", "=GhlIHNh", "dG=lIHNh", "dGhl*HNh"] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }
}

struct HandshakeTests {
    static func head(_ text: String) -> HTTPHead {
        var parser = HTTPHeadParser()
        guard case .success(let head?) = parser.feed(Array(text.utf8)) else { fatalError("no head in \(text)") }
        return head
    }

    static let valid = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

    @Test func acceptValueMatchesTheRFCExample() throws {
        #expect(Handshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(try Handshake.validateClientRequest(Self.head(Self.valid)).get() == "dGhlIHNhbXBsZSBub25jZQ==")
    }

    @Test func tokensAreCaseInsensitiveCommaLists() throws {
        let text = Self.valid.replacingOccurrences(of: "Upgrade: websocket", with: "upgrade: WebSocket")
            .replacingOccurrences(of: "Connection: Upgrade", with: "Connection: keep-alive, UPGRADE")
        #expect(throws: Never.self) { try Handshake.validateClientRequest(Self.head(text)).get() }
    }

    @Test(arguments: [
        ("GET /chat HTTP/1.1", "POST /chat HTTP/1.1", 405),
        ("GET /chat HTTP/1.1", "GET /chat HTTP/1.0", 400),
        ("Upgrade: websocket\r\n", "", 400),
        ("Connection: Upgrade\r\n", "Connection: keep-alive\r\n", 400),
        ("Host: server.example.com\r\n", "", 400),
        ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
        ("dGhlIHNhbXBsZSBub25jZQ==", "not base64!", 400),
    ])
    func rejectionsGetTheRightStatus(_ original: String, _ replacement: String, _ status: Int) {
        let text = Self.valid.replacingOccurrences(of: original, with: replacement)
        guard case .failure(let rejection) = Handshake.validateClientRequest(Self.head(text)) else {
            Issue.record("accepted: \(text)")
            return
        }
        #expect(rejection.status == status)
        if status == 426 { #expect(rejection.headers["Sec-WebSocket-Version"] == "13") }
        let response = String(decoding: rejection.response, as: UTF8.self)
        #expect(response.hasPrefix("HTTP/1.1 \(status) "))
        #expect(response.contains("\"code\":\"websocket_handshake\""))
    }

    @Test func subprotocolIsTheFirstOfferedThatIsSupported() {
        let text = Self.valid.replacingOccurrences(of: "\r\n\r\n", with: "\r\nSec-WebSocket-Protocol: chat, agentgate.v1\r\n\r\n")
        #expect(Handshake.selectSubprotocol(Self.head(text), supported: ["agentgate.v1", "chat"]) == "chat")
        #expect(Handshake.selectSubprotocol(Self.head(text), supported: ["other"]) == nil)
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}

import Foundation
