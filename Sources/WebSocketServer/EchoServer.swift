import EventLoop

/// Echoes every message back as it came (text as text, binary as binary): the server the
/// Autobahn|Testsuite fuzzing client runs against.
public enum EchoServer {
    public static func make(
        loop: EventLoop, configuration: WebSocketServer.Configuration, listening: Bool = true
    ) throws(SystemError) -> WebSocketServer {
        let server = try WebSocketServer(loop: loop, configuration: configuration, listening: listening)
        server.onMessage = { session, message in
            session.send(message.payload, isText: message.isText)
        }
        return server
    }
}
