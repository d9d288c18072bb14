/// Close status codes (RFC 6455 §7.4).
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ value: UInt16) { self.rawValue = value }

    public static let normalClosure = CloseCode(1000)
    public static let goingAway = CloseCode(1001)
    public static let protocolError = CloseCode(1002)
    public static let unsupportedData = CloseCode(1003)
    /// Never sent on the wire: "the close frame had no status code".
    public static let noStatusReceived = CloseCode(1005)
    /// Never sent on the wire: "the connection dropped without a close frame".
    public static let abnormalClosure = CloseCode(1006)
    public static let invalidFramePayloadData = CloseCode(1007)
    public static let policyViolation = CloseCode(1008)
    public static let messageTooBig = CloseCode(1009)
    public static let mandatoryExtension = CloseCode(1010)
    public static let internalError = CloseCode(1011)

    /// Whether a peer may send this code in a close frame (RFC 6455 §7.4.1–7.4.2; 1012–1014
    /// are registered with IANA since). 1004–1006, 1015 and unassigned 1xxx/2xxx are not.
    public var isValidOnTheWire: Bool {
        switch rawValue {
        case 1000...1003, 1007...1014: true
        case 3000...4999: true
        default: false
        }
    }

    public var description: String { String(rawValue) }
}
