#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The git work behind worktree isolation: make a job's worktree, record its change, apply
/// it to the source checkout or discard it. Each call runs git to its end on the calling
/// thread (`WorktreeQueue` calls them off the loop) and touches only the job's worktree and
/// branch, except `apply`, which a person asked for, and which leaves the source checkout as
/// it was when it cannot go through whole.
public struct WorktreeOperations: Sendable {
    public struct Failure: Error, Sendable, Equatable {
        public var message: String
        /// Files that kept `apply` from going through (a conflict, or local changes in the way).
        public var conflicts: [String]

        public init(_ message: String, conflicts: [String] = []) {
            self.message = message
            self.conflicts = conflicts
        }
    }

    public enum ApplyMode: String, Sendable, CaseIterable {
        /// A merge commit of the job's branch in the source checkout.
        case merge
        /// The change written into the source checkout's files, uncommitted.
        case patch
    }

    public let git: GitCommand

    public init(git: GitCommand) {
        self.git = git
    }

    /// The top of the git checkout that contains `directory` (the nearest ancestor with a
    /// `.git` entry), found by looking at the file system only: quick enough for a launch
    /// request on the loop. Nil outside any checkout.
    public static func checkout(containing directory: String) -> String? {
        var current = directory
        while true {
            var info = stat()
            if lstat(current + "/.git", &info) == 0 { return current }
            guard current != "/", let slash = current.lastIndex(of: "/") else { return nil }
            current = slash == current.startIndex ? "/" : String(current[..<slash])
        }
    }

    /// Makes `worktree` (its path, branch and base as set) and returns it `active`, with the
    /// base commit it starts from.
    public func create(_ worktree: Worktree) -> Result<Worktree, Failure> {
        var made = worktree
        let base = git.run(["rev-parse", "--verify", "--quiet", "--end-of-options", worktree.baseRef + "^{commit}"], in: worktree.repository)
        guard base.succeeded, let commit = base.text.split(separator: "\n").first.map(String.init), !commit.isEmpty else {
            let head = git.run(["rev-parse", "--verify", "--quiet", "HEAD"], in: worktree.repository)
            if worktree.baseRef == "HEAD", !head.succeeded {
                return .failure(Failure("\(worktree.repository) has no commits yet: a worktree needs a commit to start from"))
            }
            return .failure(Failure("baseRef '\(worktree.baseRef)' names no commit in \(worktree.repository)" + (base.stderr.isEmpty ? "" : ": \(base.failureMessage)")))
        }
        let parent = (worktree.path as NSString).deletingLastPathComponent
        if mkdir(parent, 0o700) != 0 && errno != EEXIST {
            return .failure(Failure("cannot make \(parent): \(String(cString: strerror(errno)))"))
        }
        let added = git.run(["worktree", "add", "--quiet", "-b", worktree.branch, worktree.path, commit], in: worktree.repository)
        guard added.succeeded else { return .failure(Failure(added.failureMessage)) }
        if !worktree.subdirectory.isEmpty {
            try? FileManager.default.createDirectory(atPath: worktree.workingDirectory, withIntermediateDirectories: true)
        }
        made.baseCommit = commit
        made.state = .active
        return .success(made)
    }

