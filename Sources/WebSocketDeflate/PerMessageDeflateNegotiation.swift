import WebSocketCore

/// Server-side negotiation of permessage-deflate (RFC 7692 §5, §7.1): reads every offer in
/// the request's `Sec-WebSocket-Extensions` values (several headers, comma lists, quoted
/// values), accepts the first one it can honour exactly, and declines the rest.
///
/// An offer is declined when a parameter is unknown, repeated, or has an invalid value
/// (§7.1: "MUST decline"), and when it asks for `server_max_window_bits=8`: zlib's raw
/// deflate silently uses a 512-byte window for 8, which the client could not decode.
public struct PerMessageDeflateNegotiation: Sendable {
    /// Answer with `server_no_context_takeover` even when the client did not ask: every
    /// message is then compressed on its own, so one compressed frame can serve every viewer.
    public var preferServerNoContextTakeover: Bool

    public init(preferServerNoContextTakeover: Bool = false) {
        self.preferServerNoContextTakeover = preferServerNoContextTakeover
    }

    public func negotiate(headerValues: [String]) -> DeflateParameters? {
        for offer in ExtensionHeader.parse(headerValues) where offer.name.lowercased() == "permessage-deflate" {
            if let parameters = accept(offer) { return parameters }
        }
        return nil
    }

    private func accept(_ offer: ExtensionHeader.Element) -> DeflateParameters? {
        var parameters = DeflateParameters()
        var seen = Set<String>()
        var clientBitsOffered: Int?
        for (rawName, value) in offer.parameters {
            let name = rawName.lowercased()
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
                parameters.serverNoContextTakeover = true
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                parameters.clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let bits = Self.windowBits(value), bits >= 9 else { return nil }
                parameters.serverMaxWindowBits = bits
            case "client_max_window_bits":
                if let value {
                    guard let bits = Self.windowBits(value) else { return nil }
                    clientBitsOffered = bits
                }
            default:
                return nil
            }
        }
        // The client limits its own window when it gives a value; we echo it so both sides
        // agree (our inflater reads any window anyway).
        if let clientBitsOffered { parameters.clientMaxWindowBits = clientBitsOffered }
        if preferServerNoContextTakeover { parameters.serverNoContextTakeover = true }
        return parameters
    }

    /// 8…15, digits only, no leading zero (RFC 7692 §7.1.2.1).
    static func windowBits(_ value: String?) -> Int? {
        guard let value, !value.isEmpty, value.count <= 2, value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            !value.hasPrefix("0"), let bits = Int(value), (8...15).contains(bits)
        else { return nil }
        return bits
    }
}

/// RFC 6455 §9.1 extension lists: `name; param; param=value, name2; param="quoted"`.
public enum ExtensionHeader {
    public struct Element: Sendable, Equatable {
        public var name: String
        public var parameters: [(String, String?)]

        public static func == (a: Element, b: Element) -> Bool {
            a.name == b.name && a.parameters.map(\.0) == b.parameters.map(\.0) && a.parameters.map(\.1) == b.parameters.map(\.1)
        }
    }

    public static func parse(_ values: [String]) -> [Element] {
        values.flatMap { split($0, on: ",") }.compactMap { element in
            let parts = split(element, on: ";").map { $0.trimmingWhitespace() }
            guard let name = parts.first, !name.isEmpty else { return nil }
            let parameters: [(String, String?)] = parts.dropFirst().filter { !$0.isEmpty }.map { part in
                guard let equals = part.firstIndex(of: "=") else { return (part, nil) }
                let key = String(part[..<equals]).trimmingWhitespace()
                var value = String(part[part.index(after: equals)...]).trimmingWhitespace()
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast().filter { $0 != "\\" })
                }
                return (key, value)
            }
            return Element(name: name, parameters: parameters)
        }
    }

    /// Splits on `separator` outside double quotes.
    static func split(_ text: String, on separator: Character) -> [String] {
        var parts: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" && quoted {
                current.append(character)
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
                current.append(character)
            } else if character == separator && !quoted {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts.map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}

/// Client-side permessage-deflate (RFC 7692 §5): the offer a client sends, and the check of
/// the server's answer, which may only narrow what was offered.
public enum PerMessageDeflateClientOffer {
    /// `permessage-deflate; client_max_window_bits`: any server answer we can decode.
    public static let headerValue = "permessage-deflate; client_max_window_bits"

    /// The parameters the server accepted; nil when it declined (no extension), and a
    /// failure when its answer is not one a client may accept (§7.1: fail the connection).
    public static func accept(responseValues: [String]) -> Result<DeflateParameters?, Handshake.Rejection> {
        let elements = ExtensionHeader.parse(responseValues)
        guard !elements.isEmpty else { return .success(nil) }
        guard elements.count == 1, elements[0].name.lowercased() == "permessage-deflate" else {
            return .failure(Handshake.Rejection(400, "the server answered an extension we did not offer"))
        }
        var parameters = DeflateParameters()
        var seen = Set<String>()
        for (rawName, value) in elements[0].parameters {
            let name = rawName.lowercased()
            guard seen.insert(name).inserted else { return .failure(Handshake.Rejection(400, "repeated \(name)")) }
            switch name {
            case "server_no_context_takeover" where value == nil: parameters.serverNoContextTakeover = true
            case "client_no_context_takeover" where value == nil: parameters.clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let bits = PerMessageDeflateNegotiation.windowBits(value) else { return .failure(Handshake.Rejection(400, "bad server_max_window_bits")) }
                parameters.serverMaxWindowBits = bits
            case "client_max_window_bits":
                guard let bits = PerMessageDeflateNegotiation.windowBits(value), bits >= 9 else {
                    return .failure(Handshake.Rejection(400, "bad client_max_window_bits"))
                }
                parameters.clientMaxWindowBits = bits
            default:
                return .failure(Handshake.Rejection(400, "unexpected parameter \(name)"))
            }
        }
        return .success(parameters)
    }
}
