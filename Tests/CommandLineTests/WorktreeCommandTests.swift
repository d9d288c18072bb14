import Foundation
import Glibc
import TestSupport
import Testing

/// `agentgate run --worktree`, `diff`, `apply`, `discard` against a real server, real git and
/// a real repository, as a user types them.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct WorktreeCommandTests {
    let server: ServerProcess
    let repository = GitRepository(files: ["a.txt": "one\n"])

    init() throws {
        server = try ServerProcess(extra: ["--pass-env", "FAKE_SCRIPT"])
    }

    func client(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let (status, stdout, stderr) = try ClientProcess(arguments, server: server).finish()
        return (status, stdout, stderr)
    }

    /// Runs a fake claude whose work is `script`, in a worktree of the repository; its job id.
    func runInWorktree(_ script: String, extra: [String] = ["--cwd", ""]) throws -> (id: String, stdout: String) {
        let arguments = extra.first == "--cwd" ? ["--cwd", repository.path, "--worktree"] : extra
        let run = try client(["run", "claude", "make a change", "--env", "FAKE_SCRIPT=\(script)"] + arguments)
        #expect(run.status == 0, "\(run)")
        let id = try #require(run.stdout.split(separator: " ").dropFirst(2).first.map(String.init))
        return (id, run.stdout)
    }

    @Test func aWorktreeJobShowsItsChangeAndIsAppliedOrDiscardedFromTheCommandLine() throws {
        let (id, printed) = try runInWorktree(#"echo two >> a.txt; printf 'title\033]0;pwned\007\n' > note.txt"#)
        #expect(printed.hasPrefix("[agentgate] job \(id) preparing: claude"), "\(printed)")
        #expect(printed.contains("[agentgate] job \(id) running: claude (pid "))
        #expect(printed.contains("2 files changed, +2 \u{2212}0 in agentgate/\(id)"))
        #expect(printed.contains("[agentgate] job \(id) done (exit 0): 2 files changed, +2 \u{2212}0 in agentgate/\(id)"))

        let listed = try client(["jobs"])
        #expect(listed.stdout.contains("make a change · worktree ready: 2 files changed, +2 \u{2212}0"), "\(listed.stdout)")
        let shown = try client(["show", id])
        #expect(shown.stdout.contains("branch    agentgate/\(id) from HEAD"))
        #expect(shown.stdout.contains("change    2 files changed, +2 \u{2212}0 (agentgate diff \(id))"))

        // The diff, with what the agent wrote shown escaped: no escape sequence reaches the terminal.
        let diff = try client(["diff", id])
        #expect(diff.status == 0)
        #expect(diff.stdout.contains("diff --git a/a.txt b/a.txt") && diff.stdout.contains("+two"))
        #expect(diff.stdout.contains(#"+title\x1b]0;pwned\x07"#) && !diff.stdout.contains("\u{1B}"))
        let stat = try client(["diff", id, "--stat"])
        #expect(stat.stdout == "M a.txt  +1 \u{2212}0\nA note.txt  +1 \u{2212}0\n2 files changed, +2 \u{2212}0\n", "\(stat)")
        let json = try client(["diff", id, "--json"])
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let files = try #require(parsed["files"] as? [[String: Any]])
        #expect(files.compactMap { $0["path"] as? String } == ["a.txt", "note.txt"])
        #expect((files.first?["patch"] as? String)?.contains("+two") == true)

        // The user moved on meanwhile: a conflict, exit 9, the file named, nothing changed.
        repository.write(["a.txt": "one\nmine\n"])
        repository.commit("mine")
        let head = repository.head
        let conflict = try client(["apply", id])
        #expect(conflict.status == 9, "\(conflict)")
        #expect(conflict.stderr.contains("conflicts; nothing was changed") && conflict.stderr.contains("  a.txt"))
        #expect(conflict.stderr.contains("--worktree-of \(id)"))
        #expect(repository.head == head && repository.status.isEmpty)
        #expect(try client(["apply", id, "--patch"]).status == 9)
        #expect(repository.status.isEmpty)

        repository.git("reset", "-q", "--hard", "HEAD~1")
        let applied = try client(["apply", id])
        #expect(applied.status == 0 && applied.stdout.contains("applied job \(id) to \(repository.path) on main (merged)"), "\(applied)")
        let twice = try client(["apply", id])
        #expect(twice.status == 7 && twice.stderr.contains("was applied already (merge into main)"), "\(twice)")
        #expect(repository.read("a.txt") == "one\ntwo\n")

        let discarded = try client(["discard", id])
        #expect(discarded.status == 0 && discarded.stdout.contains("and branch agentgate/\(id)"), "\(discarded)")
        #expect(repository.branches == ["main"])
        #expect(try client(["discard", id]).status == 7)
        #expect(try client(["apply", id]).status == 7)
    }

    @Test func aFollowUpRunsInTheEarlierJobsWorktreeAndMistakesGetClearAnswers() throws {
        let (first, _) = try runInWorktree("echo first > f.txt")
        let (second, _) = try runInWorktree("cat f.txt; echo second >> f.txt", extra: ["--worktree-of", first])
        let diff = try client(["diff", second])
        #expect(diff.stdout.contains("+first") && diff.stdout.contains("+second"))

        // Outside any checkout: refused before anything runs, naming why.
        let plain = TemporaryDirectory("agentgate-plain")
        let refused = try client(["run", "claude", "x", "--cwd", plain.path, "--worktree"])
        #expect(refused.status == 2 && refused.stderr.contains("is not inside a git checkout") && refused.stderr.contains("(field: cwd)"), "\(refused)")
        #expect(try client(["diff", "ffffffffffffffff"]).status == 5)
        #expect(try client(["diff", "../x"]).status == 64)
        #expect(try client(["run", "claude", "x", "--worktree-of", "ffffffffffffffff"]).status == 5)
        #expect(try client(["run", "claude", "x", "--worktree-of", first, "--base", "main"]).status == 64)
        // A job that ran in its cwd has no diff.
        let plainJob = try client(["run", "claude", "x", "--cwd", repository.path, "--env", "FAKE_SCRIPT=true"])
        let plainID = try #require(plainJob.stdout.split(separator: " ").dropFirst(2).first.map(String.init))
        let none = try client(["diff", plainID])
        #expect(none.status == 7 && none.stderr.contains("did not run in a worktree"))
    }
}

