/// Incremental UTF-8 validation (RFC 3629 §4) for text messages and close reasons: fed
/// fragment by fragment, it fails at the first byte that cannot start or continue a valid
/// sequence — overlong forms, surrogates (U+D800–DFFF) and code points above U+10FFFF
/// included — so a bad message is rejected before the rest of it arrives (RFC 6455 §8.1).
public struct UTF8Validator: Sendable {
    private var remaining = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    public init() {}

    /// True while nothing invalid was seen; a sequence may still be open.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if remaining == 0 {
                if byte < 0x80 {
                    index += 1
                    continue
                }
                switch byte {
                case 0xC2...0xDF: remaining = 1; lower = 0x80; upper = 0xBF
                case 0xE0: remaining = 2; lower = 0xA0; upper = 0xBF
                case 0xE1...0xEC, 0xEE...0xEF: remaining = 2; lower = 0x80; upper = 0xBF
                case 0xED: remaining = 2; lower = 0x80; upper = 0x9F
                case 0xF0: remaining = 3; lower = 0x90; upper = 0xBF
                case 0xF1...0xF3: remaining = 3; lower = 0x80; upper = 0xBF
                case 0xF4: remaining = 3; lower = 0x80; upper = 0x8F
                default: return false
                }
            } else {
                guard byte >= lower, byte <= upper else { return false }
                remaining -= 1
                lower = 0x80
                upper = 0xBF
            }
            index += 1
        }
        return true
    }

    public mutating func feed(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// True when the bytes so far end on a character boundary.
    public var isComplete: Bool { remaining == 0 }

    public static func isValid(_ bytes: [UInt8]) -> Bool {
        var validator = UTF8Validator()
        return validator.feed(bytes) && validator.isComplete
    }
}
