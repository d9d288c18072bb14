#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A path for a git index of agentgate's own (`GIT_INDEX_FILE`), in a fresh private
/// directory: recording a change never writes the index of the worktree or of the user.
struct TemporaryIndex {
    let directory: String
    var path: String { directory + "/index" }

    init() {
        var template = Array((NSTemporaryDirectory() + "/agentgate-index-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { $0.baseAddress.flatMap { mkdtemp($0) } }
        directory = made.map { String(cString: $0) } ?? NSTemporaryDirectory() + "/agentgate-index-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
