#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// The completion hook's durable record, `<job>/hook.json`, so that a job taken up by the next
/// server (its agent ended while none ran, or the server died before the job completed) runs
/// its `--on-complete` hook exactly once:
///
/// - no record: the hook has not run; it runs now.
/// - `started`: a server died while the hook ran. Whether it did its work is unknown, so it
///   is not run a second time; the job says so (`hookError`).
/// - `done`: it ran; its outcome is taken from the record, not run again.
///
/// Each state is written to a temporary file, synced, and renamed over the record before the
/// next step, so a crash leaves the previous state or the next, never a torn one.
enum HookOutbox {
    enum State: Equatable {
        case notRun
        case started(atMilliseconds: Int)
        case done(Outcome)
    }

    /// What the hook printed (its JSON), or why it failed.
    enum Outcome: Equatable {
        case value(JSONValue)
        case failed(String)
    }

    static func path(jobDirectory: String) -> String { jobDirectory + "/hook.json" }

    static func read(jobDirectory: String) -> State {
        // The hook's output is capped (ExternalHook), its record with it.
        guard let value = SmallJSONFile.read(path(jobDirectory: jobDirectory), maxBytes: 4 << 20) else { return .notRun }
        switch value["state"]?.stringValue {
        case "started": return .started(atMilliseconds: value["at"]?.intValue ?? 0)
        case "done":
            if let error = value["error"]?.stringValue { return .done(.failed(error)) }
            return .done(.value(value["hook"] ?? .null))
        default: return .notRun
        }
    }

    /// False when the record cannot be written: the hook then does not run (running it with
    /// no record could run it twice).
    static func markStarted(jobDirectory: String) -> Bool {
        write(.object(["state": .string("started"), "at": .int(WallClock.milliseconds())]), jobDirectory: jobDirectory)
    }

    @discardableResult
    static func markDone(_ outcome: Outcome, jobDirectory: String) -> Bool {
        switch outcome {
        case .value(let value): write(.object(["state": .string("done"), "hook": value]), jobDirectory: jobDirectory)
        case .failed(let message): write(.object(["state": .string("done"), "error": .string(message)]), jobDirectory: jobDirectory)
        }
    }

    private static func write(_ value: JSONValue, jobDirectory: String) -> Bool {
        SmallJSONFile.write(value, to: path(jobDirectory: jobDirectory))
    }
}
