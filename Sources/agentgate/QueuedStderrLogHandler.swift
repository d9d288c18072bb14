#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import EventLoop
import Foundation
import Logging
import Synchronization

/// swift-log's handler for `serve`: lines go to a bounded queue that a thread of its own
/// writes to stderr, so the event loop never waits on stderr. A stderr nobody reads (a full
/// pipe, a stopped terminal) costs dropped lines, counted and reported once it drains, not
/// a stalled server. Formatted like `StreamLogHandler`: `<time> <level> <label>: message`.
struct QueuedStderrLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String
    let writer: StderrLineWriter

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = Self.timestamp() + " \(event.level) \(label):"
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        if !merged.isEmpty { line += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
        line += " \(event.message)\n"
        writer.enqueue(line)
    }

    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The queue and the thread behind `QueuedStderrLogHandler`.
final class StderrLineWriter: Sendable {
    /// Lines waiting at most; past it, new lines are dropped and counted.
    static let capacity = 4_096

    private struct State {
        var lines: [String] = []
        var dropped = 0
    }

    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)
    private let descriptor: Int32

    init(descriptor: Int32 = 2) {
        self.descriptor = descriptor
        let thread = Thread { [self] in self.run() }
        thread.name = "agentgate-log"
        thread.start()
    }

    func enqueue(_ line: String) {
        let queued = state.withLock { state -> Bool in
            guard state.lines.count < Self.capacity else {
                state.dropped += 1
                return false
            }
            state.lines.append(line)
            return true
        }
        if queued { ready.signal() }
    }

    /// Waits until the queue is empty (or `milliseconds` passed), so the last lines are out
    /// before the process exits.
    func drain(milliseconds: Int = 1_000) {
        let deadline = MonotonicClock.nanoseconds() + UInt64(milliseconds) * 1_000_000
        while state.withLock({ !$0.lines.isEmpty }), MonotonicClock.nanoseconds() < deadline { usleep(1_000) }
        usleep(2_000)  // the batch taken last is being written
    }

    private func run() {
        while true {
            ready.wait()
            // Everything queued at once, in one write: a burst costs one system call.
            let (lines, dropped) = state.withLock { state -> ([String], Int) in
                defer { (state.lines, state.dropped) = ([], 0) }
                return (state.lines, state.dropped)
            }
            if dropped > 0 { write("agentgate: \(dropped) log lines dropped while stderr was not read\n") }
            if !lines.isEmpty { write(lines.joined()) }
        }
    }

    private func write(_ text: String) {
        Array(text.utf8).withUnsafeBytes { _ = try? FileDescriptor.writeAll(descriptor, $0) }
    }
}