    /// Records what the job changed: everything in the worktree (tracked, untracked, deleted;
    /// ignored files stay out) is committed to its branch, the diff against the base is taken,
    /// and the unified diff is written to `patchPath`, cut at `capBytes`. The user's own
    /// checkout, branch and index are not touched. Returns the worktree `ready`.
    public func record(_ worktree: Worktree, message: String, patchPath: String, capBytes: Int) -> Result<(Worktree, WorktreeDiff), Failure> {
        guard let base = worktree.baseCommit else { return .failure(Failure("the worktree was never made")) }
        guard ExecutableSearch.isDirectory(worktree.path) else {
            return .failure(Failure("the worktree \(worktree.path) is gone"))
        }
        let path = worktree.path
        let staged = git.run(["add", "--all", "--", "."], in: path)
        guard staged.succeeded else { return .failure(Failure(staged.failureMessage)) }
        let pending = git.run(["diff", "--cached", "--quiet"], in: path)
        if pending.status == .exited(1) {
            let committed = git.run(
                ["commit", "--quiet", "--no-verify", "--no-gpg-sign", "--allow-empty-message", "-m", message], in: path,
                extraEnvironment: identity(in: path))
            guard committed.succeeded else { return .failure(Failure(committed.failureMessage)) }
        } else if !pending.succeeded {
            return .failure(Failure(pending.failureMessage))
        }
        let head = git.run(["rev-parse", "--verify", "HEAD"], in: path)
        guard head.succeeded, let commit = head.text.split(separator: "\n").first.map(String.init) else {
            return .failure(Failure(head.failureMessage))
        }
        let names = git.run(["diff", "-z", "--name-status", "-M", base, commit], in: path, maxOutput: 64 << 20)
        let counts = git.run(["diff", "-z", "--numstat", "-M", base, commit], in: path, maxOutput: 64 << 20)
        guard names.succeeded, counts.succeeded else { return .failure(Failure(names.succeeded ? counts.failureMessage : names.failureMessage)) }
        let patch = git.run(["diff", "-M", base, commit], in: path, maxOutput: capBytes + 1)
        guard patch.succeeded || patch.truncated else { return .failure(Failure(patch.failureMessage)) }
        let (kept, cut) = WorktreeDiff.capped(patch.stdout, cap: capBytes)
        do {
            try Data(kept).write(to: URL(fileURLWithPath: patchPath), options: .atomic)
        } catch {
            return .failure(Failure("cannot write \(patchPath): \(error.localizedDescription)"))
        }
        let diff = WorktreeDiff(
            files: WorktreeDiff.files(nameStatus: names.stdout, numstat: counts.stdout), patchBytes: kept.count, truncated: cut,
            capBytes: capBytes)
        var recorded = worktree
        recorded.headCommit = commit
        recorded.state = .ready
        recorded.summary = diff.summary
        recorded.filesChanged = diff.filesChanged
        recorded.additions = diff.additions
        recorded.deletions = diff.deletions
        return .success((recorded, diff))
    }

    /// Brings the recorded change into the source checkout. All or nothing: on a conflict (or
    /// local changes in the way) the checkout is left as it was and the files are named.
    public func apply(_ worktree: Worktree, mode: ApplyMode, message: String) -> Result<Worktree, Failure> {
        guard let base = worktree.baseCommit, let head = worktree.headCommit else {
            return .failure(Failure("the job's change was not recorded"))
        }
        let repository = worktree.repository
        guard ExecutableSearch.isDirectory(repository) else { return .failure(Failure("the source checkout \(repository) is gone")) }
        switch mode {
        case .merge:
            if git.run(["rev-parse", "--quiet", "--verify", "MERGE_HEAD"], in: repository).succeeded {
                return .failure(Failure("\(repository) is in the middle of a merge; finish or abort it first"))
            }
            let merged = git.run(
                // Unsigned: a signing prompt nobody sees would hold the merge until git's deadline.
                ["merge", "--no-ff", "--no-edit", "--no-gpg-sign", "-m", message, head], in: repository,
                extraEnvironment: identity(in: repository))
            if merged.succeeded { break }
            let unmerged = git.run(["diff", "--name-only", "--diff-filter=U", "-z"], in: repository)
            let conflicts = unmerged.stdout.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if git.run(["rev-parse", "--quiet", "--verify", "MERGE_HEAD"], in: repository).succeeded {
                _ = git.run(["merge", "--abort"], in: repository)
            }
            if !conflicts.isEmpty {
                return .failure(Failure("merging \(worktree.branch) into \(repository) conflicts; nothing was changed", conflicts: conflicts))
            }
            let inTheWay = Self.indentedPaths(in: merged.stderr + merged.text)
            if !inTheWay.isEmpty {
                return .failure(Failure("local changes in \(repository) would be overwritten; nothing was changed", conflicts: inTheWay))
            }
            return .failure(Failure(merged.failureMessage + merged.text.split(separator: "\n").prefix(3).joined(separator: " ")))
        case .patch:
            let patch = git.run(["diff", "--binary", "-M", base, head], in: worktree.path, maxOutput: 512 << 20)
            guard patch.succeeded, !patch.truncated else {
                return .failure(Failure(patch.truncated ? "the change is over 512 MiB as a patch; apply it as a merge" : patch.failureMessage))
            }
            if patch.stdout.isEmpty { break }
            let applied = git.run(["apply", "--whitespace=nowarn", "-"], in: repository, stdin: patch.stdout)
            guard applied.succeeded else {
                return .failure(Failure("the patch does not apply to \(repository); nothing was changed", conflicts: Self.patchFailures(applied.stderr)))
            }
        }
        var done = worktree
        done.state = .applied
        return .success(done)
    }

