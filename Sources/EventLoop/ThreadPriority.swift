import CSystemShims

/// The priority of the calling thread, for helper threads that must yield to the loop.
public enum ThreadPriority {
    /// Sets the calling thread's nice value (higher runs less when the CPU is contended).
    public static func setNiceness(_ value: Int32) {
        _ = ag_set_thread_niceness(value)
    }
}
