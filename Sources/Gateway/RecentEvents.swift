import AgentCore

/// The latest events of one job in memory, so a viewer that fell a little behind (or joins
/// a running job) is caught up without reading the event file. Older events come from the
/// file. Bounded by count; the oldest fall off.
struct RecentEvents {
    /// 8,192 events: several seconds of a fast agent, about 1–2 MiB.
    static let capacity = 8_192

    private var events: [JobEvent] = []
    private var encoded: [[UInt8]] = []
    private var head = 0

    var count: Int { events.count - head }

    /// The seq of the oldest event held (nil when empty).
    var firstSeq: Int? { count > 0 ? events[head].seq : nil }

    mutating func append(_ event: JobEvent, _ bytes: [UInt8]) {
        events.append(event)
        encoded.append(bytes)
        if count > Self.capacity {
            head += 1
            if head >= Self.capacity {
                events.removeFirst(head)
                encoded.removeFirst(head)
                head = 0
            }
        }
    }

    /// Events with seq > `since`, at most `limit`, when the ring reaches back far enough
    /// (nil: read the file instead).
    func after(_ since: Int, limit: Int) -> [(JobEvent, [UInt8])]? {
        guard let first = firstSeq, since + 1 >= first else { return nil }
        let start = head + (since + 1 - first)
        guard start <= events.count else { return [] }
        let end = min(events.count, start + limit)
        return (start..<end).map { (events[$0], encoded[$0]) }
    }
}
