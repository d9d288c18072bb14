#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// A small JSON object in a file of a job's directory: what a supervisor wrote (agent.json,
/// exit.json), the hook outbox, a queued job's request. Read without following a link (the
/// directory may be shared with an agent); written whole or not at all.
enum SmallJSONFile {
    /// The object in `path`; nil when it is missing, larger than `maxBytes` or not an object.
    static func read(_ path: String, maxBytes: Int = 4096) -> JSONValue? {
        guard case .opened(let fd) = AgentWrittenFile.open(path) else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size <= maxBytes else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard got == bytes.count, let value = try? JSONParser.parse(bytes), case .object = value else { return nil }
        return value
    }

    /// Writes `value` to `path` through a synced temporary file and a rename, then syncs the
    /// directory: after a crash the file holds the old or the new value, never part of one.
    /// False when any step failed (nothing was replaced).
    @discardableResult
    static func write(_ value: JSONValue, to path: String) -> Bool {
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        let bytes = JSONWriter.serialize(value)
        let written = bytes.withUnsafeBytes { buffer -> Bool in
            do throws(SystemError) { try FileDescriptor.writeAll(fd, buffer) } catch { return false }
            return true
        }
        let synced = written && fsync(fd) == 0
        close(fd)
        guard synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            return false
        }
        let directoryPath = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let directory = open(directoryPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
        return true
    }
}
