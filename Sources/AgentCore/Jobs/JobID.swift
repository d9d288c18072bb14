#if canImport(Glibc)
import Glibc
#endif

enum JobID {
    /// 16 lowercase hex digits from the system RNG: unguessable, path-safe, URL-safe.
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Wall-clock milliseconds since the Unix epoch, for timestamps people read.
public enum WallClock {
    public static func milliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }
}
