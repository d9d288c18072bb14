#if canImport(Glibc)
import Glibc
#endif
import EventLoop

/// Runs one `git` command to its end on the calling thread (never the server's loop: see
/// `WorktreeQueue`), with stdout and stderr kept apart, stdout capped and a deadline.
///
/// Every run disables what an agent could make it run: hooks (`core.hooksPath=/dev/null`; an
/// agent can write the repository's hooks), every transport (`protocol.allow=never`, so no
/// lazy fetch of a "promisor" remote the agent configured runs its upload-pack command), the
/// fsmonitor, automatic gc and maintenance, and recursion into submodules (their config is
/// the agent's too). Driver commands (filters, textconv, merge drivers) are checked by
/// `WorktreeOperations` before any command that could run them. Prompts are off (a
/// credential helper asking on a terminal would hang), and output is in the C locale, so
/// messages parse the same everywhere.
public struct GitCommand: Sendable {
    public struct Outcome: Sendable {
        public var status: ExitStatus?
        public var stdout: [UInt8]
        /// Stdout passed `maxOutput`: what is kept is its first `maxOutput` bytes.
        public var truncated: Bool
        public var stderr: String
        public var timedOut: Bool

        public var succeeded: Bool { status == .exited(0) && !timedOut }
        public var text: String { String(decoding: stdout, as: UTF8.self) }

        /// git's own words for a failure: its last `fatal:`/`error:` lines, or how it ended.
        public var failureMessage: String {
            if timedOut { return "git timed out" }
            let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let said = lines.filter { $0.hasPrefix("fatal:") || $0.hasPrefix("error:") }
            let chosen = said.isEmpty ? Array(lines.suffix(3)) : said
            if !chosen.isEmpty { return Summary.oneLine(chosen.joined(separator: " "), limit: 600) }
            switch status {
            case .exited(let code)?: return "git exited with status \(code)"
            case .signaled(let signal)?: return "git was killed by \(ExitStatus.signalName(signal))"
            case .unknown?: return "git ended; how is not known"
            case nil: return "git did not run"
            }
        }
    }

    /// Path of the `git` executable.
    public let executable: String
    /// The environment git runs with ("KEY=value"), without the variables that would point it
    /// at another repository.
    public let environment: [String]
    /// 10 minutes: a diff or a merge of a large repository takes a while, a hung one must end.
    public var timeoutMilliseconds = 600_000

    /// git found on `path` (the operator's PATH); nil when it is not installed.
    public init?(searchPath path: String?, environment: [String]) {
        guard let executable = ExecutableSearch.find("git", path: path) else { return nil }
        self.init(executable: executable, environment: environment)
    }

    public init(executable: String, environment: [String]) {
        self.executable = executable
        let repositoryVariables: Set<String> = [
            "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
            "GIT_TERMINAL_PROMPT", "GIT_PAGER", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR", "LC_ALL", "LANG", "LANGUAGE",
            "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_EXTERNAL_DIFF", "GIT_DIFF_OPTS",
        ]
        var kept = environment.filter { entry in
            let name = entry.split(separator: "=", maxSplits: 1).first.map(String.init) ?? entry
            return !repositoryVariables.contains(name)
        }
        kept += ["GIT_TERMINAL_PROMPT=0", "GIT_PAGER=cat", "GIT_EDITOR=true", "LC_ALL=C", "GIT_NO_LAZY_FETCH=1",
            // Replace refs would let the diff show one blob while the commit holds another.
            "GIT_NO_REPLACE_OBJECTS=1"]
        self.environment = kept
    }

    /// `git -c core.hooksPath=/dev/null <arguments>` in `directory`.
    public func run(
        _ arguments: [String], in directory: String, extraEnvironment: [String] = [], stdin: [UInt8] = [],
        maxOutput: Int = 16 << 20
    ) -> Outcome {
        let argv = [
            "git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "color.ui=false", "-c", "protocol.allow=never",
            "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "submodule.recurse=false",
        ] + arguments
        let loop: EventLoop
        do { loop = try EventLoop() } catch {
            return Outcome(status: nil, stdout: [], truncated: false, stderr: "\(error)", timedOut: false)
        }
        let process: SupervisedProcess
        do {
            process = try SupervisedProcess(
                loop: loop,
                spec: .init(
                    executable: executable, arguments: argv, environment: environment + extraEnvironment,
                    workingDirectory: directory, stdin: stdin))
        } catch {
            return Outcome(status: nil, stdout: [], truncated: false, stderr: "git: \(error.message)", timedOut: false)
        }
        var output: [UInt8] = []
        var truncated = false
        var errorOutput: [UInt8] = []
        var status: ExitStatus?
        process.onStdout = { bytes in
            guard !truncated else { return }
            if output.count + bytes.count > maxOutput {
                output.append(contentsOf: bytes.prefix(maxOutput - output.count))
                truncated = true
                // The rest is not wanted: reading it would only cost time.
                process.killNow()
            } else {
                output.append(contentsOf: bytes)
            }
        }
        process.onStderr = { bytes in
            errorOutput.append(contentsOf: bytes)
            if errorOutput.count > 64 * 1024 { errorOutput.removeFirst(errorOutput.count - 64 * 1024) }
        }
        process.onExit = { status = $0 }
        do { try process.start() } catch {
            process.killNow()
            return Outcome(status: nil, stdout: [], truncated: false, stderr: "git: \(error.message)", timedOut: false)
        }
        var timedOut = false
        if !loop.run(untilMilliseconds: timeoutMilliseconds, { status != nil }) {
            timedOut = true
            process.killNow()
            loop.run(untilMilliseconds: 5_000) { status != nil }
        }
        return Outcome(
            status: status, stdout: output, truncated: truncated, stderr: String(decoding: errorOutput, as: UTF8.self),
            timedOut: timedOut)
    }
}
