import AgentCore
import EventLoop
import WebSocketCore
import WebSocketDeflate
import WebSocketServer

/// A job event encoded once per viewer format, shared by every viewer of that format.
struct SharedEncodings {
    var json: SharedMessage?
    var text: SharedMessage?
    var sse: OutboundBuffer?
    var sseAll: OutboundBuffer?
}

/// The two transports a viewer reads on, behind one set of operations: the hub decides what
/// goes out and when, these say how on a WebSocket and on an SSE stream. Each returns the
/// bytes it queued, for the figures.
extension Viewer {
    /// Queues an event in the viewer's format, encoded through `shared` so every viewer of
    /// the same format gets the same bytes. `version` is the all-jobs stream's event id.
    /// Nil when the format has nothing for this event (`format=text` and a lifecycle event).
    func write(_ event: JobEvent, _ encoded: [UInt8], version: Int?, shared: inout SharedEncodings, compressor: PerMessageDeflate?) -> Int? {
        switch (format, transport) {
        case (.json, .websocket(let session)):
            let message = shared.json ?? SharedMessage(payload: encoded, isText: true, compressor: compressor, label: EventWire.label(event))
            shared.json = message
            return session.send(message)
        case (.text, .websocket(let session)):
            guard let line = EventWire.textLine(event) else { return nil }
            let message = shared.text ?? SharedMessage(payload: Array(line.utf8), isText: true, compressor: compressor, label: EventWire.label(event))
            shared.text = message
            return session.send(message)
        case (.sse, .sse(let tcp)):
            let buffer = shared.sse ?? OutboundBuffer(EventWire.sseEvent(id: event.seq, type: event.type, data: encoded), label: EventWire.label(event))
            shared.sse = buffer
            tcp.enqueue(buffer)
            return buffer.count
        case (.sseAll, .sse(let tcp)):
            let version = version ?? 0
            let buffer = shared.sseAll
                ?? OutboundBuffer(
                    EventWire.sseEvent(id: version, type: event.type, data: encoded),
                    label: OutboundBuffer.Label(stream: EventWire.allJobsStream, events: version...version))
            shared.sseAll = buffer
            tcp.enqueue(buffer)
            return buffer.count
        default:
            return nil
        }
    }

    /// A job's in-progress line (`job:partial`); `format=text` and all-jobs streams have none.
    func writePartial(_ bytes: [UInt8], shared: inout SharedEncodings, compressor: PerMessageDeflate?) -> Int? {
        switch (format, transport) {
        case (.json, .websocket(let session)):
            let message = shared.json ?? SharedMessage(payload: bytes, isText: true, compressor: compressor)
            shared.json = message
            return session.send(message)
        case (.sse, .sse(let tcp)):
            // No `id:`: a reconnecting client resumes after the last stored event.
            let buffer = shared.sse ?? OutboundBuffer(Array("event: job:partial\ndata: ".utf8) + bytes + [0x0A, 0x0A])
            shared.sse = buffer
            tcp.enqueue(buffer)
            return buffer.count
        default:
            return nil
        }
    }

    /// A replayed slice, framed for this viewer off the loop: one buffer (or one range of a
    /// file of ready frames), labelled with the events it holds.
    func write(_ replay: EventWire.Replay, job: String) -> Int {
        let label = replay.first.flatMap { first in replay.through.map { OutboundBuffer.Label(stream: job, events: first...$0) } }
        if let (file, range) = replay.file, !range.isEmpty {
            let buffer = OutboundBuffer(file: file, offset: range.lowerBound, count: range.count, label: label)
            switch transport {
            case .websocket(let session): session.send(sharedFrame: buffer)
            case .sse(let tcp): tcp.enqueue(buffer)
            }
            return range.count
        }
        switch transport {
        case .websocket(let session):
            if !replay.bytes.isEmpty { session.send(sharedFrame: OutboundBuffer(replay.bytes, label: label)) }
            for payload in replay.payloads {
                session.send(payload.bytes, isText: true, label: OutboundBuffer.Label(stream: job, events: payload.seq...payload.seq))
            }
        case .sse(let tcp):
            if !replay.bytes.isEmpty { tcp.enqueue(OutboundBuffer(replay.bytes, label: label)) }
        }
        return replay.bytes.count + replay.payloads.reduce(0) { $0 + $1.bytes.count }
    }

    /// A message that is not a job event (ack, error, reset, lagged, gap): a text frame on a
    /// WebSocket, an event named by its `type` on an SSE stream.
    func sendControl(_ message: JSONValue) {
        let bytes = JSONWriter.serialize(message)
        switch transport {
        case .websocket(let session):
            session.send(bytes, isText: true)
        case .sse(let tcp):
            tcp.enqueue(Array("event: \(message["type"]?.stringValue ?? "message")\ndata: ".utf8) + bytes + [0x0A, 0x0A])
        }
    }

    /// The shared snapshot: a text message on a WebSocket, an event with the version as its
    /// id on an SSE stream.
    func sendSnapshot(_ message: SharedMessage, version: Int) {
        switch transport {
        case .websocket(let session): _ = session.send(message)
        case .sse(let tcp): tcp.enqueue(EventWire.sseEvent(id: version, type: "snapshot", data: message.payload))
        }
    }

    /// The stream ended with its job and everything is written: a normal close.
    func closeNormally() {
        switch transport {
        case .websocket(let session): session.close(.normalClosure, reason: "job ended", afterQueued: true)
        case .sse(let tcp): tcp.closeAfterFlush()
        }
    }

    /// Closes at once: a refused stream (an unknown job), after the error that says why.
    func closeNow(_ code: CloseCode, reason: String) {
        switch transport {
        case .websocket(let session): session.close(code, reason: reason)
        case .sse(let tcp): tcp.closeAfterFlush()
        }
    }

    /// Drops the whole messages queued and not yet being written; returns them.
    func dropUnsent() -> [OutboundBuffer] {
        switch transport {
        case .websocket(let session): session.dropUnsent()
        case .sse(let tcp): tcp.dropUnsent()
        }
    }

    /// After `lagged`: close 4008 once it is written (SSE: the stream ends).
    func closeLagged() {
        switch transport {
        case .websocket(let session): session.close(SubscriptionHub.laggedCloseCode, reason: "too far behind; resume with since", afterQueued: true)
        case .sse(let tcp): tcp.closeAfterFlush()
        }
    }

    /// Its credential ended: WebSocket close 4401 with `reason`; an SSE stream closes now, its
    /// unsent bytes dropped (its reconnect gets 401).
    func closeForEndedCredential(reason: String) {
        switch transport {
        case .websocket(let session): session.close(SubscriptionHub.credentialEndedCloseCode, reason: reason)
        case .sse(let tcp): tcp.close()
        }
    }
}
