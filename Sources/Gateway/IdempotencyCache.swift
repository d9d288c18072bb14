import WebSocketCore

/// Remembers which job an `Idempotency-Key` launched, so a client that retries a launch
/// (its connection dropped before the answer) gets the same job instead of a second agent.
/// Keys live 24 hours; the oldest are forgotten past 10,000. Only successful launches are
/// remembered: a rejected request may be corrected and sent again under the same key.
struct IdempotencyCache {
    static let lifetimeMilliseconds = 24 * 3_600_000
    static let capacity = 10_000

    enum Lookup: Equatable {
        case new
        case replay(jobId: String)
        /// The key was used with a different body.
        case conflict
    }

    private struct Entry {
        var fingerprint: [UInt8]
        var jobId: String
        var expires: Int
    }

    private var entries: [String: Entry] = [:]
    private var order: [String] = []

    static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= 255 && key.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    mutating func lookup(_ key: String, body: [UInt8], now: Int) -> Lookup {
        guard let entry = entries[key], entry.expires > now else { return .new }
        return entry.fingerprint == SHA1.hash(body) ? .replay(jobId: entry.jobId) : .conflict
    }

    mutating func store(_ key: String, body: [UInt8], jobId: String, now: Int) {
        if entries[key] == nil { order.append(key) }
        entries[key] = Entry(fingerprint: SHA1.hash(body), jobId: jobId, expires: now + Self.lifetimeMilliseconds)
        while order.count > Self.capacity || (order.first.map { entries[$0].map { $0.expires <= now } ?? true } ?? false) {
            entries[order.removeFirst()] = nil
        }
    }
}
