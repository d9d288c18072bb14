import AgentCore
import EventLoop
import WebSocketCore
import WebSocketDeflate

/// How events look on each kind of viewer connection: the same bytes whether an event goes
/// out live (encoded once for every viewer of a format) or from the store during replay
/// (encoded a slice at a time, off the loop).
enum EventWire {
    /// What a viewer reads.
    enum Format: Hashable, Sendable {
        /// WebSocket: JSON events, or `format=text` log lines.
        case json, text
        /// SSE: one job (ids are seqs), or every job (ids are the manager's version).
        case sse, sseAll
    }

    /// How one viewer's replay is framed.
    struct Framing: Hashable, Sendable {
        var format: Format
        /// WebSocket frames compressed once for every viewer that negotiated deflate with no
        /// context takeover (what our negotiation asks for).
        var sharedDeflate = false
        /// A WebSocket whose compression is its own: payloads come back unframed and its
        /// session frames each one.
        var perConnection = false
        /// Whether `job:event` lines (the agent's raw JSON) are wanted.
        var rawEvents = false
    }

    /// The label of the all-jobs stream's buffers (its events are numbered by version).
    static let allJobsStream = "*"

    /// Which event a buffer holds (see `OutboundBuffer.Label`).
    static func label(_ event: JobEvent) -> OutboundBuffer.Label {
        OutboundBuffer.Label(stream: event.jobId, events: event.seq...event.seq)
    }

    /// `id: N\nevent: type\ndata: {json}\n\n` (the JSON has no raw newlines).
    static func sseEvent(id: Int, type: String, data: [UInt8]) -> [UInt8] {
        var bytes = Array("id: \(id)\nevent: \(type)\ndata: ".utf8)
        bytes.reserveCapacity(bytes.count + data.count + 2)
        bytes += data
        bytes += [0x0A, 0x0A]
        return bytes
    }

    static func appendSSEEvent(to bytes: inout [UInt8], id: Int, type: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer) {
        bytes += Array("id: \(id)\nevent: ".utf8)
        bytes += type
        bytes += Array("\ndata: ".utf8)
        bytes += data
        bytes += [0x0A, 0x0A]
    }

    /// The `format=text` form of an event: log lines as `exec` prints them, and a final
    /// status line. Escaped as the CLI escapes (`TerminalText`): these frames are read on
    /// terminals (websocat), where an agent's ESC or U+009B would act instead of showing. A
    /// blank line (a paragraph break in an answer) goes out as one space: websocat and other
    /// line-oriented clients take a zero-length message for the end of the stream.
    static func textLine(_ event: JobEvent) -> String? {
        let text: String
        switch event.payload {
        case .log(let line): text = TerminalText.escaped(line.displayText)
        case .completed(let job): text = TerminalText.escaped(job.statusLine)
        case .started, .status, .agentEvent, .queue, .spend, .permission: return nil
        }
        return text.isEmpty ? " " : text
    }

    /// A slice of stored events framed for one viewer: every frame (or SSE event) in one
    /// buffer, so queueing a slice costs the loop one append however many events it holds.
    struct Replay: Sendable {
        var bytes: [UInt8] = []
        /// Or ready frames in a file (`ReplayFrames`), sent from there.
        var file: (file: SharedFile, bytes: Range<Int>)?
        /// Unframed payloads and their seqs, for a connection that frames its own
        /// (`perConnection`).
        var payloads: [(seq: Int, bytes: [UInt8])] = []
        /// The first seq the slice covered.
        var first: Int?
        /// Events the viewer was sent (raw agent events it did not ask for are skipped).
        var events = 0
        /// The last seq the slice covered, sent or skipped.
        var through: Int?
        /// It held the job's `job:completed`.
        var sawLast = false
        var gap: ClosedRange<Int>?
        var reachedEnd = false

        /// Nothing follows it in its stream: it reached what is stored, held the job's end,
        /// or came back empty.
        var isLast: Bool { reachedEnd || sawLast || (through == nil && gap == nil) }
    }

    /// Frames a slice for `framing`, with `compressor` (no context takeover) for shared
    /// deflate. Runs on the history reader's thread.
    static func replay(_ slice: EventSlice, framing: Framing, compressor: PerMessageDeflate?) -> Replay {
        var replay = Replay()
        replay.gap = slice.gap
        replay.reachedEnd = slice.reachedEnd
        replay.through = slice.lines.last?.seq
        replay.first = slice.lines.first?.seq
        replay.bytes.reserveCapacity(slice.bytes.count + slice.lines.count * 48)
        slice.bytes.withUnsafeBytes { all in
            for line in slice.lines {
                let bytes = UnsafeRawBufferPointer(rebasing: all[line.range])
                let type = EventLineScanner.typeOf(bytes) ?? UnsafeRawBufferPointer(start: nil, count: 0)
                if EventLineScanner.type(type, is: "job:completed") { replay.sawLast = true }
                if EventLineScanner.type(type, is: "job:event"), !framing.rawEvents { continue }
                switch framing.format {
                case .sse:
                    appendSSEEvent(to: &replay.bytes, id: line.seq, type: type, data: bytes)
                case .sseAll:
                    continue  // the all-jobs stream replays from memory, by version
                case .json where !framing.perConnection && !framing.sharedDeflate:
                    // The common case, framed in place: no copy of the line of its own.
                    appendTextFrame(bytes, to: &replay.bytes)
                case .json:
                    appendMessage(Array(bytes), seq: line.seq, framing: framing, compressor: compressor, to: &replay)
                case .text:
                    guard let value = try? JSONParser.parse(Array(bytes)), let event = JobEvent(json: value),
                        let text = textLine(event)
                    else { continue }
                    appendMessage(Array(text.utf8), seq: line.seq, framing: framing, compressor: compressor, to: &replay)
                }
                replay.events += 1
            }
        }
        return replay
    }

    /// An event line as the text frame a default viewer gets (also what `ReplayFrames` keeps).
    static func appendTextFrame(_ line: UnsafeRawBufferPointer, to bytes: inout [UInt8]) {
        FrameEncoder.appendHeader(to: &bytes, opcode: .text, payloadCount: line.count)
        bytes.append(contentsOf: line)
    }

    private static func appendMessage(_ payload: [UInt8], seq: Int, framing: Framing, compressor: PerMessageDeflate?, to replay: inout Replay) {
        if framing.perConnection {
            replay.payloads.append((seq, payload))
        } else if framing.sharedDeflate, let compressor, let compressed = try? compressor.compress(payload) {
            FrameEncoder.appendHeader(to: &replay.bytes, rsv1: true, opcode: .text, payloadCount: compressed.count)
            replay.bytes += compressed
        } else {
            FrameEncoder.appendHeader(to: &replay.bytes, opcode: .text, payloadCount: payload.count)
            replay.bytes += payload
        }
    }
}
