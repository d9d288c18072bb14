import EventLoop
import Glibc
import Testing

@testable import AgentCore

/// The engine knows a job's process only through `JobRunner` and `AgentProcess`: a runner of
/// the test's own sees every start and stop, and one that cannot start a process fails the
/// job with its reason.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct JobRunnerTests {
    /// Local processes, with every call the engine makes noted.
    final class RecordingRunner: JobRunner {
        let local: LocalRunner
        var calls: [String] = []
        var refuse: SystemError?

        init(loop: EventLoop) {
            local = LocalRunner(loop: loop, containment: JobContainment(useCgroups: false))
        }

        var containmentDescription: String { "recorded " + local.containmentDescription }

        func process(forJob id: String, spec: SupervisedProcess.Spec) throws(SystemError) -> any AgentProcess {
            calls.append("process \(id)")
            if let refuse { throw refuse }
            return Recorded(try local.process(forJob: id, spec: spec), runner: self)
        }
    }

    final class Recorded: AgentProcess {
        let inner: any AgentProcess
        unowned let runner: RecordingRunner

        init(_ inner: any AgentProcess, runner: RecordingRunner) {
            self.inner = inner
            self.runner = runner
        }

        var identity: ProcessIdentity { inner.identity }
        var onStdout: ((UnsafeRawBufferPointer) -> Void)? {
            get { inner.onStdout }
            set { inner.onStdout = newValue }
        }
        var onStderr: ((UnsafeRawBufferPointer) -> Void)? {
            get { inner.onStderr }
            set { inner.onStderr = newValue }
        }
        var onNotice: ((String) -> Void)? {
            get { inner.onNotice }
            set { inner.onNotice = newValue }
        }
        var onExit: ((AgentCore.ExitStatus) -> Void)? {
            get { inner.onExit }
            set { inner.onExit = newValue }
        }
        func start() throws(SystemError) {
            runner.calls.append("start")
            try inner.start()
        }
        func terminate(graceMilliseconds: Int) {
            runner.calls.append("terminate \(graceMilliseconds)")
            inner.terminate(graceMilliseconds: graceMilliseconds)
        }
        func killNow() {
            runner.calls.append("killNow")
            inner.killNow()
        }
    }

    @Test func everyStartAndStopGoesThroughTheRunner() throws {
        var recording: RecordingRunner?
        let harness = try EngineHarness(runner: { loop, _ in
            let runner = RecordingRunner(loop: loop)
            recording = runner
            return runner
        })
        let runner = try #require(recording)
        #expect(harness.manager.jobRunner.containmentDescription.hasPrefix("recorded "))
        let quick = try harness.launch(script: "echo hello")
        #expect(harness.waitForCompletion(quick.id)?.status == .done)
        let slow = try harness.launch(script: "sleep 30")
        harness.spin(milliseconds: 100)
        try harness.manager.kill(slow.id)
        #expect(harness.waitForCompletion(slow.id)?.status == .killed)
        #expect(runner.calls == ["process \(quick.id)", "start", "process \(slow.id)", "start", "terminate 300"])
    }

    @Test func aRunnerThatCannotStartTheAgentFailsTheJobWithItsReason() throws {
        var recording: RecordingRunner?
        let harness = try EngineHarness(runner: { loop, _ in
            let runner = RecordingRunner(loop: loop)
            runner.refuse = SystemError("fork", errno: EAGAIN)
            recording = runner
            return runner
        })
        let job = try harness.launch(script: "echo never")
        let ended = try #require(harness.waitForCompletion(job.id))
        #expect(ended.status == .failed)
        #expect(ended.errorTail?.hasSuffix(": Resource temporarily unavailable") == true)
        #expect(recording?.calls == ["process \(job.id)"])
    }
}
