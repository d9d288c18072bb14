import AgentCore
import EventLoop
import HTTPCore
import WebSocketCore
import WebSocketDeflate
import WebSocketServer

/// Everything `agentgate serve` runs on its loop: the HTTP server, the REST routes, and the
/// WebSocket endpoints (`/ws`, `/ws/jobs/{id}`) with their subscriptions.
public final class GatewayServer {
    public let http: HTTPServer
    public let websockets: WebSocketServer
    public let gateway: Gateway
    public let hub: SubscriptionHub
    public var port: Int { http.port }

    /// - Parameter viewerQueueBytes: bytes queued for one viewer before its live delivery
    ///   pauses and it is caught up from the store instead (1 MiB).
    public init(
        loop: EventLoop, manager: JobManager, policy: AccessPolicy, http configuration: HTTPServer.Configuration,
        viewerQueueBytes: Int = 1 << 20
    ) throws(SystemError) {
        http = try HTTPServer(loop: loop, configuration: configuration)
        var websocketConfiguration = WebSocketServer.Configuration()
        // One compressed frame per event for every viewer that negotiates deflate.
        websocketConfiguration.deflate = PerMessageDeflateNegotiation(preferServerNoContextTakeover: true)
        // Browsers that cannot set headers send the token as a subprotocol, which must be echoed.
        websocketConfiguration.subprotocols = ["agentgate.v1", AccessPolicy.tokenSubprotocolPrefix + policy.token]
        websocketConfiguration.pingIntervalMilliseconds = 30_000
        websocketConfiguration.pongTimeoutMilliseconds = 30_000
        websocketConfiguration.maxQueuedBytes = viewerQueueBytes
        websockets = try WebSocketServer(loop: loop, configuration: websocketConfiguration, listening: false)
        gateway = Gateway(manager: manager, policy: policy)
        hub = SubscriptionHub(manager: manager, websockets: websockets)
        let gateway = self.gateway
        http.handler = { gateway.handle($0) }
        http.websockets = websockets
        websockets.admit = { head in Self.admit(head, policy: gateway.policy) }
    }

    public func start() throws(SystemError) {
        try http.start()
    }

    public func stop() {
        http.stop()
        websockets.stop()
    }

    /// WebSocket upgrades: known path, loopback Host, our Origin (always checked: browsers
    /// send it on every upgrade), and the token.
    static func admit(_ head: HTTPHead, policy: AccessPolicy) -> Handshake.Rejection? {
        let path = head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let parts = path.split(separator: "/")
        guard path == "/ws" || (parts.count == 3 && parts[0] == "ws" && parts[1] == "jobs") else {
            return Handshake.Rejection(404, "no WebSocket endpoint at \(path)")
        }
        guard policy.isAllowedHost(head.headers["Host"]) else { return Handshake.Rejection(403, "Host is not allowed") }
        guard policy.isAllowedOrigin(head.headers["Origin"], host: head.headers["Host"]) else {
            return Handshake.Rejection(403, "Origin is not allowed")
        }
        guard policy.isAuthenticated(head.headers) else { return Handshake.Rejection(401, "missing or wrong token") }
        return nil
    }
}
