import Testing

@testable import WebSocketCore
@testable import WebSocketDeflate

/// A client-masked frame, as a browser would send it.
func clientFrame(_ opcode: Opcode, _ payload: [UInt8], fin: Bool = true, rsv1: Bool = false) -> [UInt8] {
    FrameEncoder.encode(fin: fin, rsv1: rsv1, opcode: opcode, payload: payload, maskingKey: testKey)
}

func closeFrame(_ code: UInt16?, _ reason: [UInt8] = []) -> [UInt8] {
    var payload: [UInt8] = []
    if let code { payload = [UInt8(code >> 8), UInt8(code & 0xFF)] + reason }
    return clientFrame(.close, payload)
}

/// The close code of the close frame among `actions` (nil: none sent, 0: empty close).
func sentCloseCode(_ actions: [WebSocketConnection.Action]) -> UInt16? {
    for case .send(let bytes) in actions where bytes.first == 0x88 {
        return bytes.count >= 4 ? UInt16(bytes[2]) << 8 | UInt16(bytes[3]) : 0
    }
    return nil
}

struct ConnectionTests {
    @Test func fragmentedMessagesWithInterleavedControlFrames() {
        var connection = WebSocketConnection(role: .server)
        let bytes = clientFrame(.text, Array("Hel".utf8), fin: false) + clientFrame(.ping, [7]) + clientFrame(.continuation, Array("lo".utf8), fin: false)
            + clientFrame(.pong, [9]) + clientFrame(.continuation, Array(" 😀".utf8))
        let actions = connection.receive(bytes)
        #expect(actions == [
            .send(FrameEncoder.encode(opcode: .pong, payload: [7])), .pongReceived([9]),
            .deliver(.init(isText: true, payload: Array("Hello 😀".utf8))),
        ])
    }

    @Test(arguments: [
        (clientFrame(.continuation, [1]), UInt16(1002)),
        (clientFrame(.text, [1], fin: false) + clientFrame(.binary, [2]), 1002),
        (clientFrame(.text, [1], rsv1: true), 1002),
        ([0x81 | 0x20, 0x80, 0, 0, 0, 0], 1002),  // RSV2
        (clientFrame(.text, [0xCE, 0xBA, 0xFF]), 1007),
        (clientFrame(.text, [0xCE], fin: true), 1007),  // ends inside a sequence
        (clientFrame(.text, [0xCE], fin: false) + clientFrame(.continuation, [0x41]), 1007),
    ] as [([UInt8], UInt16)])
    func protocolViolationsCloseWithTheRightCode(_ bytes: [UInt8], _ code: UInt16) {
        var connection = WebSocketConnection(role: .server)
        let actions = connection.receive(bytes)
        #expect(sentCloseCode(actions) == code)
        #expect(!actions.contains { if case .deliver = $0 { true } else { false } })
        #expect(connection.state == .closeSent || connection.state == .closed)
    }

    @Test func invalidUTF8FailsAtTheFirstBadFragmentNotAtTheEnd() {
        var connection = WebSocketConnection(role: .server)
        let first = connection.receive(clientFrame(.text, Array("ok".utf8), fin: false))
        #expect(first.isEmpty)
        let second = connection.receive(clientFrame(.continuation, [0xED, 0xA0, 0x80], fin: false))  // surrogate, not final
        #expect(sentCloseCode(second) == 1007)
    }

    @Test func invalidUTF8FailsBeforeItsFrameIsComplete() {
        var connection = WebSocketConnection(role: .server)
        let frame = clientFrame(.text, Array("valid start ".utf8) + [0xF4, 0x90] + Array(String(repeating: "x", count: 1000).utf8))
        // Only the header and the first bytes of the payload have arrived.
        let early = connection.receive(Array(frame.prefix(8 + 12)))
        #expect(early.isEmpty)
        let bad = connection.receive(Array(frame[20..<24]))
        #expect(sentCloseCode(bad) == 1007)
    }

    @Test func frameBeforeAProtocolErrorInTheSameReadIsStillHandled() {
        var connection = WebSocketConnection(role: .server)
        let actions = connection.receive(clientFrame(.text, Array("first".utf8)) + [0x85, 0x80, 0, 0, 0, 0])
        #expect(actions.first == .deliver(.init(isText: true, payload: Array("first".utf8))))
        #expect(sentCloseCode(actions) == 1002)
    }

    @Test func oversizedMessagesClose1009EvenWhenFragmented() {
        var connection = WebSocketConnection(role: .server, configuration: .init(maxMessageSize: 100))
        #expect(connection.receive(clientFrame(.binary, [UInt8](repeating: 1, count: 60), fin: false)).isEmpty)
        #expect(sentCloseCode(connection.receive(clientFrame(.continuation, [UInt8](repeating: 1, count: 60)))) == 1009)
        var single = WebSocketConnection(role: .server, configuration: .init(maxMessageSize: 100))
        let actions = single.receive(clientFrame(.binary, [UInt8](repeating: 1, count: 101)))
        #expect(sentCloseCode(actions) == 1009)
        #expect(actions.last == .closeTransport)  // a frame-level failure hangs up
    }

    /// RFC 6455 §7.4: which codes a peer may send.
    @Test(arguments: [
        (UInt16(1000), true), (1001, true), (1002, true), (1003, true), (1007, true), (1008, true), (1009, true), (1010, true),
        (1011, true), (3000, true), (3999, true), (4000, true), (4999, true),
        (0, false), (999, false), (1004, false), (1005, false), (1006, false), (1015, false), (1016, false), (2000, false),
        (2999, false), (5000, false), (65535, false),
    ])
    func closeCodesAreEchoedOrRejected(_ code: UInt16, _ valid: Bool) {
        var connection = WebSocketConnection(role: .server)
        let actions = connection.receive(closeFrame(code, Array("bye".utf8)))
        #expect(sentCloseCode(actions) == (valid ? code : 1002))
        #expect(actions.last == .closeTransport)
        #expect(connection.state == .closed)
    }

    @Test func emptyCloseGetsAnEmptyCloseAndBadPayloadsAreRejected() {
        var empty = WebSocketConnection(role: .server)
        #expect(sentCloseCode(empty.receive(closeFrame(nil))) == 0)
        var oneByte = WebSocketConnection(role: .server)
        #expect(sentCloseCode(oneByte.receive(clientFrame(.close, [0x03]))) == 1002)
        var badReason = WebSocketConnection(role: .server)
        #expect(sentCloseCode(badReason.receive(closeFrame(1000, [0xFF]))) == 1007)
    }

    @Test func ourCloseWaitsForThePeersThenHangsUp() {
        var connection = WebSocketConnection(role: .server)
        let start = connection.close(.goingAway, reason: "restart")
        #expect(sentCloseCode(start) == 1001)
        #expect(start.last == .startCloseTimer)
        #expect(connection.receive(clientFrame(.text, Array("late".utf8))).isEmpty)  // ignored while closing
        #expect(connection.receive(clientFrame(.ping, [])).isEmpty)
        let end = connection.receive(closeFrame(1001))
        #expect(sentCloseCode(end) == nil)
        #expect(end.last == .closeTransport)
    }

    @Test func clientRoleMasksAndServerRoleDoesNot() {
        var client = WebSocketConnection(role: .client)
        let frame = client.encodeMessage(Array("hi".utf8), isText: true)
        #expect(frame[1] & 0x80 != 0)
        var server = WebSocketConnection(role: .server)
        let actions = server.receive(frame)
        #expect(actions == [.deliver(.init(isText: true, payload: Array("hi".utf8)))])
        let reply = server.encodeMessage(Array("yo".utf8), isText: true)
        #expect(reply == [0x81, 0x02] + Array("yo".utf8))
        #expect(client.receive(reply) == [.deliver(.init(isText: true, payload: Array("yo".utf8)))])
    }
}

