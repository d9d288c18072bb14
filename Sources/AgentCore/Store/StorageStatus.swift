#if canImport(Glibc)
import Glibc
#endif

/// How the data dir is doing: its free space (measured every few seconds and before each
/// launch) and the writes it refused. For `/metrics`, the operator's log and launch checks.
public struct StorageStatus: Sendable, Equatable {
    /// Bytes free for us in the data dir's file system (nil: not measured).
    public var freeBytes: Int64?
    /// Below the warning threshold.
    public var low = false
    /// A write of events or of a job record is being refused now.
    public var failing = false
    /// Writes refused since start.
    public var writeFailures = 0
    /// Bytes of events dropped because the disk refused them for too long.
    public var droppedEventBytes = 0

    public init() {}

    /// `statvfs`: the bytes an unprivileged process may still write.
    public static func freeBytes(of path: String) -> Int64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }
}

/// Sizes as people read them: "1 GiB", "256 MiB", "12 KiB", "900 bytes".
public enum ByteCount {
    public static func text(_ bytes: Int) -> String {
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        for (name, size) in units where bytes >= size {
            let value = Double(bytes) / Double(size)
            return value == value.rounded() ? "\(Int(value)) \(name)" : "\((value * 10).rounded() / 10) \(name)"
        }
        return "\(bytes) bytes"
    }

    /// "512", "64K", "256M", "1G" (binary units): the form `--max-job-output` takes.
    public static func parse(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let multipliers: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        let upper = Character(last.uppercased())
        let (digits, multiplier) = multipliers[upper].map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard !digits.isEmpty, digits.count <= 12, digits.allSatisfy(\.isASCII), let value = Int(digits), value > 0 else { return nil }
        return value * multiplier
    }
}
