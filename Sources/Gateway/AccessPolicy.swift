import HTTPCore

/// Who may use the gateway: the token, and the Host and Origin checks that keep a web page
/// on another site (or a DNS-rebinding name) from driving a localhost server that spawns
/// processes. Pure: decisions from headers, no I/O.
public struct AccessPolicy: Sendable {
    public var token: String
    /// Host names accepted besides the loopback ones (for a deployment behind a name).
    public var extraHosts: [String]
    /// Origins accepted besides the server's own (`http://<its Host>`).
    public var extraOrigins: [String]

    /// The cookie older dashboards were given (it held the token). Never read; a sign-in
    /// tells the browser to drop it.
    public static let legacyCookieName = "agentgate_session"
    /// WebSocket clients that cannot set headers offer `agentgate.token.<token>` as a subprotocol.
    public static let tokenSubprotocolPrefix = "agentgate.token."

    public init(token: String, extraHosts: [String] = [], extraOrigins: [String] = []) {
        self.token = token
        self.extraHosts = extraHosts.map { $0.lowercasedASCII() }
        self.extraOrigins = extraOrigins.map { $0.lowercasedASCII() }
    }

    /// `Host` must name this machine's loopback (or a configured name): a DNS-rebinding page
    /// reaches us under its own name and is refused here.
    public func isAllowedHost(_ host: String?) -> Bool {
        guard let host, let name = Self.hostName(host) else { return false }
        return Self.isLoopbackName(name) || extraHosts.contains(name)
    }

    /// `Origin`, when a browser sends one, must be this server's own origin or a configured
    /// one. Requests without Origin (curl, scripts) pass this check; they still need the token.
    public func isAllowedOrigin(_ origin: String?, host: String?) -> Bool {
        guard let origin else { return true }
        let value = origin.lowercasedASCII()
        if extraOrigins.contains(value) { return true }
        guard let host else { return false }
        let own = host.lowercasedASCII()
        return value == "http://" + own || value == "https://" + own
    }

    /// The credentials a request presents: `Authorization: Bearer`, and WebSocket subprotocols
    /// `agentgate.token.<credential>` (browsers cannot set headers on a WebSocket). Cookies
    /// are never read: a cookie goes to every port of a host, so it could not be kept from
    /// other local servers.
    public static func presentedCredentials(_ headers: HTTPHeaders) -> [String] {
        var candidates: [String] = []
        if let authorization = headers["Authorization"] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].caseInsensitiveEquals("Bearer") { candidates.append(parts[1].trimmingSpaces()) }
        }
        // As sent, not through tokens(), which lowercases: an operator's token may be mixed-case.
        for protocolName in headers.elements("Sec-WebSocket-Protocol") where protocolName.hasPrefix(Self.tokenSubprotocolPrefix) {
            candidates.append(String(protocolName.dropFirst(Self.tokenSubprotocolPrefix.count)))
        }
        return candidates
    }

    /// Whether one of the presented credentials is the master token, compared in constant time.
    public func presentsToken(_ headers: HTTPHeaders) -> Bool {
        // Check every candidate so timing does not reveal which one was close.
        var matched = false
        for candidate in Self.presentedCredentials(headers) where Self.constantTimeEquals(candidate, token) { matched = true }
        return matched
    }

    /// Compares without stopping at the first difference.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }

    /// "Name:port" or "[v6]:port" → lowercased name (nil for malformed values).
    static func hostName(_ host: String) -> String? {
        let value = host.trimmingSpaces().lowercasedASCII()
        if value.hasPrefix("[") {
            guard let end = value.firstIndex(of: "]") else { return nil }
            let rest = value[value.index(after: end)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return nil }
            return String(value[...end])
        }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.first, !name.isEmpty else { return nil }
        if parts.count == 2, parts[1].isEmpty || !parts[1].allSatisfy(\.isNumber) { return nil }
        return String(name)
    }

    /// Whether a listen address only reaches this machine (127.0.0.0/8, ::1, localhost).
    public static func isLoopbackAddress(_ address: String) -> Bool {
        let name = address.lowercasedASCII()
        return name == "::1" || isLoopbackName(name) || isLoopbackName("[\(name)]")
    }

    static func isLoopbackName(_ name: String) -> Bool {
        if name == "localhost" || name.hasSuffix(".localhost") || name == "[::1]" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