struct DeflateTests {
    static func negotiate(_ header: String, prefer: Bool = false) -> DeflateParameters? {
        PerMessageDeflateNegotiation(preferServerNoContextTakeover: prefer).negotiate(headerValues: [header])
    }

    @Test func negotiationAcceptsValidOffersAndDeclinesTheRest() {
        #expect(Self.negotiate("permessage-deflate")?.responseHeaderValue == "permessage-deflate")
        #expect(Self.negotiate("permessage-deflate; client_max_window_bits")?.responseHeaderValue == "permessage-deflate")
        #expect(Self.negotiate("permessage-deflate; client_max_window_bits=10")?.clientMaxWindowBits == 10)
        #expect(Self.negotiate("permessage-deflate; server_max_window_bits=\"12\"")?.serverMaxWindowBits == 12)
        #expect(Self.negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover")?.responseHeaderValue
            == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        #expect(Self.negotiate("permessage-deflate", prefer: true)?.serverNoContextTakeover == true)
        for declined in [
            "permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7", "permessage-deflate; unknown_param",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1", "x-webkit-deflate-frame",
        ] {
            #expect(Self.negotiate(declined) == nil, "\(declined)")
        }
    }

    @Test func theFirstAcceptableOfSeveralOffersWins() {
        let header = "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10, permessage-deflate"
        #expect(Self.negotiate(header)?.serverMaxWindowBits == 10)
        let split = PerMessageDeflateNegotiation().negotiate(headerValues: ["foo, permessage-deflate; bogus", "permessage-deflate; client_no_context_takeover"])
        #expect(split?.clientNoContextTakeover == true)
    }

    static let combinations: [DeflateParameters] = {
        var all: [DeflateParameters] = []
        for serverNoContext in [false, true] {
            for clientNoContext in [false, true] {
                for serverBits in [9, 12, 15] {
                    var parameters = DeflateParameters()
                    parameters.serverNoContextTakeover = serverNoContext
                    parameters.clientNoContextTakeover = clientNoContext
                    parameters.serverMaxWindowBits = serverBits
                    parameters.clientMaxWindowBits = serverBits == 15 ? 15 : 10
                    all.append(parameters)
                }
            }
        }
        return all
    }()

