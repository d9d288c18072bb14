#if canImport(Glibc)
import Glibc
#endif

/// Where jobs may run: inside one of the operator's workspaces (`--workspace DIR`), never in
/// agentgate's data dir nor in a hidden directory at the top of a workspace (`~/.ssh`,
/// `~/.config`, `~/.agentgate`…), where an agent told to "clean up" would do real harm.
///
/// Paths are resolved with `realpath`, so `..` and symlinks cannot lead out of a workspace,
/// and the job runs in the resolved directory (a symlink swapped after the check changes
/// nothing).
public struct WorkspacePolicy: Sendable, Equatable {
    /// Resolved workspace roots.
    public let roots: [String]
    /// Resolved data dir (jobs, token, database): never a cwd.
    public let dataDirectory: String?

    /// Resolves each root; a root that does not exist is an error the operator sees at start.
    public init(roots: [String], dataDirectory: String?) throws(LaunchError) {
        var resolved: [String] = []
        for root in roots {
            guard let path = Self.realPath(root), ExecutableSearch.isDirectory(path) else {
                throw LaunchError(.invalidWorkingDirectory, field: nil, "workspace '\(root)' does not exist or is not a directory")
            }
            resolved.append(path)
        }
        self.roots = resolved
        self.dataDirectory = dataDirectory.flatMap(Self.realPath) ?? dataDirectory
    }

    /// The directory a job runs in: `cwd` resolved and checked, or the first workspace.
    public func resolve(_ cwd: String?) throws(LaunchError) -> String {
        guard let cwd else {
            guard let first = roots.first else { throw LaunchError(.invalidWorkingDirectory, field: "cwd", "no workspace is configured") }
            return first
        }
        guard cwd.hasPrefix("/") else {
            throw LaunchError(.invalidField, field: "cwd", "cwd must be an absolute path")
        }
        guard let path = Self.realPath(cwd), ExecutableSearch.isDirectory(path) else {
            throw LaunchError(.invalidWorkingDirectory, field: "cwd", "cwd '\(cwd)' does not exist or is not a directory")
        }
        if let dataDirectory, Self.isInside(path, dataDirectory) {
            throw LaunchError(.cwdForbidden, field: "cwd", "cwd '\(cwd)' is inside agentgate's data directory")
        }
        guard let root = roots.filter({ Self.isInside(path, $0) }).max(by: { $0.count < $1.count }) else {
            throw LaunchError(
                .cwdOutsideWorkspace, field: "cwd",
                "cwd '\(cwd)' is outside the workspaces (\(roots.joined(separator: ", "))); the operator adds one with --workspace")
        }
        if path != root {
            let relative = path.dropFirst(root == "/" ? 1 : root.count + 1)
            if relative.hasPrefix(".") {
                throw LaunchError(.cwdForbidden, field: "cwd", "cwd '\(cwd)' is in a hidden directory at the top of workspace \(root)")
            }
        }
        return path
    }

    static func isInside(_ path: String, _ root: String) -> Bool {
        root == "/" || path == root || path.hasPrefix(root + "/")
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
