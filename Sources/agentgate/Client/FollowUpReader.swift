import AgentCore
import Foundation
import Synchronization

/// Follow-ups the reader sent that resumed the finished job, and whether stdin has ended.
let followUpsResumed = Atomic<Int>(0)
let followUpInputEnded = Atomic<Bool>(false)

/// `run --interactive`: a thread that reads the user's lines from stdin while the job streams
/// on the main thread, and sends each as a follow-up message (`/answer REQUEST OPTION`
/// answers a permission question instead). It waits for the job to run before the first;
/// what the server refuses is said on stderr and the reading goes on. A line typed after the
/// job ended continues it (its agent's session resumed), and `run` follows it again.
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
                        let reply = try api.call("POST", "/api/agents/jobs/\(job)/messages", body: .object(["text": .string(line)]))
                        if reply["resumed"]?.boolValue == true { followUpsResumed.add(1, ordering: .sequentiallyConsistent) }
                    }
                } catch {
                    note("agentgate: not sent: \(error.message)")
                }
            }
            followUpInputEnded.store(true, ordering: .sequentiallyConsistent)
        }
        thread.start()
    }

    /// After the job ended: true once a typed line continued it (follow it again), false when
    /// stdin ends or Ctrl-C is pressed first.
    static func waitForContinuation(of job: Job, seen: inout Int) -> Bool {
        var told = false
        while true {
            let resumed = followUpsResumed.load(ordering: .sequentiallyConsistent)
            if resumed > seen {
                seen = resumed
                return true
            }
            if followUpInputEnded.load(ordering: .sequentiallyConsistent) || clientInterrupted.load(ordering: .relaxed) { return false }
            if !told {
                told = true
                note("agentgate: job \(job.id) \(job.status.rawValue); type a message to continue it (its session resumes), Ctrl-D to end")
            }
            usleep(100_000)
        }
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