    /// Removes the worktree and its branch: the one way agentgate deletes a job's work.
    public func discard(_ worktree: Worktree) -> Result<Worktree, Failure> {
        let repository = worktree.repository
        if ExecutableSearch.isDirectory(repository) {
            if ExecutableSearch.isDirectory(worktree.path) {
                let removed = git.run(["worktree", "remove", "--force", "--force", worktree.path], in: repository)
                if !removed.succeeded, ExecutableSearch.isDirectory(worktree.path) {
                    return .failure(Failure(removed.failureMessage))
                }
            }
            _ = git.run(["worktree", "prune"], in: repository)
            let branch = git.run(["branch", "-D", "--", worktree.branch], in: repository)
            if !branch.succeeded, git.run(["rev-parse", "--quiet", "--verify", "refs/heads/" + worktree.branch], in: repository).succeeded {
                return .failure(Failure(branch.failureMessage))
            }
        } else if ExecutableSearch.isDirectory(worktree.path) {
            // The checkout it came from is gone: its branch went with it; only the files remain.
            do { try FileManager.default.removeItem(atPath: worktree.path) } catch {
                return .failure(Failure("cannot remove \(worktree.path): \(error.localizedDescription)"))
            }
        }
        var gone = worktree
        gone.state = .discarded
        return .success(gone)
    }

    /// Author and committer for agentgate's commits where the repository names nobody
    /// (git would refuse to commit).
    private func identity(in directory: String) -> [String] {
        let name = git.run(["config", "user.name"], in: directory).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let email = git.run(["config", "user.email"], in: directory).text.trimmingCharacters(in: .whitespacesAndNewlines)
        var environment: [String] = []
        if name.isEmpty { environment += ["GIT_AUTHOR_NAME=agentgate", "GIT_COMMITTER_NAME=agentgate"] }
        if email.isEmpty { environment += ["GIT_AUTHOR_EMAIL=agentgate@localhost", "GIT_COMMITTER_EMAIL=agentgate@localhost"] }
        return environment
    }

    /// The tab-indented paths git lists under "…would be overwritten by merge:".
    static func indentedPaths(in text: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix("\t") }.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Paths named by `git apply`'s errors ("error: patch failed: a.txt:3", "error: b.txt:
    /// already exists in working directory").
    static func patchFailures(_ stderr: String) -> [String] {
        var paths: [String] = []
        for line in stderr.split(separator: "\n") where line.hasPrefix("error: ") {
            var rest = line.dropFirst("error: ".count)
            if rest.hasPrefix("patch failed: ") {
                rest = rest.dropFirst("patch failed: ".count)
                if let colon = rest.lastIndex(of: ":") { rest = rest[..<colon] }
            } else if let colon = rest.range(of: ": ") {
                rest = rest[..<colon.lowerBound]
            } else {
                continue
            }
            let path = String(rest)
            if !paths.contains(path) { paths.append(path) }
        }
        return paths
    }
}
