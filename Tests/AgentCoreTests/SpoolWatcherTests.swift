import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// The per-job inotify watcher of the spools: which file was written reaches the job, and
/// nothing after it stopped. (`closeAllOpen` closes every instance in the process, so it is
/// left to the restart benchmark, S10, and the restart tests that run `serve`.)
struct SpoolWatcherTests {
    @Test func aWakeSaysWhichSpoolWasWrittenAndStopsWhenTold() throws {
        let loop = try EventLoop()
        let directory = TemporaryDirectory()
        let out = directory.file("stdout"), err = directory.file("stderr")
        #expect(FileManager.default.createFile(atPath: out, contents: Data()))
        #expect(FileManager.default.createFile(atPath: err, contents: Data()))
        let watcher = SpoolWatcher(loop: loop)
        var wakes: [[Bool]] = []
        #expect(watcher.watch([out, err]) { wakes.append($0) })
        Self.append("to stderr\n", to: err)
        loop.run(untilMilliseconds: 2_000) { !wakes.isEmpty }
        #expect(wakes.first == [false, true])
        Self.append("to stdout\n", to: out)
        loop.run(untilMilliseconds: 2_000) { wakes.count >= 2 }
        #expect(wakes.last?.first == true)
        watcher.stop()
        let count = wakes.count
        Self.append("after stop\n", to: out)
        loop.run(untilMilliseconds: 200) { false }
        #expect(wakes.count == count)
    }

    /// As an agent writes its spool: appended, never replaced.
    static func append(_ text: String, to path: String) {
        let fd = open(path, O_WRONLY | O_APPEND)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
}
