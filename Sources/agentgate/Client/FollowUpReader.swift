import AgentCore
import Foundation

/// `run --interactive`: a thread that reads the user's lines from stdin while the job streams
/// on the main thread, and sends each as a follow-up message (`/answer REQUEST OPTION`
/// answers a permission question instead). It waits for the job to run before the first;
/// what the server refuses is said on stderr and the reading goes on.
enum FollowUpReader {
    static func start(api: ServerAPI, job: String) {
        let thread = Thread {
            waitUntilRunning(api: api, job: job)
            while let line = readLine(strippingNewline: true) {
                let text = line.trimmingCharacters(in: .whitespaces)
                guard !text.isEmpty else { continue }
                do throws(ClientFailure) {
                    if text.hasPrefix("/answer ") {
                        let words = text.split(separator: " ").map(String.init)
                        guard words.count == 3 else {
                            note("agentgate: /answer REQUEST OPTION (the request and options are in the question's line)")
                            continue
                        }
                        _ = try api.call("POST", "/api/agents/jobs/\(job)/permissions", body: .object(["request": .string(words[1]), "optionId": .string(words[2])]))
                    } else {
                        _ = try api.call("POST", "/api/agents/jobs/\(job)/messages", body: .object(["text": .string(line)]))
                    }
                } catch {
                    note("agentgate: not sent: \(error.message)")
                }
            }
        }
        thread.start()
    }

    /// Until the job runs (it may wait in the queue or prepare its worktree first), or ends.
    private static func waitUntilRunning(api: ServerAPI, job: String) {
        while true {
            let status = (try? api.call("GET", "/api/agents/jobs/\(job)"))?["job"]?["status"]?.stringValue
            if status == nil || status == "running" || JobStatus(rawValue: status ?? "")?.isFinished == true { return }
            usleep(200_000)
        }
    }

    private static func note(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
