import Testing

/// Runs the tests it marks one at a time, process-wide: the suites that spawn processes and
/// open pipes. Then a test that counts this process's pipes and pidfds (to prove nothing
/// leaks) cannot see another test's. Tests without the trait still run in parallel.
///
/// A test's own time is limited from when it holds the lock (`runningLimit`): Swift
/// Testing's `.timeLimit` also counts the wait for the lock, minutes on a slow host with
/// every such suite queued, so suites that take this trait give `.timeLimit` only as a
/// backstop for the whole queue.
public struct ProcessExclusive: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }
    public var runningLimit: Duration = .seconds(120)

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // Suites get the trait too; only test cases take the lock (a suite holding it would
        // deadlock its own tests).
        guard testCase != nil else {
            try await function()
            return
        }
        await ExclusiveLock.shared.acquire()
        let limit = runningLimit
        let watchdog = Task {
            try await Task.sleep(for: limit)
            Issue.record("ran for more than \(limit) once it had the process to itself")
        }
        defer { watchdog.cancel() }
        do {
            try await function()
        } catch {
            await ExclusiveLock.shared.release()
            throw error
        }
        await ExclusiveLock.shared.release()
    }
}

extension Trait where Self == ProcessExclusive {
    public static var processExclusive: ProcessExclusive { ProcessExclusive() }
}

actor ExclusiveLock {
    static let shared = ExclusiveLock()
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
