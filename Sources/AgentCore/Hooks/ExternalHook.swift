#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// The operator's `--on-complete CMD`: run through `/bin/sh -c` with the job's JSON on stdin;
/// its stdout must be one JSON value, merged into `job.result.hook`. A hook that fails, hangs
/// past its timeout, floods its output or prints garbage yields an error string for
/// `job.hookError`; it never blocks the job's completion.
public final class ExternalHook {
    public struct Configuration: Sendable {
        public var command: String
        /// 30 s: enough to post a result somewhere, short enough not to hold a job open.
        public var timeoutMilliseconds = 30_000
        /// 1 MiB of stdout; more is an error.
        public var maxOutputBytes = 1 << 20

        public init(command: String, timeoutMilliseconds: Int = 30_000) {
            self.command = command
            self.timeoutMilliseconds = timeoutMilliseconds
        }
    }

    private let loop: EventLoop
    private var process: SupervisedProcess?
    private var timer: EventLoop.TimerID?
    private var completion: ((Result<JSONValue, HookFailure>) -> Void)?
    private var output: [UInt8] = []
    private var errorOutput: [UInt8] = []
    private var failure: HookFailure?

    public struct HookFailure: Error, Equatable, Sendable {
        public let message: String
    }

    public init(loop: EventLoop) {
        self.loop = loop
    }

    /// Starts the hook; `completion` runs exactly once on the loop.
    public func run(
        _ configuration: Configuration, input: [UInt8], environment: [String],
        completion: @escaping (Result<JSONValue, HookFailure>) -> Void
    ) {
        self.completion = completion
        let process: SupervisedProcess
        do {
            process = try SupervisedProcess(
                loop: loop,
                spec: .init(
                    executable: "/bin/sh", arguments: ["sh", "-c", configuration.command], environment: environment,
                    stdin: input))
            process.onStdout = { [unowned self] bytes in
                if self.output.count + bytes.count > configuration.maxOutputBytes {
                    self.fail("hook printed more than \(configuration.maxOutputBytes) bytes", killing: true)
                } else {
                    self.output.append(contentsOf: bytes)
                }
            }
            process.onStderr = { [unowned self] bytes in
                self.errorOutput.append(contentsOf: bytes)
                if self.errorOutput.count > 4096 { self.errorOutput.removeFirst(self.errorOutput.count - 4096) }
            }
            process.onExit = { [unowned self] status in self.exited(status) }
            try process.start()
        } catch {
            finish(.failure(HookFailure(message: "hook could not start: \(error.message)")))
            return
        }
        self.process = process
        timer = loop.schedule(afterMilliseconds: configuration.timeoutMilliseconds) { [weak self] in
            self?.fail("hook timed out after \(configuration.timeoutMilliseconds) ms", killing: true)
        }
    }

    /// Stops the hook (the job was killed while its hook ran).
    public func cancel(reason: String) {
        fail(reason, killing: true)
    }

    private func fail(_ message: String, killing: Bool) {
        if failure == nil { failure = HookFailure(message: message) }
        if killing { process?.killNow() }
    }

    private func exited(_ status: ExitStatus) {
        if let timer { loop.cancel(timer) }
        if let failure { return finish(.failure(failure)) }
        guard status == .exited(0) else {
            let stderr = Summary.firstLine(String(decoding: errorOutput, as: UTF8.self), limit: 300)
            let how = status.exitCode.map { "exited with status \($0)" } ?? "was killed by signal \(status.signal ?? 0)"
            return finish(.failure(HookFailure(message: "hook \(how)" + (stderr.isEmpty ? "" : ": \(stderr)"))))
        }
        do {
            finish(.success(try JSONParser.parse(output)))
        } catch {
            let shown = Summary.oneLine(String(decoding: output.prefix(200), as: UTF8.self), limit: 120)
            finish(.failure(HookFailure(message: "hook printed invalid JSON (\(error)): \(shown)")))
        }
    }

    private func finish(_ result: Result<JSONValue, HookFailure>) {
        let callback = completion
        completion = nil
        callback?(result)
        // Release the process on a later turn: we may be inside its onExit callback.
        let process = self.process
        loop.schedule(afterMilliseconds: 0) { _ = process }
        self.process = nil
    }
}
