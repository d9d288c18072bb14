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

    /// A directory that is itself, not a link to one, nor reached through one: an agent can
    /// replace its worktree (or the directory above it) with a symlink to anything.
    static func isGenuineDirectory(_ path: String) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return false }
        return WorkspacePolicy.realPath(path) == path
    }

    /// Config keys whose values git runs as commands while it adds, diffs, merges or checks
    /// out: filters, textconv, external diff and merge drivers.
    static let driverKeys = #"^(filter\..*\.(clean|smudge|process)|diff\..*\.(textconv|command)|merge\..*\.driver|diff\.external)$"#

    /// Config sections that change nothing in what agentgate's git commands do (no transport
    /// runs: `protocol.allow=never`), and that a person changes while a job runs (`git push
    /// -u` writes `branch.*`): left out of `gitSetup`.
    static let inertSections = [
        "branch.", "remote.", "user.", "advice.", "gui.", "pull.", "push.", "fetch.", "http.", "url.", "credential.",
        "alias.", "log.", "format.", "status.", "help.", "column.", "i18n.", "pager.",
    ]
    /// Files of the repository's git directory that change what git reads, writes or shows.
    static let setupFiles = ["info/attributes", "info/exclude", "info/sparse-checkout", "info/grafts", "objects/info/alternates", "shallow"]

    /// How the repository's git is set up, as far as it changes what agentgate's git commands
    /// run, write or show: every config entry (includes and conditional includes resolved)
    /// outside `inertSections`, for both ways agentgate runs git there (in the source checkout
    /// for apply, on its git directory for record), and the `setupFiles`. An allow-list by
    /// comparison: whatever an agent adds (a filter, `core.worktree`, `merge.autostash`,
    /// `diff.noprefix`, a sparse checkout, an include), agentgate notices it changed.
    func gitSetup(of worktree: Worktree) -> String {
        func listed(_ arguments: [String]) -> [String] {
            let outcome = git.run(arguments + ["config", "-z", "--list"], in: worktree.repository, maxOutput: 4 << 20)
            guard outcome.succeeded || outcome.status == .exited(1) else { return ["unreadable: \(outcome.failureMessage)"] }
            return outcome.stdout.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                .filter { entry in !Self.inertSections.contains { entry.hasPrefix($0) } }
        }
        var entries = listed([])
        if let common = worktree.commonDirectory {
            let direct = listed(["--git-dir=" + common])
            if direct != entries { entries += ["\u{1}"] + direct }
            for name in Self.setupFiles {
                let path = common + "/" + name
                let text = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? "(none)"
                entries.append("file \(name)\n" + text)
            }
        }
        return entries.joined(separator: "\0")
    }

    /// Refuses when the repository's git setup changed since the worktree was made: an agent
    /// can write the repository's config and `.git/info`, and git would run what it wrote
    /// inside agentgate's own commands (outside the job, after it ended), write outside the
    /// checkout, or show a diff other than what applying brings in.
    func checkSetup(_ worktree: Worktree) -> Failure? {
        let now = gitSetup(of: worktree)
        let then = worktree.gitSetup ?? ""
        guard now != then else { return nil }
        let before = Set(then.split(separator: "\0"))
        let after = Set(now.split(separator: "\0"))
        let changed = after.symmetricDifference(before).map { $0.split(separator: "\n").first.map(String.init) ?? "" }
            .filter { $0 != "\u{1}" }
        let named = Array(Set(changed)).sorted().prefix(6).joined(separator: ", ")
        return Failure(
            "the repository's git setup changed while the job ran (\(named.isEmpty ? "its config" : named)); agentgate does no git work "
                + "on a setup it did not see when the worktree was made, so nothing was done: review the worktree \(worktree.path) yourself, "
                + "or undo those settings and try again")
    }

    /// Makes `worktree` (its path, branch and base as set) and returns it `active`, with the
    /// base commit it starts from, its own git directory and the repository's git setup.
    /// - Parameter previousSetup: the git setup the last worktree of this repository was made
    ///   with: driver commands (filters, textconv, merge drivers, attributes) that appeared
    ///   since are refused before `git worktree add`, whose checkout would run them inside the
    ///   server (an earlier job's agent may have put them there).
    public func create(_ worktree: Worktree, previousSetup: String? = nil) -> Result<Worktree, Failure> {
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
        let common = git.run(["rev-parse", "--path-format=absolute", "--git-common-dir"], in: worktree.repository)
        guard common.succeeded, let commonPath = common.text.split(separator: "\n").first.map(String.init) else {
            return .failure(Failure(common.failureMessage))
        }
        made.commonDirectory = WorkspacePolicy.realPath(commonPath) ?? commonPath
        made.gitSetup = gitSetup(of: made)
        if let previousSetup, let setup = made.gitSetup {
            let before: Set<Substring> = Set(previousSetup.split(separator: "\0"))
            var appeared: [String] = []
            for entry in setup.split(separator: "\0") where !before.contains(entry) {
                let key = String(entry.split(separator: "\n").first ?? "")
                if key == "file info/attributes" || key.range(of: Self.driverKeys, options: .regularExpression) != nil { appeared.append(key) }
            }
            if !appeared.isEmpty {
                return .failure(Failure(
                    "the repository's git setup gained commands since its last worktree (\(Set(appeared).sorted().prefix(6).joined(separator: ", "))); "
                        + "agentgate runs none it has not seen: remove them if an agent put them there (git config --unset …), then launch again"))
            }
        }
        let added = git.run(["worktree", "add", "--quiet", "-b", worktree.branch, worktree.path, commit], in: worktree.repository)
        guard added.succeeded else { return .failure(Failure(added.failureMessage)) }
        // Read before any agent runs in it: `gitdir: <repository's .git>/worktrees/<name>`.
        let pointer = (try? String(contentsOfFile: worktree.path + "/.git", encoding: .utf8)) ?? ""
        guard pointer.hasPrefix("gitdir: ") else { return .failure(Failure("\(worktree.path)/.git does not name the worktree's git directory")) }
        var gitDirectory = pointer.dropFirst("gitdir: ".count).trimmingCharacters(in: .whitespacesAndNewlines)
        if !gitDirectory.hasPrefix("/") { gitDirectory = worktree.path + "/" + gitDirectory }
        made.gitDirectory = WorkspacePolicy.realPath(gitDirectory) ?? gitDirectory
        if !worktree.subdirectory.isEmpty {
            try? FileManager.default.createDirectory(atPath: worktree.workingDirectory, withIntermediateDirectories: true)
        }
        made.baseCommit = commit
        made.state = .active
        return .success(made)
    }

    /// Records what the job changed: everything in the worktree (tracked, untracked, deleted;
    /// ignored files stay out) becomes a commit on the job's branch — and only there, whatever
    /// the agent did to its `.git` file or which branch it checked out — and the diff against
    /// the base is taken; the unified diff is written to `patchPath`, cut at `capBytes`. The
    /// user's own checkout, branches and index are not touched. Returns the worktree `ready`.
    public func record(_ worktree: Worktree, message: String, patchPath: String, capBytes: Int) -> Result<(Worktree, WorktreeDiff), Failure> {
        guard let base = worktree.baseCommit, let common = worktree.commonDirectory else {
            return .failure(Failure("the worktree was never made"))
        }
        guard Self.isGenuineDirectory(worktree.path) else {
            return .failure(Failure("the worktree \(worktree.path) is gone or was replaced by a link; nothing was recorded"))
        }
        if let failure = checkSetup(worktree) { return .failure(failure) }
        let path = worktree.path
        // The repository's own git directory and an index of agentgate's own: nothing the
        // agent did to the worktree's git directory (its HEAD, index, commondir, a link) counts.
        let own = ["--git-dir=" + common]
        let scratch = TemporaryIndex()
        defer { scratch.remove() }
        let index = ["GIT_INDEX_FILE=" + scratch.path]
        let ref = "refs/heads/" + worktree.branch
        // A branch the agent made a link to another (`symbolic-ref`) is not followed.
        let symbolic = git.run(own + ["symbolic-ref", "-q", ref], in: path).succeeded
        let tip = symbolic ? nil : git.run(own + ["rev-parse", "--verify", "--quiet", ref + "^{commit}"], in: path)
        var parent = tip?.succeeded == true ? tip!.text.trimmingCharacters(in: .whitespacesAndNewlines) : base
        // History the agent grafted on that does not grow from the base (its branch reset onto
        // the user's newer commits) would move the merge base: the change starts from the base.
        if parent != base, !git.run(own + ["merge-base", "--is-ancestor", base, parent], in: path).succeeded { parent = base }
        let start = git.run(own + ["read-tree", parent], in: path, extraEnvironment: index)
        guard start.succeeded else { return .failure(Failure(start.failureMessage)) }
        let staged = git.run(own + ["--work-tree=" + path, "add", "--all", "--", "."], in: path, extraEnvironment: index)
        guard staged.succeeded else { return .failure(Failure(staged.failureMessage)) }
        // Files the agent added on purpose though ignored (`git add -f`) are in its own index:
        // read (never written) for their names, and added too.
        if let gitDirectory = worktree.gitDirectory {
            let listed = git.run(own + ["ls-files", "-z", "--cached"], in: path, extraEnvironment: ["GIT_INDEX_FILE=" + gitDirectory + "/index"], maxOutput: 256 << 20)
            let forced = listed.stdout.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.filter { name in
                var info = stat()
                return !name.hasPrefix("/") && !name.split(separator: "/").contains("..") && lstat(path + "/" + name, &info) == 0
            }
            if listed.succeeded, !forced.isEmpty {
                _ = git.run(
                    ["--literal-pathspecs"] + own + ["--work-tree=" + path, "add", "--force", "--pathspec-from-file=-", "--pathspec-file-nul"],
                    in: path, extraEnvironment: index, stdin: Array(forced.joined(separator: "\0").utf8) + [0])
            }
        }
        let tree = git.run(own + ["write-tree"], in: path, extraEnvironment: index)
        guard tree.succeeded, let treeID = tree.text.split(separator: "\n").first.map(String.init) else { return .failure(Failure(tree.failureMessage)) }
        let parentTree = git.run(own + ["rev-parse", "--verify", "--quiet", parent + "^{tree}"], in: path).text.trimmingCharacters(in: .whitespacesAndNewlines)
        var commit = parent
        if treeID != parentTree || symbolic {
            if treeID != parentTree {
                let made = git.run(
                    own + ["commit-tree", "--no-gpg-sign", treeID, "-p", parent, "-m", message], in: path, extraEnvironment: identity(in: path))
                guard made.succeeded else { return .failure(Failure(made.failureMessage)) }
                commit = made.text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let expected = tip?.succeeded == true ? [parent] : []
            let moved = git.run(own + ["update-ref", "--no-deref", "-m", "agentgate: the job's change", ref, commit] + expected, in: path)
            guard moved.succeeded else { return .failure(Failure(moved.failureMessage)) }
        }
        syncWorktreeIndex(worktree, to: commit)
        // Diffs from the git directory itself, with an empty index and no attributes file: no
        // `.gitattributes` of the agent's (`-diff`, `binary`) hides a text file's lines, and
        // the paths carry the usual a/ b/ prefixes whatever the config says.
        let empty = TemporaryIndex()
        defer { empty.remove() }
        let diff = own + ["-c", "core.attributesFile=/dev/null", "diff"] + Self.diffOptions
        let bare = ["GIT_INDEX_FILE=" + empty.path]
        let names = git.run(diff + ["-z", "--name-status", base, commit], in: common, extraEnvironment: bare, maxOutput: 64 << 20)
        let counts = git.run(diff + ["-z", "--numstat", base, commit], in: common, extraEnvironment: bare, maxOutput: 64 << 20)
        guard names.succeeded, counts.succeeded else { return .failure(Failure(names.succeeded ? counts.failureMessage : names.failureMessage)) }
        let patch = git.run(diff + [base, commit], in: common, extraEnvironment: bare, maxOutput: capBytes + 1)
        guard patch.succeeded || patch.truncated else { return .failure(Failure(patch.failureMessage)) }
        let (kept, cut) = WorktreeDiff.capped(patch.stdout, cap: capBytes)
        do {
            try Data(kept).write(to: URL(fileURLWithPath: patchPath), options: .atomic)
        } catch {
            return .failure(Failure("cannot write \(patchPath): \(error.localizedDescription)"))
        }
        let diffSummary = WorktreeDiff(
            files: WorktreeDiff.files(nameStatus: names.stdout, numstat: counts.stdout), patchBytes: kept.count, truncated: cut,
            capBytes: capBytes)
        var recorded = worktree
        recorded.headCommit = commit
        recorded.state = .ready
        recorded.summary = diffSummary.summary
        recorded.filesChanged = diffSummary.filesChanged
        recorded.additions = diffSummary.additions
        recorded.deletions = diffSummary.deletions
        return .success((recorded, diffSummary))
    }

    /// Brings the recorded change into the source checkout, onto the branch checked out there.
    /// All or nothing: a conflict or an untracked, ignored or locally changed file in the way
    /// is found before anything is written (the merge is computed with `git merge-tree`, then
    /// the checkout fast-forwards to it), and if writing fails part-way (a read-only file, a
    /// full disk) the files touched are put back as they were.
    public func apply(_ worktree: Worktree, mode: ApplyMode, message: String) -> Result<Worktree, Failure> {
        guard let base = worktree.baseCommit, let head = worktree.headCommit else {
            return .failure(Failure("the job's change was not recorded"))
        }
        let repository = worktree.repository
        guard ExecutableSearch.isDirectory(repository) else { return .failure(Failure("the source checkout \(repository) is gone")) }
        if let failure = checkSetup(worktree) { return .failure(failure) }
        // Paths are taken literally: a file named `:(glob)*` is that file.
        let literal = ["--literal-pathspecs"]
        switch mode {
        case .merge:
            // The checkout's files are where it says (no `core.worktree` sending them elsewhere).
            let top = git.run(["rev-parse", "--show-toplevel"], in: repository).text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard WorkspacePolicy.realPath(top) == WorkspacePolicy.realPath(repository) else {
                return .failure(Failure("the work tree of \(repository) is set to \(top.isEmpty ? "nothing" : top); nothing was changed"))
            }
            if git.run(["rev-parse", "--quiet", "--verify", "MERGE_HEAD"], in: repository).succeeded {
                return .failure(Failure("\(repository) is in the middle of a merge; finish or abort it first"))
            }
            let current = git.run(["rev-parse", "--verify", "HEAD"], in: repository)
            guard current.succeeded else { return .failure(Failure(current.failureMessage)) }
            let into = current.text.trimmingCharacters(in: .whitespacesAndNewlines)
            // git lets a merge overwrite ignored files (a `.env`); nothing of the user's may go.
            let merged = git.run(["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", into, head], in: repository)
            let fields = merged.stdout.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
            if merged.status == .exited(1) {
                return .failure(Failure("merging \(worktree.branch) into \(repository) conflicts; nothing was changed", conflicts: Array(fields.dropFirst())))
            }
            guard merged.succeeded, let tree = fields.first else { return .failure(Failure(merged.failureMessage)) }
            let commit = git.run(
                ["commit-tree", "--no-gpg-sign", tree, "-p", into, "-p", head, "-m", message], in: repository,
                extraEnvironment: identity(in: repository))
            guard commit.succeeded else { return .failure(Failure(commit.failureMessage)) }
            let mergeCommit = commit.text.trimmingCharacters(in: .whitespacesAndNewlines)
            // What the fast-forward writes (not only the job's own change: a base other than
            // the checkout's branch brings files of its own).
            let written = changedPaths(from: into, to: mergeCommit, in: repository)
            // The merge may change only what the reviewed diff shows: history an agent wrote
            // could otherwise pick a merge base that undoes the user's own commits.
            let reviewed = Set(changedPaths(from: base, to: head, in: repository))
            let unseen = written.filter { !reviewed.contains($0) }
            if !unseen.isEmpty {
                return .failure(Failure(
                    "merging would change files the job's diff does not show (its branch's history does not grow from its base); nothing was changed",
                    conflicts: Array(unseen.prefix(50))))
            }
            let inTheWay = untrackedInTheWay(of: written, in: repository)
            if !inTheWay.isEmpty {
                return .failure(Failure("untracked or ignored files in \(repository) would be overwritten; nothing was changed", conflicts: inTheWay))
            }
            let backup = CheckoutBackup(repository: repository, paths: written)
            let forward = git.run(["merge", "--ff-only", "--no-edit", "--no-autostash", "--quiet", mergeCommit], in: repository)
            if !forward.succeeded {
                let moved = git.run(["rev-parse", "--verify", "HEAD"], in: repository).text.trimmingCharacters(in: .whitespacesAndNewlines) != into
                let local = Self.indentedPaths(in: forward.stderr + forward.text)
                if !moved {
                    backup.restore()
                    // The index entries it updated go back to HEAD's (the paths on stdin: thousands
                    // do not fit a command line).
                    if !written.isEmpty {
                        _ = git.run(
                            literal + ["reset", "--quiet", "--pathspec-from-file=-", "--pathspec-file-nul", into], in: repository,
                            stdin: Array(written.joined(separator: "\0").utf8) + [0])
                    }
                }
                if !local.isEmpty {
                    return .failure(Failure("local changes in \(repository) would be overwritten; nothing was changed", conflicts: local))
                }
                return .failure(Failure(forward.failureMessage + (moved ? "" : "; the files it touched were put back as they were")))
            }
        case .patch:
            let patch = git.run(["diff"] + Self.diffOptions + ["--binary", base, head], in: repository, maxOutput: 512 << 20)
            guard patch.succeeded, !patch.truncated else {
                return .failure(Failure(patch.truncated ? "the change is over 512 MiB as a patch; apply it as a merge" : patch.failureMessage))
            }
            if patch.stdout.isEmpty { break }
            let touched = changedPaths(from: base, to: head, in: repository)
            let backup = CheckoutBackup(repository: repository, paths: touched)
            let applied = git.run(["apply", "--whitespace=nowarn", "-"], in: repository, stdin: patch.stdout)
            guard applied.succeeded else {
                backup.restore()
                let named = Self.patchFailures(applied.stderr).filter { touched.contains($0) }
                return .failure(Failure("the patch does not apply to \(repository); nothing was changed", conflicts: named))
            }
        }
        var done = worktree
        done.state = .applied
        done.appliedAs = mode.rawValue
        let branch = git.run(["rev-parse", "--abbrev-ref", "HEAD"], in: repository).text.trimmingCharacters(in: .whitespacesAndNewlines)
        done.appliedTo = branch.isEmpty ? nil : branch
        return .success(done)
    }

    /// The paths of `paths` (or a directory above one) that exist in the checkout's files but
    /// are not tracked there: untracked or ignored files a merge would overwrite. Looked up on
    /// disk and in one listing of the index (thousands of paths do not fit a command line).
    func untrackedInTheWay(of paths: [String], in repository: String) -> [String] {
        guard !paths.isEmpty else { return [] }
        let listed = git.run(["ls-files", "-z", "--cached"], in: repository, maxOutput: 256 << 20)
        let tracked = Set(listed.stdout.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
        var found: [String] = []
        for path in paths {
            var prefix = ""
            for component in path.split(separator: "/") {
                prefix += prefix.isEmpty ? String(component) : "/" + component
                var info = stat()
                guard lstat(repository + "/" + prefix, &info) == 0 else { break }
                let isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
                if !isDirectory, !tracked.contains(prefix), !found.contains(prefix) { found.append(prefix) }
                if !isDirectory { break }
            }
        }
        return found
    }

    /// Makes the worktree's own index match the commit, so the worktree shows as clean to a
    /// follow-up job and to a person inspecting it; only where its git directory is still the
    /// one agentgate made, with HEAD on the job's branch. The index is written by renaming a
    /// new file over it: a link an agent left there is replaced, never written through.
    private func syncWorktreeIndex(_ worktree: Worktree, to commit: String) {
        guard let gitDirectory = worktree.gitDirectory, let common = worktree.commonDirectory,
            Self.isGenuineDirectory(gitDirectory), gitDirectory.hasPrefix(common + "/worktrees/"),
            (try? String(contentsOfFile: gitDirectory + "/HEAD", encoding: .utf8)) == "ref: refs/heads/\(worktree.branch)\n"
        else { return }
        // git follows a link when it locks a file: an index that is not a plain file goes first.
        let index = gitDirectory + "/index"
        var info = stat()
        if lstat(index, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG || info.st_nlink > 1 { unlink(index) }
        _ = git.run(["--git-dir=" + common, "read-tree", commit], in: worktree.path, extraEnvironment: ["GIT_INDEX_FILE=" + index])
    }

    /// Every path a change between two commits touches (both sides of a rename).
    func changedPaths(from: String, to: String, in directory: String) -> [String] {
        let listed = git.run(["diff"] + Self.diffOptions + ["-z", "--name-status", from, to], in: directory, maxOutput: 64 << 20)
        var paths: [String] = []
        var fields = listed.stdout.split(separator: 0, omittingEmptySubsequences: false).makeIterator()
        while let status = fields.next() {
            guard let letter = status.first else { continue }
            let count = letter == UInt8(ascii: "R") || letter == UInt8(ascii: "C") ? 2 : 1
            for _ in 0..<count {
                if let path = fields.next() { paths.append(String(decoding: path, as: UTF8.self)) }
            }
        }
        return paths
    }

    /// Removes the worktree and its branch: the one way agentgate deletes a job's work. A
    /// worktree replaced by a link is unlinked, never followed.
    public func discard(_ worktree: Worktree) -> Result<Worktree, Failure> {
        let repository = worktree.repository
        var info = stat()
        let present = lstat(worktree.path, &info) == 0
        if present, (info.st_mode & S_IFMT) != S_IFDIR || !Self.isGenuineDirectory(worktree.path) {
            // A link (or a file) where the worktree was: remove the link itself.
            guard (info.st_mode & S_IFMT) != S_IFDIR, unlink(worktree.path) == 0 else {
                return .failure(Failure("\(worktree.path) is reached through a link; agentgate removes nothing there"))
            }
        } else if present {
            let removed = ExecutableSearch.isDirectory(repository)
                ? git.run(["worktree", "remove", "--force", "--force", worktree.path], in: repository) : nil
            // git refuses a worktree whose `.git` file was rewritten: it is ours, remove it.
            if removed?.succeeded != true, Self.isGenuineDirectory(worktree.path) {
                do { try FileManager.default.removeItem(atPath: worktree.path) } catch {
                    return .failure(Failure("cannot remove \(worktree.path): \(error.localizedDescription)"))
                }
            }
        }
        if ExecutableSearch.isDirectory(repository) {
            _ = git.run(["worktree", "prune"], in: repository)
            let branch = git.run(["branch", "-D", "--", worktree.branch], in: repository)
            if !branch.succeeded, git.run(["rev-parse", "--quiet", "--verify", "refs/heads/" + worktree.branch], in: repository).succeeded {
                return .failure(Failure(branch.failureMessage))
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

    /// What every diff agentgate takes says, whatever the repository's config: renames found,
    /// no textconv or external diff, the a/ b/ prefixes `git apply` expects, whole-tree paths.
    static let diffOptions = ["--no-textconv", "--no-ext-diff", "--no-color", "-M", "--src-prefix=a/", "--dst-prefix=b/", "--no-relative"]

    /// The indented paths git lists under "…would be overwritten by merge:" (a tab, or two
    /// spaces for staged changes).
    static func indentedPaths(in text: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix("\t") || $0.hasPrefix("  ") }.map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
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
