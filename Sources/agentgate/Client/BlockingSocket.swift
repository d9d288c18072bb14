#if canImport(Glibc)
import Glibc
#endif
import CSystemShims

/// A blocking TCP connection for the command-line client: connect with a deadline, send
/// everything, receive with a timeout (so a loop can also tick a spinner or see Ctrl-C).
final class BlockingSocket {
    let fd: Int32

    /// Connects to host:port within `timeoutMilliseconds`; throws the errno text.
    init(host: String, port: Int, timeoutMilliseconds: Int32 = 5_000) throws(ClientSocketError) {
        let result = ag_connect_tcp(host, Int32(port))
        guard result >= 0 else { throw ClientSocketError(code: -result) }
        fd = result
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let ready = poll(&poller, 1, timeoutMilliseconds)
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard ready == 1, error == 0 else {
            Glibc.close(fd)
            throw ClientSocketError(code: ready == 0 ? ETIMEDOUT : error)
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        ag_set_nodelay(fd)
    }

    deinit { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) throws(ClientSocketError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw ClientSocketError(code: errno)
            }
            offset += sent
        }
    }

    enum Received {
        case bytes([UInt8])
        case timedOut
        case closed
    }

    /// Waits up to `timeoutMilliseconds` for bytes.
    func receive(timeoutMilliseconds: Int32) -> Received {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, timeoutMilliseconds)
        if ready == 0 || (ready < 0 && errno == EINTR) { return .timedOut }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &buffer, buffer.count, 0)
        if count > 0 { return .bytes(Array(buffer[0..<count])) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return .timedOut }
        return .closed
    }
}

struct ClientSocketError: Error {
    var code: Int32
    var message: String { code == EINVAL ? "cannot resolve the address" : String(cString: strerror(code)) }
}
