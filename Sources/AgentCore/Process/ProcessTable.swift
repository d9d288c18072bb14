#if canImport(Glibc)
import Glibc
#endif

/// A snapshot of /proc: every process with its parent and state, enough to find what a job
/// left behind once its processes were re-parented to us.
struct ProcessTable {
    struct Entry: Equatable {
        let pid: pid_t
        let parent: pid_t
        let session: pid_t
        /// /proc/PID/stat field 3: R, S, D, Z (zombie), …
        let state: UInt8
        var isZombie: Bool { state == UInt8(ascii: "Z") || state == UInt8(ascii: "X") }
    }

    let entries: [Entry]

    /// Reads /proc now; processes that vanish while it is read are skipped.
    static func read() -> ProcessTable {
        var entries: [Entry] = []
        guard let directory = opendir("/proc") else { return ProcessTable(entries: []) }
        defer { closedir(directory) }
        while let item = readdir(directory) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(name), let entry = entry(of: pid) else { continue }
            entries.append(entry)
        }
        return ProcessTable(entries: entries)
    }

    /// State, parent and session from /proc/PID/stat (fields 3, 4 and 6). The command name (field 2) may hold spaces and
    /// parens, so fields are counted after the last ')'.
    static func entry(of pid: pid_t) -> Entry? {
        guard let bytes = readProcFile("/proc/\(pid)/stat", limit: 4096),
            let close = bytes.lastIndex(of: UInt8(ascii: ")"))
        else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "), maxSplits: 5)
        guard fields.count >= 5, let state = fields[0].first,
            let parent = pid_t(String(decoding: fields[1], as: UTF8.self)),
            let session = pid_t(String(decoding: fields[3], as: UTF8.self))
        else { return nil }
        return Entry(pid: pid, parent: parent, session: session, state: state)
    }

    /// No process runs under `pid`: none has it, or it is a zombie (ended, not reaped yet).
    static func hasEnded(_ pid: pid_t) -> Bool {
        entry(of: pid).map(\.isZombie) ?? true
    }

    /// `roots` and every process below them.
    func descendants(of roots: [pid_t]) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for entry in entries { children[entry.parent, default: []].append(entry.pid) }
        var result: [pid_t] = []
        var seen: Set<pid_t> = []
        var queue = roots
        while let pid = queue.popLast() {
            guard seen.insert(pid).inserted else { continue }
            result.append(pid)
            queue.append(contentsOf: children[pid] ?? [])
        }
        return result
    }

    /// Whether `pid`'s environment holds one of `entries` (each `NAME=value` as UTF-8).
    /// Unreadable (gone, a zombie, another user's) counts as false.
    static func environment(of pid: pid_t, containsAnyOf entries: Set<[UInt8]>) -> Bool {
        guard let bytes = readProcFile("/proc/\(pid)/environ", limit: 4 << 20) else { return false }
        return environment(bytes, containsAnyOf: entries)
    }

    /// Whether an environ file's bytes (`NAME=value` entries, NUL-separated) hold `entry`.
    static func environment(_ bytes: [UInt8], contains entry: String) -> Bool {
        environment(bytes, containsAnyOf: [Array(entry.utf8)])
    }

    /// Whether an environ file's bytes hold one of `entries`.
    static func environment(_ bytes: [UInt8], containsAnyOf entries: Set<[UInt8]>) -> Bool {
        bytes.split(separator: 0, omittingEmptySubsequences: true).contains { entries.contains(Array($0)) }
    }

    /// A whole /proc file, at most `limit` bytes (these files have no size to stat).
    static func readProcFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while bytes.count < limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return bytes
    }
}
