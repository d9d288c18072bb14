#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Runs a short command (`claude --version`) with a deadline, on a private event loop of the
/// calling thread. A CLI that hangs or floods its output is killed with its whole group at
/// the deadline, so a probe never hangs its caller.
public enum ProbeCommand {
    public struct Outcome: Sendable, Equatable {
        public var status: ExitStatus?
        public var output: String
        public var timedOut: Bool
        public var spawnError: String?

        /// First non-empty line of stdout+stderr.
        public var firstLine: String? {
            output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.first { !$0.isEmpty }
        }
    }

    /// 64 KiB of output is plenty for a version string; more is discarded.
    static let maxOutput = 64 * 1024

    public static func run(executable: String, arguments: [String], environment: [String], timeoutMilliseconds: Int) -> Outcome {
        let loop: EventLoop
        do { loop = try EventLoop() } catch { return Outcome(status: nil, output: "", timedOut: false, spawnError: "\(error)") }
        let process: SupervisedProcess
        do {
            process = try SupervisedProcess(
                loop: loop, spec: .init(executable: executable, arguments: [executable] + arguments, environment: environment))
        } catch {
            return Outcome(status: nil, output: "", timedOut: false, spawnError: error.message)
        }
        var output: [UInt8] = []
        var status: ExitStatus?
        let collect: (UnsafeRawBufferPointer) -> Void = { bytes in
            if output.count < maxOutput { output.append(contentsOf: bytes.prefix(maxOutput - output.count)) }
        }
        process.onStdout = collect
        process.onStderr = collect
        process.onExit = { status = $0 }
        do { try process.start() } catch {
            process.killNow()
            return Outcome(status: nil, output: "", timedOut: false, spawnError: "\(error)")
        }
        var timedOut = false
        if !loop.run(untilMilliseconds: timeoutMilliseconds, { status != nil }) {
            timedOut = true
            process.killNow()
            loop.run(untilMilliseconds: 5_000) { status != nil }
        }
        return Outcome(status: status, output: String(decoding: output, as: UTF8.self), timedOut: timedOut, spawnError: nil)
    }
}

import Foundation
