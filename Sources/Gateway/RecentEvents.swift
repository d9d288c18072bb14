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
}

/// The latest events in memory, numbered by a key that grows by one per event (a job's seq,
/// or the manager's version for the all-jobs stream), so a viewer that fell behind (or
/// joins a running job) is caught up without reading the event file. A ring of fixed
/// capacity: appending never moves what is held; the oldest are overwritten.
struct RecentEvents {
    /// 65,536 events: a fraction of a second of an agent writing flat out, several minutes
    /// of a normal one; about 15–30 MiB at most, and only while the job runs.
    static let defaultCapacity = 65_536

    let capacity: Int
    private var entries: [RecentEntry] = []
    /// Index of the oldest entry once the ring is full.
    private var start = 0
    /// The key of the oldest entry held.
    private var firstKey = 0

    init(capacity: Int = Self.defaultCapacity) {
        self.capacity = capacity
    }

    var count: Int { entries.count }

    /// The key of the oldest event held (nil when empty).
    var oldestKey: Int? { entries.isEmpty ? nil : firstKey }

    /// Appends an entry whose key is one more than the previous one's (a gap restarts the ring).
    mutating func append(_ entry: RecentEntry, key: Int) {
        if !entries.isEmpty, key != firstKey + entries.count {
            entries.removeAll(keepingCapacity: true)
            start = 0
        }
        if entries.isEmpty { firstKey = key }
        if entries.count < capacity {
            entries.append(entry)
        } else {
            entries[start] = entry
            start = (start + 1) % capacity
            firstKey += 1
        }
    }

    /// Entries with key > `since`, at most `limit`, each with its key, when the ring reaches
    /// back far enough (nil: read the file instead).
    func after(_ since: Int, limit: Int) -> [(key: Int, entry: RecentEntry)]? {
        guard let first = oldestKey, since + 1 >= first else { return nil }
        let offset = since + 1 - first
        guard offset < entries.count else { return [] }
        let end = min(entries.count, offset + limit)
        return (offset..<end).map { position in (first + position, entries[(start + position) % entries.count]) }
    }
}
