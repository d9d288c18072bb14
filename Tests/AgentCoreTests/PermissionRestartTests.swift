import EventLoop
import Foundation
import Glibc
import Testing
import TestSupport

@testable import AgentCore

/// A Claude Code permission question open when the server stops (issue 17): the next server
/// finds it in the job's log and opens it again, for a person to answer or for the operator's
/// default once its time is up; the CLI, waiting on its stdin, gets the answer either way.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PermissionRestartTests {
    /// Asks to write a file (`control_request` `can_use_tool`), then says what it was answered.
    static let askingAgent = #"""
        IFS= read -r line
        echo '{"type":"system","subtype":"init","session_id":"s1","model":"fake"}'
        echo '{"type":"control_request","request_id":"req-1","request":{"subtype":"can_use_tool","tool_name":"Write","input":{"file_path":"notes.txt","content":"hi"}}}'
        IFS= read -r answer
        behavior=$(printf '%s' "$answer" | sed 's/.*"behavior":"\([a-z]*\)".*/\1/')
        case "$answer" in *'"updatedInput":{"file_path":"notes.txt"'*) input=with-input ;; *) input=no-input ;; esac
        echo "{\"type\":\"assistant\",\"message\":{\"id\":\"a\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"answered $behavior $input\"}]}}"
        echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"s1"}'
        while IFS= read -r more; do :; done
        """#

    static func engine(data: TemporaryDirectory, agents: FakeAgents, timeout: Int) throws -> EngineHarness {
        try EngineHarness(
            agents: agents, data: data,
            configure: {
                $0.policy.agentPermissions = .ask
                $0.policy.permissionTimeoutSeconds = timeout
            },
            runner: { loop, path in
                SupervisorRunner(
                    loop: loop, supervisorExecutable: SupervisorRunnerTests.supervisor, jobsDirectory: path + "/jobs", graceMilliseconds: 300,
                    containment: JobContainment(useCgroups: false))
            })
    }

    /// Launches the asking agent and stops "the server" once its question is open; returns
    /// the next server, the question re-opened.
    static func restartWithAQuestionOpen(timeout: Int) throws -> (EngineHarness, EngineHarness, String) {
        let agents = FakeAgents()
        let data = TemporaryDirectory("agentgate-permission-restart")
        let first = try engine(data: data, agents: agents, timeout: timeout)
        let job = try first.launch(script: askingAgent, prompt: "write the notes")
        #expect(first.spin(until: { first.events(of: job.id).contains { if case .permission = $0.payload { true } else { false } } }))
        first.manager.flushLogs()
        let second = try engine(data: data, agents: agents, timeout: timeout)
        _ = try second.manager.recover()
        #expect(second.manager.adopted.map(\.id) == [job.id])
        return (first, second, job.id)
    }

    @Test func aQuestionOpenAcrossARestartIsAnsweredByAPersonOnTheNextServer() throws {
        let (first, second, id) = try Self.restartWithAQuestionOpen(timeout: 60)
        defer { withExtendedLifetime(first) {} }
        #expect(second.logLines(of: id).contains { $0.text == "1 permission question(s) still open after the restart" })
        #expect(throws: JobManager.PermissionError.unknownOption("maybe")) { try second.manager.answerPermission(id, request: "req-1", optionId: "maybe") }
        try second.manager.answerPermission(id, request: "req-1", optionId: "allow")
        let done = try #require(second.waitForCompletion(id))
        #expect(done.status == .done)
        #expect(second.logLines(of: id).contains { $0.text == "answered allow with-input" })
        #expect(second.logLines(of: id).contains { $0.text == "permission for Write: allowed by a person" })
        // Answered: no second answer.
        #expect(throws: JobManager.PermissionError.self) { try second.manager.answerPermission(id, request: "req-1", optionId: "deny") }
    }

    @Test func aQuestionOpenAcrossARestartGetsTheDefaultWhenItsTimeIsUp() throws {
        let (first, second, id) = try Self.restartWithAQuestionOpen(timeout: 2)
        defer { withExtendedLifetime(first) {} }
        let done = try #require(second.waitForCompletion(id))
        #expect(done.status == .done)
        #expect(second.logLines(of: id).contains { $0.text == "answered deny no-input" })
        #expect(second.logLines(of: id).contains { $0.text.hasSuffix("denied by the operator's default (no answer in time)") })
    }
}
