/// The `text/event-stream` wire format (WHATWG HTML §9.2): what the gateway's SSE routes
/// write, and how a reconnecting client says where it stopped.
public enum ServerSentEvents {
    /// One event. `data` may hold newlines: each line becomes its own `data:` field, which
    /// the client joins back with "\n".
    public static func event(id: String?, name: String?, data: String) -> [UInt8] {
        var out = ""
        if let id { out += "id: \(singleLine(id))\n" }
        if let name { out += "event: \(singleLine(name))\n" }
        for line in lines(data) {
            out += "data: " + line + "\n"
        }
        return Array((out + "\n").utf8)
    }

    /// A comment line: keeps proxies and the client's timeout from closing an idle stream.
    public static func heartbeat() -> [UInt8] {
        Array(": heartbeat\n\n".utf8)
    }

    /// The `retry:` field: how long a client waits before reconnecting.
    public static func retry(milliseconds: Int) -> [UInt8] {
        Array("retry: \(milliseconds)\n\n".utf8)
    }

    /// The seq a reconnecting client last saw, from `Last-Event-ID` (nil when absent or not
    /// a non-negative integer).
    public static func lastEventID(_ headers: HTTPHeaders) -> Int? {
        guard let value = headers["Last-Event-ID"]?.trimmingSpaces(), !value.isEmpty, value.count <= 18,
            value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 })
        else { return nil }
        return Int(value)
    }

    /// Field values end at a line break, so one is never allowed inside.
    private static func singleLine(_ value: String) -> String {
        String(decoding: value.utf8.filter { $0 != 0x0A && $0 != 0x0D }, as: UTF8.self)
    }

    /// Splits on CRLF, LF or CR, the three line breaks of the event-stream format (bytes, not
    /// Characters: Swift treats "\r\n" as one Character).
    static func lines(_ text: String) -> [String] {
        var lines: [String] = []
        var current: [UInt8] = []
        var previousWasCR = false
        for byte in text.utf8 {
            if byte == 0x0A && previousWasCR {
                previousWasCR = false
                continue
            }
            previousWasCR = byte == 0x0D
            if byte == 0x0A || byte == 0x0D {
                lines.append(String(decoding: current, as: UTF8.self))
                current.removeAll()
            } else {
                current.append(byte)
            }
        }
        lines.append(String(decoding: current, as: UTF8.self))
        return lines
    }
}
