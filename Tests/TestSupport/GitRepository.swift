import Foundation

/// A real git repository in a temporary directory, for worktree tests: made with one commit,
/// changed and inspected with the real `git`.
public final class GitRepository: @unchecked Sendable {
    public let directory: TemporaryDirectory
    /// The checkout's top directory (below `directory`, so a name with spaces can be tried).
    public let path: String

    /// - Parameter name: the checkout's directory name inside a fresh temporary directory.
    public init(name: String = "repo", files: [String: String] = ["README.md": "hello\n"]) {
        directory = TemporaryDirectory("agentgate-git")
        path = directory.path + "/" + name
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        git("init", "-q", "-b", "main")
        git("config", "user.email", "tester@example.com")
        git("config", "user.name", "Tester")
        write(files)
        commit("initial")
    }

    public func write(_ files: [String: String]) {
        for (name, text) in files {
            let target = path + "/" + name
            try? FileManager.default.createDirectory(
                atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: target, contents: Data(text.utf8))
        }
    }

    public func read(_ name: String) -> String? {
        FileManager.default.contents(atPath: path + "/" + name).map { String(decoding: $0, as: UTF8.self) }
    }

    public func commit(_ message: String) {
        git("add", "-A")
        git("commit", "-q", "--allow-empty", "-m", message)
    }

    public var head: String { git("rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines) }
    /// `git status --porcelain` (empty: clean).
    public var status: String { git("status", "--porcelain") }
    public var branches: [String] {
        git("branch", "--format=%(refname:short)").split(separator: "\n").map(String.init)
    }

    /// Runs git in the checkout; returns stdout.
    @discardableResult
    public func git(_ arguments: String...) -> String { Self.run(arguments, in: path).stdout }

    /// Runs a program to its end; its exit status.
    public static func runTool(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Runs git in `directory`: its stdout and exit status.
    public static func run(_ arguments: [String], in directory: String) -> (stdout: String, status: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_CONFIG_NOSYSTEM"] = "1"
        environment["HOME"] = directory
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return ("", -1) }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (String(decoding: data, as: UTF8.self), process.terminationStatus)
    }
}
