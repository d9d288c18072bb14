import AgentCore
import ArgumentParser
import Foundation

/// `agentgate diff`: the change a worktree job made.
struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "Show the change a worktree job made (a unified diff).",
        discussion: "Exit status: 0 shown, 5 no such job, 7 no worktree or not recorded yet (the job still runs).")

    @Argument(help: "The job id.")
    var id: String

    @Flag(help: "Only the files: status, lines added and removed.")
    var stat = false

    @Flag(help: "The per-file JSON, each file with its piece of the diff.")
    var json = false

    @Flag(help: "Print the diff as it is, control characters included (by default they are shown escaped).")
    var raw = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        try validateJobID(id)
        if stat && json { throw ValidationError("--stat and --json exclude each other") }
    }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            if json || stat {
                let reply = try api.call("GET", "/api/agents/jobs/\(id)/diff?format=json")
                if json {
                    print(String(decoding: JSONWriter.serialize(reply), as: UTF8.self))
                    return 0
                }
                for file in reply["files"]?.arrayValue ?? [] {
                    let letter: String
                    switch file["status"]?.stringValue {
                    case "added": letter = "A"
                    case "deleted": letter = "D"
                    case "renamed": letter = "R"
                    case "copied": letter = "C"
                    default: letter = "M"
                    }
                    // A name may hold a newline: one file, one line.
                    func oneLine(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t") }
                    let path = oneLine(file["path"]?.stringValue ?? "")
                    let from = file["oldPath"]?.stringValue.map { "\(oneLine($0)) → " } ?? ""
                    let counts = file["binary"]?.boolValue == true
                        ? "binary" : "+\(file["additions"]?.intValue ?? 0) \u{2212}\(file["deletions"]?.intValue ?? 0)"
                    print(TerminalText.escaped("\(letter) \(from)\(path)  \(counts)"))
                }
                print(TerminalText.escaped(reply["summary"]?.stringValue ?? ""))
                if reply["truncated"]?.boolValue == true {
                    print("(the diff is cut at \(ByteCount.text(reply["capBytes"]?.intValue ?? 0)); the list above is whole)")
                }
                return 0
            }
            let reply = try api.request("GET", "/api/agents/jobs/\(id)/diff")
            guard (200..<300).contains(reply.status) else { throw ClientFailure.http(reply.status, reply.body) }
            let text = reply.body.stringValue ?? ""
            FileHandle.standardOutput.write(Data((raw ? text : TerminalText.escaped(text)).utf8))
            if reply.headers["X-Diff-Truncated"] == "true" {
                printError("agentgate: the diff is cut at the server's --max-diff; `agentgate diff \(id) --stat` lists every file")
            }
            return 0
        }
    }
}

/// `agentgate apply`: the job's change into the checkout it was launched in.
struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Apply a worktree job's change to the checkout it was launched in (a merge, or --patch).",
        discussion: """
            All or nothing: on a conflict, or local changes in the way, the checkout is left as it \
            was. The change goes onto the branch checked out in that checkout now. Exit status: 0 \
            applied, 9 conflict (the files are listed), 5 no such job, 7 no change to apply, \
            applied already, or a job still works in the worktree.
            """)

    @Argument(help: "The job id.")
    var id: String

    @Flag(help: "Write the change into the files, uncommitted, instead of merging the job's branch.")
    var patch = false

    @OptionGroup var client: ClientOptions

    func validate() throws { try validateJobID(id) }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            // git may take minutes on a large repository.
            let reply = try client.api().request(
                "POST", "/api/agents/jobs/\(id)/apply", body: .object(["mode": .string(patch ? "patch" : "merge")]), timeoutSeconds: 660)
            if reply.status == 409, reply.body["code"]?.stringValue == "apply_conflict" {
                printError("agentgate: " + TerminalText.escaped(reply.body["error"]?.stringValue ?? "conflict"))
                for file in reply.body["conflicts"]?.arrayValue ?? [] { printError("  " + TerminalText.escaped(file.stringValue ?? "")) }
                printError(
                    "agentgate: merge the job's branch yourself (git merge agentgate/…) and resolve it, or run a follow-up on it "
                        + "(agentgate run … --worktree-of \(id)); then agentgate discard \(id)")
                return 9
            }
            guard (200..<300).contains(reply.status) else { throw ClientFailure.http(reply.status, reply.body) }
            let applied = reply.body["applied"] ?? reply.body["job"]?["worktree"]
            let repository = applied?["repository"]?.stringValue ?? "the checkout"
            let summary = applied?["summary"]?.stringValue ?? "the change"
            let onto = applied?["appliedTo"]?.stringValue.map { " on \($0)" } ?? ""
            print(TerminalText.escaped(
                "applied job \(id) to \(repository)\(onto) (\(patch ? "as uncommitted changes" : "merged")): \(summary)"))
            return 0
        }
    }
}

/// `agentgate discard`: remove a job's worktree and branch.
struct DiscardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discard", abstract: "Remove a worktree job's worktree and branch (its change is gone unless applied).",
        discussion: "Exit status: 0 discarded, 5 no such job, 7 no worktree or a job still works in it.")

    @Argument(help: "The job id.")
    var id: String

    @OptionGroup var client: ClientOptions

    func validate() throws { try validateJobID(id) }

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let answer = try client.api().request("POST", "/api/agents/jobs/\(id)/discard", timeoutSeconds: 660)
            guard (200..<300).contains(answer.status) else { throw ClientFailure.http(answer.status, answer.body) }
            let reply = answer.body
            let worktree = reply["job"]?["worktree"]
            print(TerminalText.escaped(
                "discarded \(worktree?["path"]?.stringValue ?? "the worktree") and branch \(worktree?["branch"]?.stringValue ?? "")"))
            return 0
        }
    }
}
