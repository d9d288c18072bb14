/// One field of a launch request that reaches an agent's command line, with the values it may
/// take. Served by `/api/agents/capabilities` so the dashboard and the CLI build their forms
/// from the server's list instead of keeping their own.
public struct LaunchField: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// One of a fixed list (effort levels).
        case choice([String])
        /// A model name: `LaunchField.identifierPattern`, never a flag.
        case identifier
        /// A session id: `LaunchField.sessionIDPattern`, never a flag and never a path (an
        /// agent may look it up as a file name).
        case sessionID
        /// An integer in a range (max turns).
        case integer(ClosedRange<Int>)
        /// A number in a range (a budget in dollars).
        case number(ClosedRange<Double>)
        /// A custom command's argv.
        case argv
    }

    public var name: String
    public var kind: Kind
    /// What the field does, for a form's hint.
    public var summary: String

    public init(_ name: String, _ kind: Kind, _ summary: String) {
        self.name = name
        self.kind = kind
        self.summary = summary
    }

    /// Model names (`opus`, `claude-opus-4-5-20251101`, `sonnet[1m]`, `anthropic/claude-sonnet-4-5`,
    /// `openrouter/meta-llama/llama-3:free`) and session ids (UUIDs, `ses_…`, `20250101_1`):
    /// starts with a letter or digit, so it can never be read as a flag, at most 200 characters.
    public static let identifierPattern = "^[A-Za-z0-9][A-Za-z0-9._:/@+\\[\\]-]{0,199}$"

    /// Session ids (UUIDs, `ses_…`, `20250101_1`): the identifier pattern without `/` and
    /// brackets, so no id reaches out of the directory an agent keeps its sessions in.
    public static let sessionIDPattern = "^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"

    public static func isIdentifier(_ value: String) -> Bool {
        matches(value, also: "._:/@+[]-")
    }

    public static func isSessionID(_ value: String) -> Bool {
        matches(value, also: "._:@+-")
    }

    /// Starts with a letter or digit, at most 200 bytes, each a letter, digit or one of `also`.
    private static func matches(_ value: String, also: String) -> Bool {
        let bytes = Array(value.utf8)
        let allowed = Array(also.utf8)
        guard let first = bytes.first, bytes.count <= 200, isAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || allowed.contains($0) }
    }

    private static func isAlphanumeric(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }

    public var json: JSONValue {
        var members: [JSONValue.Member] = [.init("name", .string(name))]
        switch kind {
        case .choice(let values):
            members.append(.init("type", .string("choice")))
            members.append(.init("values", .array(values.map(JSONValue.string))))
        case .identifier:
            members.append(.init("type", .string("identifier")))
            members.append(.init("pattern", .string(Self.identifierPattern)))
        case .sessionID:
            members.append(.init("type", .string("identifier")))
            members.append(.init("pattern", .string(Self.sessionIDPattern)))
        case .integer(let range):
            members.append(.init("type", .string("integer")))
            members.append(.init("minimum", .int(range.lowerBound)))
            members.append(.init("maximum", .int(range.upperBound)))
        case .number(let range):
            members.append(.init("type", .string("number")))
            members.append(.init("minimum", .double(range.lowerBound)))
            members.append(.init("maximum", .double(range.upperBound)))
        case .argv:
            members.append(.init("type", .string("argv")))
        }
        members.append(.init("summary", .string(summary)))
        return .object(members)
    }
}
