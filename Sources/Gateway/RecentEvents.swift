import AgentCore

/// The latest events in memory, numbered by a key that grows by one per event (a job's seq,
/// or the manager's version for the all-jobs stream), so a viewer that fell a little behind
/// (or joins a running job) is caught up without reading the event file. Bounded by
/// count; the oldest fall off.
struct RecentEvents {
    /// 8,192 events: several seconds of a fast agent, about 1–2 MiB.
    static let defaultCapacity = 8_192

    let capacity: Int
    private var events: [JobEvent] = []
    private var encoded: [[UInt8]] = []
    private var head = 0
    /// The key of `events[head]`.
    private var firstKey = 0

    init(capacity: Int = Self.defaultCapacity) {
        self.capacity = capacity
    }

    var count: Int { events.count - head }

    /// The key of the oldest event held (nil when empty).
    var oldestKey: Int? { count > 0 ? firstKey : nil }

    /// Appends an event whose key is one more than the previous one's (a gap restarts the ring).
    mutating func append(_ event: JobEvent, _ bytes: [UInt8], key: Int) {
        if count > 0, key != firstKey + count {
            events.removeAll(keepingCapacity: true)
            encoded.removeAll(keepingCapacity: true)
            head = 0
        }
        if count == 0 { firstKey = key }
        events.append(event)
        encoded.append(bytes)
        if count > capacity {
            head += 1
            firstKey += 1
            if head >= capacity {
                events.removeFirst(head)
                encoded.removeFirst(head)
                head = 0
            }
        }
    }

    /// Events with key > `since`, at most `limit`, each with its key, when the ring reaches
    /// back far enough (nil: read the file instead).
    func after(_ since: Int, limit: Int) -> [(key: Int, event: JobEvent, bytes: [UInt8])]? {
        guard let first = oldestKey, since + 1 >= first else { return nil }
        let start = head + (since + 1 - first)
        guard start <= events.count else { return [] }
        let end = min(events.count, start + limit)
        return (start..<end).map { (firstKey + ($0 - head), events[$0], encoded[$0]) }
    }
}
