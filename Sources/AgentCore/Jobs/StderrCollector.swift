/// A job's stderr: the last `tailBytes` kept as the error tail, and lines handed out in
/// batches no more often than the coalescing interval, so a chatty stderr cannot flood
/// viewers with one event per write.
struct StderrCollector {
    /// 4 KiB: enough for a stack trace's end or an auth error.
    static let tailBytes = 4096

    private var splitter = LineSplitter()
    private(set) var tail: [UInt8] = []
    private var pending: [LogLine] = []
    /// Bytes of the stream in whole lines so far, and where the first line waiting in
    /// `pending` starts.
    private var wholeLineBytes = 0
    private var pendingStart = 0

    /// Bytes of the stream up to the first line not handed out yet (`takePending`): where a
    /// reader of a spool file resumes without repeating or losing a line.
    var consumedBytes: Int { pending.isEmpty ? wholeLineBytes : pendingStart }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        tail.append(contentsOf: bytes.suffix(Self.tailBytes))
        if tail.count > Self.tailBytes { tail.removeFirst(tail.count - Self.tailBytes) }
        for line in splitter.feed(bytes) { append(line) }
    }

    private mutating func append(_ line: LineSplitter.Line) {
        let start = wholeLineBytes
        wholeLineBytes += line.byteCount
        var text = line.text
        if line.droppedBytes > 0 { text += " … [truncated \(line.droppedBytes) bytes]" }
        guard !text.isEmpty else { return }
        if pending.isEmpty { pendingStart = start }
        pending.append(LogLine(.stderr, .raw, text))
    }

    var hasPending: Bool { !pending.isEmpty }

    mutating func takePending() -> [LogLine] {
        defer { pending.removeAll() }
        return pending
    }

    /// At end of stream: the unfinished last line too.
    mutating func finish() -> [LogLine] {
        if let line = splitter.finish() { append(line) }
        return takePending()
    }

    var tailText: String? {
        tail.isEmpty ? nil : String(decoding: tail, as: UTF8.self)
    }
}
