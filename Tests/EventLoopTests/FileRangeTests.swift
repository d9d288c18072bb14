import CSystemShims
import Foundation
import Glibc
import Testing
import TestSupport

@testable import EventLoop

/// File ranges in a connection's queue (`OutboundBuffer(file:…)`), sent with sendfile over a
/// real loopback TCP connection.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct FileRangeTests {
    /// A server-side connection on its loop and the blocking client socket facing it.
    final class Pair: @unchecked Sendable {
        let thread: LoopThread
        let connection: TCPConnection
        let client: Int32

        init(maxQueuedBytes: Int) throws {
            var port: Int32 = 0
            let listener = ag_listen_tcp("127.0.0.1", 0, 16, &port)
            try #require(listener >= 0)
            defer { close(listener) }
            client = try connectLoopback(port: Int(port), receiveTimeoutSeconds: 5)
            var accepted: Int32 = -1
            for _ in 0..<500 where accepted < 0 {
                accepted = ag_accept(listener)
                if accepted < 0 { usleep(2_000) }
            }
            try #require(accepted >= 0)
            let loop = try EventLoop()
            connection = TCPConnection(loop: loop, fd: accepted, maxQueuedBytes: maxQueuedBytes)
            try connection.start()
            thread = LoopThread(loop)
        }

        func stop() {
            thread.stop()
            close(client)
        }
    }

    static func file(_ directory: TemporaryDirectory, bytes: [UInt8]) throws -> SharedFile {
        let path = directory.path + "/frames"
        try #require(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        return SharedFile(fd: fd)
    }

    static func read(_ fd: Int32, count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while bytes.count < count {
            let got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - bytes.count), 0) }
            guard got > 0 else { break }
            bytes += chunk[0..<got]
        }
        return bytes
    }

    @Test func fileRangesAndBuffersGoOutInTheOrderQueuedAndCountTowardTheBoundButNotMemory() throws {
        let directory = TemporaryDirectory()
        let content = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        let file = try Self.file(directory, bytes: content)
        let pair = try Pair(maxQueuedBytes: 4 << 20)
        defer { pair.stop() }
        let connection = LoopBound(pair.connection)
        let queued = pair.thread.onLoop { () -> [Int] in
            let tcp = connection.value
            tcp.enqueue([1, 2, 3])  // gathered small write
            tcp.enqueue(OutboundBuffer(file: file, offset: 100, count: 2_000_000))
            tcp.enqueue(OutboundBuffer([UInt8](repeating: 9, count: 5_000)))
            tcp.enqueue(OutboundBuffer(file: file, offset: 2_500_000, count: 500_000))
            // Nothing is written before the end of the turn.
            let under = [tcp.queuedBytes, tcp.queuedMemoryBytes, tcp.isOverBound ? 1 : 0]
            tcp.enqueue(OutboundBuffer(file: file, offset: 0, count: 2_000_000))
            return under + [tcp.queuedBytes, tcp.isOverBound ? 1 : 0]
        }
        // 2.5 MB queued, 5,003 bytes of it in memory, under the 4 MiB bound; 2 MB more of the
        // file takes it over (a peer that falls behind is slow whatever its bytes cost).
        #expect(queued == [2_505_003, 5_003, 0, 4_505_003, 1])
        let expected = [1, 2, 3] + Array(content[100..<2_000_100]) + [UInt8](repeating: 9, count: 5_000) + Array(content[2_500_000...])
            + Array(content[0..<2_000_000])
        let received = Self.read(pair.client, count: expected.count)
        #expect(received.count == expected.count)
        #expect(received == expected)
        var left: [Int] = []
        for _ in 0..<100 {
            left = pair.thread.onLoop { [connection.value.queuedBytes, connection.value.queuedMemoryBytes] }
            if left == [0, 0] { break }
            usleep(10_000)
        }
        #expect(left == [0, 0])
    }

    @Test func aFileRangeThatComesUpShortClosesTheConnectionAfterWhatTheFileHas() throws {
        let directory = TemporaryDirectory()
        let content = [UInt8](repeating: 7, count: 1_000)
        let file = try Self.file(directory, bytes: content)
        let pair = try Pair(maxQueuedBytes: 64 * 1024)
        defer { pair.stop() }
        let connection = LoopBound(pair.connection)
        pair.thread.onLoop { connection.value.enqueue(OutboundBuffer(file: file, offset: 0, count: 5_000)) }
        // The 1,000 bytes the file has, then the end: never a peer left waiting for the rest.
        #expect(readUntilClosed(pair.client) == content)
        #expect(pair.thread.onLoop { connection.value.isOpen } == false)
    }

    @Test func dropUnsentDropsWholeFileRangesBehindTheOneBeingWritten() throws {
        let directory = TemporaryDirectory()
        let file = try Self.file(directory, bytes: [UInt8](repeating: 5, count: 100_000))
        let pair = try Pair(maxQueuedBytes: 64 * 1024)
        defer { pair.stop() }
        let connection = LoopBound(pair.connection)
        let after = pair.thread.onLoop { () -> [Int] in
            let tcp = connection.value
            tcp.enqueue(OutboundBuffer([UInt8](repeating: 1, count: 10_000)))
            tcp.enqueue(OutboundBuffer(file: file, offset: 0, count: 100_000))
            tcp.enqueue(OutboundBuffer([UInt8](repeating: 2, count: 3_000)))
            let dropped = tcp.dropUnsent()
            return [dropped.count, tcp.queuedBytes, tcp.queuedMemoryBytes]
        }
        // Nothing was being written yet: every buffer goes, and the counts come back to 0.
        #expect(after == [3, 0, 0])
    }
}
