import Foundation
import Hummingbird
import HummingbirdWSCompression
import HummingbirdWebSocket

/// Viewers of each job: one AsyncStream per viewer, fed by the job's reader task. The
/// idiomatic shape: a task per viewer that awaits its stream and writes each line.
actor JobHub {
    private var viewers: [String: [UUID: AsyncStream<String>.Continuation]] = [:]
    private var finished: Set<String> = []

    func subscribe(_ job: String) -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        if finished.contains(job) {
            continuation.finish()
        } else {
            viewers[job, default: [:]][UUID()] = continuation
        }
        return stream
    }

    func publish(_ job: String, _ line: String) {
        for continuation in viewers[job, default: [:]].values { continuation.yield(line) }
    }

    func finish(_ job: String) {
        finished.insert(job)
        for continuation in viewers[job, default: [:]].values { continuation.finish() }
        viewers[job] = nil
    }
}

struct LaunchRequest: Decodable {
    var prompt: String
}

let hub = JobHub()

/// Spawns `claude` (the benchmark's fake agent) with the prompt on stdin and publishes each
/// stdout line to the job's viewers.
func launch(prompt: String) throws -> String {
    let id = UUID().uuidString.lowercased()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    try process.run()
    stdin.fileHandleForWriting.write(Data(prompt.utf8))
    try stdin.fileHandleForWriting.close()
    let (lines, continuation) = AsyncStream<String>.makeStream()
    let handle = stdout.fileHandleForReading
    Thread.detachNewThread {
        var pending = Data()
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            pending.append(chunk)
            while let newline = pending.firstIndex(of: 0x0A) {
                continuation.yield(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...newline)
            }
        }
        process.waitUntilExit()
        continuation.finish()
    }
    Task {
        for await line in lines { await hub.publish(id, line) }
        await hub.finish(id)
    }
    return id
}

let router = Router()
router.post("/api/agents/jobs") { request, context -> Response in
    let body = try await request.decode(as: LaunchRequest.self, context: context)
    let id = try launch(prompt: body.prompt)
    let json = "{\"job\":{\"id\":\"\(id)\",\"status\":\"running\"}}"
    return Response(status: .created, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
}
router.get("/healthz") { _, _ in "ok" }

let webSockets = Router(context: BasicWebSocketRequestContext.self)
webSockets.ws("/ws/jobs/:id") { _, _ in
    .upgrade([:])
} onUpgrade: { _, outbound, context in
    guard let id = context.requestContext.parameters.get("id") else { return }
    for await line in await hub.subscribe(id) {
        try await outbound.write(.text(line))
    }
    try await outbound.write(.text("{\"type\":\"job:completed\",\"job\":\"\(id)\"}"))
}

let port = Int(ProcessInfo.processInfo.environment["PORT"] ?? "") ?? 7780
let app = Application(
    router: router,
    server: .http1WebSocketUpgrade(
        webSocketRouter: webSockets,
        configuration: .init(ws: .init(extensions: [.perMessageDeflate(noContextTakeover: true, minFrameSizeToCompress: 16)]))),
    configuration: .init(address: .hostname("127.0.0.1", port: port))
)
print("hummingbird-peer listening on http://127.0.0.1:\(port)")
try await app.runService()
