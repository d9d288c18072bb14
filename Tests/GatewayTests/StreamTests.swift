import Foundation
import Glibc
import TestSupport
import Testing

@testable import Gateway

/// A `text/event-stream` reader over a real socket.
final class EventStreamClient {
    struct Event {
        var id: String?
        var name: String
        var data: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:] }
    }

    let fd: Int32
    private(set) var status = 0
    private(set) var head = ""
    private var buffer: [UInt8] = []

    init(port: Int, path: String, token: String? = RunningGateway.token, headers: [(String, String)] = [], receiveBufferBytes: Int? = nil) throws {
        fd = try connectLoopback(port: port, receiveBufferBytes: receiveBufferBytes)
        var text = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        if let token { text += "Authorization: Bearer \(token)\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        let bytes = Array((text + "\r\n").utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        while true {
            if let end = Self.find([13, 10, 13, 10], in: buffer) {
                head = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                status = Int(head.dropFirst(9).prefix(3)) ?? 0
                return
            }
            guard fill() else { return }
        }
    }

    deinit { close(fd) }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &chunk, chunk.count, 0)
        guard count > 0 else { return false }
        buffer += chunk[0..<count]
        return true
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for index in 0...(haystack.count - needle.count) where haystack[index] == needle[0] {
            if Array(haystack[index..<(index + needle.count)]) == needle { return index }
        }
        return nil
    }

    /// The next event (comments and `retry:` skipped); nil at close or timeout.
    func next() -> Event? {
        while true {
            if let end = Self.find([10, 10], in: buffer) {
                let block = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 2)
                var event = Event(id: nil, name: "message", data: "")
                var hasData = false
                for line in block.split(separator: "\n") {
                    if line.hasPrefix("id: ") { event.id = String(line.dropFirst(4)) }
                    if line.hasPrefix("event: ") { event.name = String(line.dropFirst(7)) }
                    if line.hasPrefix("data: ") {
                        event.data += (hasData ? "\n" : "") + line.dropFirst(6)
                        hasData = true
                    }
                }
                if hasData { return event }
                continue
            }
            guard fill() else { return nil }
        }
    }

    /// Events until one named `name` (included).
    func events(until name: String) -> [Event] {
        var events: [Event] = []
        while let event = next() {
            events.append(event)
            if event.name == name { break }
        }
        return events
    }
}

@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct StreamTests {
    @Test func aJobStreamSendsEveryEventThenEndsAndResumesFromLastEventID() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let id = try launch(gateway, script: fastJob)
        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream")
        #expect(stream.status == 200)
        #expect(stream.head.contains("Content-Type: text/event-stream"))
        let events = stream.events(until: "job:completed")
        #expect(events.map(\.id) == (1...3002).map { String($0) })
        #expect(events.first?.name == "job:started")
        #expect(events[1].json["text"] as? String == "line 0")
        #expect(stream.next() == nil)  // the server closes after the job's end

        let resumed = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream", headers: [("Last-Event-ID", "1500")])
        #expect(resumed.events(until: "job:completed").map(\.id) == (1501...3002).map { String($0) })
        // Caught up with a finished job: 204 tells an EventSource to stop reconnecting.
        let done = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream", headers: [("Last-Event-ID", "3002")])
        #expect(done.status == 204)
        #expect(try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/nope/stream").status == 404)
        #expect(try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream", token: nil).status == 401)
    }

    /// The line an agent is still writing reaches a job's SSE viewers as `job:partial`
    /// without an `id:` (a reconnect resumes after the last stored event), a viewer that joins
    /// mid-line gets it once it has caught up, and the stored line replaces it.
    @Test func theLineBeingWrittenStreamsAsAPartialWithoutAnID() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let start = #"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}}"#
        let delta = { (text: String) in #"{"type":"stream_event","api_message_id":"m1","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\#(text)"}}}"# }
        let assistant = #"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Half a line, then the rest"}]}}"#
        let script = "echo '\(start)'; echo '\(delta("Half a line, "))'; sleep 1; echo '\(delta("then the rest"))'; sleep 0.5; echo '\(assistant)'"
        let id = try launch(gateway, script: script)
        let early = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream")
        usleep(400_000)
        let late = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream")
        for stream in [early, late] {
            let events = stream.events(until: "job:completed")
            let partials = events.filter { $0.name == "job:partial" }
            #expect(partials.first?.json["text"] as? String == "Half a line, ", "\(events.map(\.name))")
            #expect(partials.contains { $0.json["text"] as? String == "Half a line, then the rest" })
            #expect(partials.allSatisfy { $0.id == nil })
            let lines = events.filter { $0.name == "job:log" }.compactMap { $0.json["text"] as? String }
            #expect(lines == ["Half a line, then the rest"])
            // Stored events keep their seqs as ids, in order (raw job:event seqs are skipped).
            let ids = events.compactMap(\.id).compactMap { Int($0) }
            #expect(ids == ids.sorted() && Set(ids).count == ids.count && ids.first == 1)
        }
    }

    @Test func theAllJobsStreamStartsWithASnapshotAndResumesByVersion() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let first = try launch(gateway, script: "echo one; echo two")
        var done = false
        for _ in 0..<200 where !done {
            usleep(20_000)
            done = (try gateway.request("GET", "/api/agents/jobs/\(first)").json["job"] as? [String: Any])?["status"] as? String == "done"
        }
        let stream = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream")
        let snapshot = try #require(stream.next())
        #expect(snapshot.name == "snapshot")
        #expect((snapshot.json["jobs"] as? [[String: Any]])?.count == 1)
        let version = try #require(Int(snapshot.id ?? ""))
        #expect(version == snapshot.json["version"] as? Int)

        let second = try launch(gateway, script: fastJob)
        let events = stream.events(until: "job:completed")
        #expect(events.allSatisfy { $0.json["job"] as? String == second })
        #expect(events.compactMap { Int($0.id ?? "") } == Array((version + 1)...(version + 3002)))

        // Reconnect in the middle: exactly the rest, nothing twice.
        let resumed = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream", headers: [("Last-Event-ID", String(version + 1000))])
        #expect(resumed.events(until: "job:completed").compactMap { Int($0.id ?? "") } == Array((version + 1001)...(version + 3002)))
        // A cursor the server cannot honour: an explicit reset and a new snapshot.
        let future = try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/stream", headers: [("Last-Event-ID", "999999")])
        #expect(future.next()?.name == "reset")
        #expect(future.next()?.name == "snapshot")
    }

    @Test func aHundredSSEAndWebSocketViewersOfOneJobSeeTheSameSequence() throws {
        let gateway = try RunningGateway()
        defer { gateway.stop() }
        let id = try launch(gateway, script: "sleep 0.5; " + fastJob)
        let streams = try (0..<50).map { _ in try EventStreamClient(port: gateway.port, path: "/api/agents/jobs/\(id)/stream") }
        let sockets = try (0..<50).map { _ in try Viewer(gateway) }
        for socket in sockets { socket.send(#"{"op":"subscribe","job":"\#(id)"}"#) }
        let expected = Array(1...3002)
        for stream in streams { #expect(stream.events(until: "job:completed").compactMap { Int($0.id ?? "") } == expected) }
        for socket in sockets { #expect(socket.seqsUntilCompleted(job: id) == expected) }
    }
}
