import Foundation
import Glibc

/// This process's resident memory (VmRSS), for tests that prove a flood does not grow the
/// server running in it.
public func residentMemoryBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { return 0 }
    return kilobytes * 1024
}

/// A non-blocking TCP socket connected to 127.0.0.1:`port`, optionally from another loopback
/// source address (127.0.0.2, …), for floods that must never block the test.
public func connectNonBlocking(port: Int, from source: String? = nil) throws -> Int32 {
    let fd = try connectLoopback(port: port, from: source)
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

/// Like `connectLoopback(port:)`, from `source` when given (bound before connecting).
public func connectLoopback(port: Int, from source: String?, receiveTimeoutSeconds: Int = 5) throws -> Int32 {
    guard let source else { return try connectLoopback(port: port, receiveTimeoutSeconds: receiveTimeoutSeconds) }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SocketError(step: "socket", errno: errno) }
    var local = sockaddr_in()
    local.sin_family = sa_family_t(AF_INET)
    local.sin_addr.s_addr = inet_addr(source)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let size = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
    let connected = bound == 0 ? withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) } } : -1
    guard connected == 0 else {
        let error = SocketError(step: bound == 0 ? "connect" : "bind \(source)", errno: errno)
        close(fd)
        throw error
    }
    var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Sends `chunk` over the non-blocking `fd` again and again, without reading, until `limit`
/// bytes are sent or the peer has taken nothing for `stallMilliseconds`. Calls `sample`
/// between writes. Returns the bytes sent.
@discardableResult
public func flood(_ fd: Int32, chunk: [UInt8], limit: Int, stallMilliseconds: Int32 = 1_000, sample: () -> Void = {}) -> Int {
    var sent = 0
    var offset = 0
    while sent < limit {
        let count = chunk.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        sample()
        if count > 0 {
            sent += count
            offset = (offset + count) % chunk.count
            continue
        }
        guard count < 0, errno == EAGAIN || errno == EWOULDBLOCK else { break }
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&pollfd, 1, stallMilliseconds) == 0 { break }  // the server stopped reading
    }
    return sent
}
