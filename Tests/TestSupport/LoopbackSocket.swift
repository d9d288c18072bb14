import Glibc

public struct SocketError: Error {
    public let step: String
    public let errno: Int32

    public init(step: String, errno: Int32) {
        self.step = step
        self.errno = errno
    }
}

/// A blocking, close-on-exec TCP socket connected to 127.0.0.1:`port`, with a receive
/// timeout so a test that waits for bytes that never come fails instead of hanging.
/// - Parameter receiveBufferBytes: a small kernel receive buffer, so a client that stops
///   reading fills the server's queue after little data (a slow viewer, in tests).
public func connectLoopback(port: Int, receiveTimeoutSeconds: Int = 5, receiveBufferBytes: Int? = nil) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SocketError(step: "socket", errno: errno) }
    if let receiveBufferBytes {
        var bytes = Int32(receiveBufferBytes)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        let error = SocketError(step: "connect", errno: errno)
        close(fd)
        throw error
    }
    var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Sends raw bytes and reads until the server closes or goes quiet.
public func exchange(port: Int, _ request: String, waitForClose: Bool = true) throws -> String {
    let fd = try connectLoopback(port: port, receiveTimeoutSeconds: waitForClose ? 5 : 1)
    defer { close(fd) }
    sendText(fd, request)
    return String(decoding: readUntilClosed(fd), as: UTF8.self)
}

/// Sends `text` on a connected socket (no SIGPIPE if the peer is gone).
public func sendText(_ fd: Int32, _ text: String) {
    _ = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
}

/// Sends `text` and returns what one read brings back: "" when the peer closed or said
/// nothing within the socket's receive timeout.
public func sendAndReceive(_ fd: Int32, _ text: String) -> String {
    sendText(fd, text)
    var buffer = [UInt8](repeating: 0, count: 8192)
    let count = recv(fd, &buffer, buffer.count, 0)
    return String(decoding: buffer[0..<max(0, count)], as: UTF8.self)
}

/// Everything the peer sends until it closes (or the receive timeout passes).
public func readUntilClosed(_ fd: Int32) -> [UInt8] {
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        received += buffer[0..<count]
    }
    return received
}
