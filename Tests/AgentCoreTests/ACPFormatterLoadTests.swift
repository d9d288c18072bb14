import Testing

@testable import AgentCore

/// A loaded ACP session replays its earlier turns before `session/load` answers: shown for a
/// new job that loads an earlier one's session, not for a job continued in its own session
/// (its log has them already).
@Suite struct ACPFormatterLoadTests {
    static let exchange = [
        #"{"jsonrpc":"2.0","id":2,"method":"session/load","params":{"sessionId":"sess-1","cwd":"/w","mcpServers":[]}}"#,
        #"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"sess-1","update":{"sessionUpdate":"user_message_chunk","content":{"type":"text","text":"remember 7"}}}}"#,
        #"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"sess-1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"I will.\n"}}}}"#,
        #"{"jsonrpc":"2.0","id":2,"result":{}}"#,
        #"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"sess-1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"It was 7.\n"}}}}"#,
    ]

    static func lines(continuing: Bool) throws -> [String] {
        var formatter = ACPFormatter()
        if continuing { formatter.continuesJob() }
        var lines: [LogLine] = []
        for text in exchange { lines += formatter.format(event: try JSONParser.parse(text)) }
        return (lines + formatter.finish()).map(\.displayText)
    }

    @Test func aNewJobShowsTheLoadedTurnsAContinuedOneDoesNot() throws {
        #expect(try Self.lines(continuing: false) == ["› remember 7", "I will.", "session sess-1 loaded: its earlier turns are above", "It was 7."])
        #expect(try Self.lines(continuing: true) == ["session sess-1 resumed", "It was 7."])
    }
}
