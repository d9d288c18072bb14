import ArgumentParser
import EventLoop
import WebSocketDeflate
import WebSocketServer
import Foundation

struct EchoServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-server",
        abstract: "A WebSocket echo server on the gateway's engine (for the Autobahn conformance suite).")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks one).")
    var port = 9001

    @Flag(help: "Do not negotiate permessage-deflate.")
    var noDeflate = false

    @Option(help: "Largest message accepted, in bytes.")
    var maxMessageSize = 16 << 20

    func run() throws {
        let loop = try EventLoop()
        var configuration = WebSocketServer.Configuration()
        configuration.host = host
        configuration.port = port
        configuration.connection.maxMessageSize = maxMessageSize
        configuration.maxQueuedBytes = 64 << 20
        configuration.deflate = noDeflate ? nil : PerMessageDeflateNegotiation()
        let server = try EchoServer.make(loop: loop, configuration: configuration)
        server.onAcceptError = { error in printError("agentgate: accept paused: \(error)") }
        try server.start()
        FileHandle.standardOutput.write(Data("agentgate echo-server listening on ws://\(host):\(server.port)/\n".utf8))
        loop.run()
    }
}
