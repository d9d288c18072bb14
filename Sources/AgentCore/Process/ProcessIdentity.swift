#if canImport(Glibc)
import Glibc
#endif

/// A process as pid plus its start time (clock ticks since boot, /proc/PID/stat field 22).
/// A pid alone may be reused by an unrelated process after ours exits; the pair may not, so
/// agentgate signals a recorded process group only while its leader's identity still matches.
public struct ProcessIdentity: Sendable, Equatable {
    public let pid: Int32
    public let startTime: UInt64?

    public init(pid: Int32, startTime: UInt64?) {
        self.pid = pid
        self.startTime = startTime
    }

    /// Reads the identity of a live process; nil start time where /proc is unavailable.
    public static func of(pid: Int32) -> ProcessIdentity {
        ProcessIdentity(pid: pid, startTime: startTime(of: pid))
    }

    /// Field 22 of /proc/PID/stat. The command name (field 2) may hold spaces and parens, so
    /// fields are counted after the last ')'.
    public static func startTime(of pid: Int32) -> UInt64? {
        guard let file = fopen("/proc/\(pid)/stat", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = fread(&buffer, 1, buffer.count, file)
        guard count > 0, let close = buffer[0..<count].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let rest = buffer[(close + 1)..<count].split(separator: UInt8(ascii: " "))
        // rest[0] is field 3 (state), so field 22 is rest[19].
        guard rest.count > 19 else { return nil }
        return UInt64(String(decoding: rest[19], as: UTF8.self))
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`): a pid and a start time recorded
    /// under another boot name nothing that runs now. Empty where it cannot be read.
    public static func bootId() -> String {
        guard let file = fopen("/proc/sys/kernel/random/boot_id", "r") else { return "" }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = fread(&buffer, 1, buffer.count, file)
        return String(decoding: buffer[0..<count].prefix { $0 != 0x0A }, as: UTF8.self)
    }

    /// True while a process with this pid and the same start time exists.
    public var isAlive: Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let startTime else { return true }
        return Self.startTime(of: pid) == startTime
    }

    /// True while any process of the group this process led still exists.
    public var groupIsAlive: Bool {
        kill(-pid, 0) == 0 || errno == EPERM
    }
}