    @Test(arguments: combinations)
    func messagesRoundTripBothWays(_ parameters: DeflateParameters) throws {
        var server = WebSocketConnection(role: .server, compressor: try PerMessageDeflate(parameters: parameters, role: .server))
        var client = WebSocketConnection(role: .client, compressor: try PerMessageDeflate(parameters: parameters, role: .client))
        let messages: [[UInt8]] = [
            Array(String(repeating: "agent output line ", count: 200).utf8), [], Array("short".utf8),
            (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }, Array(String(repeating: "agent output line ", count: 200).utf8),
        ]
        for message in messages {
            let down = server.encodeMessage(message, isText: false)
            #expect(down[0] & 0x40 != 0)  // RSV1
            #expect(client.receive(down) == [.deliver(.init(isText: false, payload: message))])
            let up = client.encodeMessage(message, isText: false)
            #expect(server.receive(up) == [.deliver(.init(isText: false, payload: message))])
        }
    }

    @Test func withoutContextTakeoverEachMessageCompressesAlone() throws {
        var parameters = DeflateParameters()
        parameters.serverNoContextTakeover = true
        let shared = try PerMessageDeflate(parameters: parameters, role: .server)
        let message = Array(String(repeating: "same bytes for every viewer ", count: 50).utf8)
        let first = try shared.compress(message)
        let second = try shared.compress(message)
        #expect(first == second)
        #expect(first.count < message.count / 5)
        var withContext = DeflateParameters()
        withContext.serverNoContextTakeover = false
        let stateful = try PerMessageDeflate(parameters: withContext, role: .server)
        let a = try stateful.compress(message)
        let b = try stateful.compress(message)
        #expect(b.count < a.count)  // the second refers back to the first
    }

    @Test func aZipBombClosesWith1009AndStaysSmall() throws {
        let parameters = DeflateParameters()
        // An attacker compresses as hard as zlib can: 50 MiB of zeros in about 50 KB.
        let bomb = try PerMessageDeflate(parameters: parameters, role: .client, level: 9).compress([UInt8](repeating: 0, count: 50 << 20))
        #expect(bomb.count < 100_000)
        var server = WebSocketConnection(
            role: .server, configuration: .init(maxMessageSize: 1 << 20), compressor: try PerMessageDeflate(parameters: parameters, role: .server))
        let actions = server.receive(clientFrame(.binary, bomb, rsv1: true))
        #expect(sentCloseCode(actions) == 1009)
    }

    @Test func garbageCompressedDataCloses1007() throws {
        var server = WebSocketConnection(role: .server, compressor: try PerMessageDeflate(parameters: DeflateParameters(), role: .server))
        let actions = server.receive(clientFrame(.binary, [0xFF, 0xFF, 0xFF, 0xFF, 0x00], rsv1: true))
        #expect(sentCloseCode(actions) == 1007)
    }

    @Test func rsv1OnAContinuationIsAProtocolError() throws {
        var server = WebSocketConnection(role: .server, compressor: try PerMessageDeflate(parameters: DeflateParameters(), role: .server))
        let compressed = try PerMessageDeflate(parameters: DeflateParameters(), role: .client).compress(Array("hello".utf8))
        let actions = server.receive(clientFrame(.text, compressed, fin: false, rsv1: true) + clientFrame(.continuation, [], rsv1: true))
        #expect(sentCloseCode(actions) == 1002)
    }
}

extension DeflateParameters: CustomTestStringConvertible {
    public var testDescription: String { responseHeaderValue }
}

/// The client role's side of RFC 7692: the server's answer may only narrow our offer.
struct DeflateClientOfferTests {
    @Test func acceptsWhatTheServerNarrowedAndNothingElse() throws {
        #expect(try PerMessageDeflateClientOffer.accept(responseValues: []).get() == nil)
        let accepted = try #require(try PerMessageDeflateClientOffer.accept(
            responseValues: ["permessage-deflate; server_no_context_takeover; client_max_window_bits=12"]).get())
        #expect(accepted.serverNoContextTakeover)
        #expect(accepted.clientMaxWindowBits == 12)
        #expect(accepted.serverMaxWindowBits == 15)
        for bad in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  // repeated
            "permessage-deflate; mystery",  // not a parameter of the extension
            "permessage-deflate; server_max_window_bits=16",  // out of range
            "permessage-deflate; client_max_window_bits=8",  // zlib cannot honour 8
            "permessage-deflate; client_max_window_bits",  // a server must give a value
            "x-webkit-deflate-frame",  // never offered
            "permessage-deflate, permessage-deflate",  // two answers to one offer
        ] {
            #expect(throws: Handshake.Rejection.self, "\(bad)") { try PerMessageDeflateClientOffer.accept(responseValues: [bad]).get() }
        }
    }
}
