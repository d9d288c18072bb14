import AgentCore

/// One event as it went out: its bytes and the encodings made for viewers (frames,
/// deflated frames, SSE text), so catching a viewer up from memory queues the very buffers
/// live delivery queued, with no re-encoding.
final class RecentEntry {
    let event: JobEvent
    let bytes: [UInt8]
    var encodings = SharedEncodings()

    init(_ event: JobEvent, _ bytes: [UInt8]) {
        self.event = event
        self.bytes = bytes
    }

    /// What keeping it costs, counted as the event and up to two encodings of it.
    var weight: Int { bytes.count * 3 + 256 }
}

/// The latest events in memory, numbered by a key that grows by one per event (the
/// manager's version, for all-jobs streams that reconnect), bounded in count and in bytes:
/// the oldest go first when either bound is passed.
struct RecentEvents {
    let capacity: Int
    let maxBytes: Int
    private var entries: [RecentEntry] = []
    /// Index of the oldest entry held.
    private var head = 0
    /// The key of the oldest entry held.
    private var firstKey = 0
    private(set) var bytes = 0

    init(capacity: Int, maxBytes: Int) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    var count: Int { entries.count - head }

    /// The key of the oldest event held (nil when empty).
    var oldestKey: Int? { count == 0 ? nil : firstKey }

    /// Appends an entry whose key is one more than the previous one's (a gap restarts it).
    mutating func append(_ entry: RecentEntry, key: Int) {
        if count > 0, key != firstKey + count { removeAll() }
        if count == 0 { firstKey = key }
        entries.append(entry)
        bytes += entry.weight
        while count > 1, count > capacity || bytes > maxBytes {
            bytes -= entries[head].weight
            head += 1
            firstKey += 1
        }
        if head > 1024, head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }

    mutating func removeAll() {
        entries.removeAll(keepingCapacity: true)
        head = 0
        bytes = 0
    }

    /// Entries with key > `since`, at most `limit`, each with its key, when it reaches back
    /// far enough (nil: it does not).
    func after(_ since: Int, limit: Int) -> [(key: Int, entry: RecentEntry)]? {
        guard let first = oldestKey, since + 1 >= first else { return nil }
        let offset = since + 1 - first
        guard offset < count else { return [] }
        let end = min(count, offset + limit)
        return (offset..<end).map { position in (first + position, entries[head + position]) }
    }
}
