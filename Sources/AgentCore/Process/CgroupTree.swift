#if canImport(Glibc)
import Glibc
#endif
import CSystemShims
import EventLoop

/// agentgate's own cgroup v2 subtree, `<cgroup2 mount><our cgroup>/agentgate-<pid>`, with one
/// group per job below it.
///
/// A process cannot leave its cgroup by itself: `setsid`, double forks and daemons all stay
/// in the job's group, and writing 1 to its `cgroup.kill` kills every one of them at once.
/// `make()` answers nil wherever that is not available to us (no cgroup2 mount, a cgroup
/// we may not write to, a kernel without `cgroup.kill` or `CLONE_INTO_CGROUP`); the caller
/// then falls back to a subreaper.
final class CgroupTree: Sendable {
    /// The directory that holds the job groups.
    let root: String

    private init(root: String) {
        self.root = root
    }

    /// This process's tree, set up on first use (one per server process: every engine in it
    /// shares it).
    static let shared: CgroupTree? = make()

    private static func make() -> CgroupTree? {
        guard let base = ownCgroupDirectory() else { return nil }
        removeStaleTrees(in: base)
        let root = base + "/agentgate-\(getpid())"
        guard mkdir(root, 0o755) == 0 || errno == EEXIST else { return nil }
        // Prove it end to end: a throwaway group, a throwaway child born inside it.
        var usable = false
        if let probe = JobCgroup(path: root + "/probe") {
            usable = access(probe.path + "/cgroup.kill", W_OK) == 0 && ag_cgroup_probe(probe.directoryFD) == 0
            _ = probe.remove()
        }
        guard usable else {
            rmdir(root)
            return nil
        }
        // On a normal exit the (by then empty) tree goes with us; after a crash the next
        // server removes it.
        atexit {
            if let root = CgroupTree.shared?.root { rmdir(root) }
        }
        return CgroupTree(root: root)
    }

    /// A new, empty group for one job; nil when it cannot be created.
    func makeGroup(forJob id: String) -> JobCgroup? {
        guard !id.isEmpty, id.utf8.allSatisfy({ Self.isNameByte($0) }) else { return nil }
        return JobCgroup(path: root + "/job-" + id)
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= 97 && byte <= 122) || (byte >= 65 && byte <= 90) || (byte >= 48 && byte <= 57) || byte == 45 || byte == 95
    }

    /// `<mount><path>` of the cgroup v2 group this process is in, from /proc/self/cgroup
    /// ("0::/path") and the cgroup2 line of /proc/self/mountinfo.
    static func ownCgroupDirectory() -> String? {
        guard let cgroupFile = ProcessTable.readProcFile("/proc/self/cgroup", limit: 64 * 1024),
            let mountFile = ProcessTable.readProcFile("/proc/self/mountinfo", limit: 1 << 20)
        else { return nil }
        let ownLine = String(decoding: cgroupFile, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("0::") }
        guard let ownLine else { return nil }
        let ownPath = String(ownLine.dropFirst(3))
        guard ownPath.hasPrefix("/"), !ownPath.hasSuffix(" (deleted)") else { return nil }
        for line in String(decoding: mountFile, as: UTF8.self).split(separator: "\n") {
            guard let mount = parseCgroup2Mount(line) else { continue }
            // A mount of a subtree (its root field) sees our path below that root.
            let relative: Substring
            if mount.root == "/" {
                relative = Substring(ownPath)
            } else if ownPath == mount.root || ownPath.hasPrefix(mount.root + "/") {
                relative = ownPath.dropFirst(mount.root.count)
            } else {
                continue
            }
            let directory = mount.point + (relative == "/" ? "" : String(relative))
            var info = stat()
            if stat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { return directory }
        }
        return nil
    }

    /// (root, mount point) of a mountinfo line whose filesystem type is cgroup2.
    static func parseCgroup2Mount(_ line: Substring) -> (root: String, point: String)? {
        let halves = line.split(separator: " - ", maxSplits: 1, omittingEmptySubsequences: false)
        guard halves.count == 2, halves[1].split(separator: " ").first == "cgroup2" else { return nil }
        let fields = halves[0].split(separator: " ")
        guard fields.count >= 5 else { return nil }
        return (unescapeMountField(fields[3]), unescapeMountField(fields[4]))
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    static func unescapeMountField(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let source = Array(field.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
                let value = UInt8(String(decoding: source[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Trees of servers that are gone (it crashed, or was killed with SIGKILL): whatever is
    /// still inside escaped its job's process group and outlived the server, so it is killed;
    /// then the empty groups are removed.
    static func removeStaleTrees(in base: String) {
        guard let directory = opendir(base) else { return }
        var stale: [String] = []
        while let item = readdir(directory) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasPrefix("agentgate-"), let pid = pid_t(name.dropFirst("agentgate-".count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { stale.append(base + "/" + name) }
        }
        closedir(directory)
        for tree in stale {
            let groups = subdirectories(of: tree).map { JobCgroup(existing: tree + "/" + $0) }
            for group in groups { group.killAll() }
            let deadline = MonotonicClock.nanoseconds() + 1_000_000_000
            for group in groups {
                while group.isPopulated == true, MonotonicClock.nanoseconds() < deadline { usleep(10_000) }
                _ = group.remove()
            }
            rmdir(tree)
        }
    }

    private static func subdirectories(of path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let item = readdir(directory) {
            guard item.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: item.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }
}

/// One job's cgroup v2 group.
final class JobCgroup {
    let path: String
    /// O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP); -1 once the job was spawned.
    private(set) var directoryFD: Int32 = -1

    /// Creates the group (an existing empty one is reused) and opens it.
    init?(path: String) {
        self.path = path
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { return nil }
        directoryFD = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else {
            rmdir(path)
            return nil
        }
    }

    /// A group that already exists (a stale one), without opening it.
    init(existing path: String) {
        self.path = path
    }

    deinit { closeDirectory() }

    func closeDirectory() {
        if directoryFD >= 0 { close(directoryFD) }
        directoryFD = -1
    }

    /// SIGKILL to every process in the group, atomically (no member can fork past it).
    @discardableResult
    func killAll() -> Bool {
        writeControl("cgroup.kill", "1")
    }

    /// `signal` to each current member, e.g. SIGTERM so processes that left the job's
    /// process group also get the chance to stop cleanly.
    func signalAll(_ signal: Int32) {
        guard let bytes = ProcessTable.readProcFile(path + "/cgroup.procs", limit: 1 << 20) else { return }
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            if let pid = pid_t(String(decoding: line, as: UTF8.self)), pid > 0 { kill(pid, signal) }
        }
    }

    /// From cgroup.events: true while any process is in the group, nil if unreadable.
    var isPopulated: Bool? {
        guard let bytes = ProcessTable.readProcFile(path + "/cgroup.events", limit: 4096) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("populated ") {
            return line.hasSuffix(" 1")
        }
        return nil
    }

    /// rmdir; true when the group is gone (EBUSY while it still has members).
    func remove() -> Bool {
        closeDirectory()
        return rmdir(path) == 0 || errno == ENOENT
    }

    private func writeControl(_ file: String, _ value: String) -> Bool {
        let fd = open(path + "/" + file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}
