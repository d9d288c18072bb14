/// Frames a payload (RFC 6455 §5.2):
///
/// ```
///  0               1               2               3
///  F R R R opcode  M len(7)        extended length (16 or 64 bit) …   masking key (client) …   payload
/// ```
///
/// A server frame is built once and the same bytes can go to any number of connections:
/// nothing in it depends on the receiver.
public enum FrameEncoder {
    /// Header length for a payload of `count` bytes (2, 4 or 10, plus 4 when masked).
    public static func headerLength(payloadCount count: Int, masked: Bool) -> Int {
        (count < 126 ? 2 : count <= 0xFFFF ? 4 : 10) + (masked ? 4 : 0)
    }

    /// Writes a frame header into `out`.
    public static func appendHeader(
        to out: inout [UInt8], fin: Bool = true, rsv1: Bool = false, opcode: Opcode, payloadCount count: Int,
        maskingKey: (UInt8, UInt8, UInt8, UInt8)? = nil
    ) {
        out.append((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode.rawValue)
        let maskBit: UInt8 = maskingKey == nil ? 0 : 0x80
        if count < 126 {
            out.append(maskBit | UInt8(count))
        } else if count <= 0xFFFF {
            out.append(maskBit | 126)
            out.append(UInt8(count >> 8))
            out.append(UInt8(count & 0xFF))
        } else {
            out.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: UInt64(count) >> UInt64(shift))) }
        }
        if let key = maskingKey { out += [key.0, key.1, key.2, key.3] }
    }

    /// A whole frame. With a masking key (client role) the payload is masked.
    public static func encode(
        fin: Bool = true, rsv1: Bool = false, opcode: Opcode, payload: [UInt8], maskingKey: (UInt8, UInt8, UInt8, UInt8)? = nil
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(headerLength(payloadCount: payload.count, masked: maskingKey != nil) + payload.count)
        appendHeader(to: &out, fin: fin, rsv1: rsv1, opcode: opcode, payloadCount: payload.count, maskingKey: maskingKey)
        if let key = maskingKey {
            let start = out.count
            out += payload
            Masking.apply(key: [key.0, key.1, key.2, key.3], to: &out, from: start, keyOffset: 0)
        } else {
            out += payload
        }
        return out
    }

    /// A close frame's payload: the code, then the UTF-8 reason (cut to fit 125 bytes).
    public static func closePayload(code: CloseCode?, reason: String = "") -> [UInt8] {
        guard let code else { return [] }
        var payload = [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xFF)]
        var reasonBytes = Array(reason.utf8.prefix(123))
        while !UTF8Validator.isValid(reasonBytes) { reasonBytes.removeLast() }
        payload += reasonBytes
        return payload
    }
}

/// XOR masking (RFC 6455 §5.3), shared by both directions.
public enum Masking {
    /// Masks `bytes[from...]` in place; `keyOffset` is the position within the key of the
    /// first byte (payloads may be unmasked in pieces).
    public static func apply(key: [UInt8], to bytes: inout [UInt8], from start: Int, keyOffset: Int) {
        guard start < bytes.count else { return }
        bytes.withUnsafeMutableBufferPointer { buffer in
            var index = start
            var k = keyOffset & 3
            // Align to the key, then go 8 bytes at a time.
            while index < buffer.count && k != 0 {
                buffer[index] ^= key[k]
                index += 1
                k = (k + 1) & 3
            }
            let word = UInt64(key[0]) | UInt64(key[1]) << 8 | UInt64(key[2]) << 16 | UInt64(key[3]) << 24
            let mask64 = word | word << 32
            let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
            while index + 8 <= buffer.count {
                let value = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                raw.storeBytes(of: value ^ mask64, toByteOffset: index, as: UInt64.self)
                index += 8
            }
            while index < buffer.count {
                buffer[index] ^= key[k]
                index += 1
                k = (k + 1) & 3
            }
        }
    }
}
