#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nanoseconds on CLOCK_MONOTONIC: immune to wall-clock jumps, comparable across threads.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The same clock in whole milliseconds, the unit timers and deadlines use.
    public static func milliseconds() -> Int {
        Int(nanoseconds() / 1_000_000)
    }
}
