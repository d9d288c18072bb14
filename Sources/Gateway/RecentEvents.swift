import AgentCore

/// The latest events in memory, numbered by a key that grows by one per event (a job's seq,
/// or the manager's version for the all-jobs stream), so a viewer that fell a little behind
/// (or joins a running job) is caught up without reading the event file. A ring of fixed
/// capacity: appending never moves what is held; the oldest are overwritten.
struct RecentEvents {
    /// 8,192 events: several seconds of a fast agent, about 1–2 MiB.
    static let defaultCapacity = 8_192

    let capacity: Int
    private var events: [JobEvent] = []
    private var encoded: [[UInt8]] = []
    /// Index of the oldest event once the ring is full.
    private var start = 0
    /// The key of the oldest event held.
    private var firstKey = 0

    init(capacity: Int = Self.defaultCapacity) {
        self.capacity = capacity
    }

    var count: Int { events.count }

    /// The key of the oldest event held (nil when empty).
    var oldestKey: Int? { events.isEmpty ? nil : firstKey }

    /// Appends an event whose key is one more than the previous one's (a gap restarts the ring).
    mutating func append(_ event: JobEvent, _ bytes: [UInt8], key: Int) {
        if !events.isEmpty, key != firstKey + events.count {
            events.removeAll(keepingCapacity: true)
            encoded.removeAll(keepingCapacity: true)
            start = 0
        }
        if events.isEmpty { firstKey = key }
        if events.count < capacity {
            events.append(event)
            encoded.append(bytes)
        } else {
            events[start] = event
            encoded[start] = bytes
            start = (start + 1) % capacity
            firstKey += 1
        }
    }

    /// Events with key > `since`, at most `limit`, each with its key, when the ring reaches
    /// back far enough (nil: read the file instead).
    func after(_ since: Int, limit: Int) -> [(key: Int, event: JobEvent, bytes: [UInt8])]? {
        guard let first = oldestKey, since + 1 >= first else { return nil }
        let offset = since + 1 - first
        guard offset < events.count else { return [] }
        let end = min(events.count, offset + limit)
        return (offset..<end).map { position in
            let index = (start + position) % events.count
            return (first + position, events[index], encoded[index])
        }
    }
}
