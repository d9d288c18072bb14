#if canImport(Glibc)
import Glibc
#endif
import HTTPCore

/// The address of a connected socket's peer, as text: the key for per-client limits.
enum PeerAddress {
    /// The per-client key of a connected socket's peer: its address, except that every
    /// loopback address is the one key "loopback". Linux answers on all of 127.0.0.0/8, so
    /// a local client counted by address could open its connections from 127.0.0.2,
    /// 127.0.0.3, … and multiply its limit by sixteen million.
    static func clientKey(_ fd: Int32) -> String {
        clientKey(address: of(fd))
    }

    /// See `clientKey(_:)`; an IPv4-mapped IPv6 address counts as the IPv4 address.
    static func clientKey(address: String) -> String {
        var address = address
        if address.lowercasedASCII().hasPrefix("::ffff:"), address.contains(".") { address = String(address.dropFirst(7)) }
        if address == "::1" || address.hasPrefix("127.") { return "loopback" }
        return address
    }

    static func of(_ fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard result == 0 else { return "unknown" }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            var address = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr } }
            inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        case AF_INET6:
            var address = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr } }
            inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
        default:
            return "local"
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