/// `exec` in a checkout below `--isolate-in`, while a server owns the data dir: the job's record
/// lives in a private directory removed when exec ends, but its worktree must not go with it.
@Suite(.processExclusive, .timeLimit(.minutes(20)))
struct ExecWorktreeTests {
    @Test func anExecWorktreeOutlivesTheExecsPrivateDirectory() throws {
        let server = try ServedGateway()
        let repository = GitRepository(files: ["a.txt": "one\n"])
        let tool = CommandLineTests()
        let exec = try tool.run(
            ["exec", "claude", "--prompt", "hi", "--data-dir", server.data.path, "--isolate-in", repository.directory.path, "--cwd", repository.path],
            environment: ["FAKE_SCRIPT": "echo two >> a.txt"])
        #expect(exec.status == 0, "\(exec)")
        #expect(exec.stderr.contains("its jobs are left alone"))
        #expect(exec.stdout.contains("1 file changed, +1 \u{2212}0 in agentgate/"), "\(exec.stdout)")
        let worktrees = try FileManager.default.contentsOfDirectory(atPath: server.data.file("worktrees"))
        #expect(worktrees.count == 1)
        let id = try #require(worktrees.first)
        #expect(repository.branches.contains("agentgate/\(id)"))
        #expect((try? String(contentsOfFile: server.data.file("worktrees/\(id)/a.txt"), encoding: .utf8)) == "one\ntwo\n")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: server.data.file("exec")))?.isEmpty ?? true)
        #expect(repository.read("a.txt") == "one\n")
    }
}

/// Worktree jobs across server restarts: the agent works on under its supervisor while no
/// server runs, and a server that dies right after recording the change leaves it recorded.
@Suite(.serialized, .processExclusive, .timeLimit(.minutes(20)))
struct WorktreeRestartTests {
    func detached(_ script: String, _ server: ServerProcess, _ repository: GitRepository) throws -> String {
        let (status, stdout, stderr) = try ClientProcess(
            ["run", "claude", "x", "--cwd", repository.path, "--worktree", "--detach", "--env", "FAKE_SCRIPT=\(script)"], server: server
        ).finish()
        #expect(status == 0, "\(stderr)")
        return stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func diff(_ id: String, _ server: ServerProcess) throws -> (Int32, String) {
        let (status, stdout, _) = try ClientProcess(["diff", id], server: server).finish()
        return (status, stdout)
    }

    @Test func aWorktreeJobSurvivesARestartAndACrashAfterItsChangeWasRecorded() throws {
        let server = try ServerProcess(surviving: true, extra: ["--pass-env", "FAKE_SCRIPT"])
        let repository = GitRepository(files: ["a.txt": "one\n"])

        // The server crashes while the agent works; the next one records its change.
        let long = try detached("sleep 1; echo two >> a.txt", server, repository)
        usleep(300_000)
        server.crash()
        try server.start()
        let (status, _, stderr) = try ClientProcess(["tail", long, "--follow"], server: server).finish()
        #expect(status == 0, "\(stderr)")
        let (longStatus, longText) = try diff(long, server)
        #expect(longStatus == 0 && longText.contains("+two"), "\(longText)")

        // The server dies right after recording the change, before the job completed.
        server.failPoint = "change-recorded"
        server.crash()
        try server.start()
        let short = try detached("echo three >> a.txt", server, repository)
        #expect(server.awaitCrash(seconds: 20), "the server never reached change-recorded")
        server.failPoint = nil
        try server.start()
        let (ended, shown, _) = try ClientProcess(["tail", short, "--follow"], server: server).finish()
        #expect(ended == 0, "\(shown)")
        let (diffStatus, text) = try diff(short, server)
        #expect(diffStatus == 0 && text.contains("+three"), "\(text)")
        let (_, show, _) = try ClientProcess(["show", short], server: server).finish()
        #expect(show.contains("change    1 file changed, +1 \u{2212}0"), "\(show)")
        #expect(repository.branches.contains("agentgate/\(long)") && repository.branches.contains("agentgate/\(short)"))
    }
}
