import EventLoop
import Foundation
import TestSupport
import Testing

@testable import AgentCore

@Suite(.processExclusive, .timeLimit(.minutes(20)))
struct CapabilityTests {
    private func detector(_ agents: FakeAgents, custom: Bool = false) -> AgentDetector {
        AgentDetector(
            configuration: .init(path: agents.searchPath, environment: ["PATH=\(agents.searchPath)"], allowCustomCommands: custom))
    }

    @Test func findsInstalledCLIsWithTheirVersionsAndACPSupport() {
        let agents = FakeAgents(["claude", "codex", "opencode", "goose"], acp: ["opencode"])
        let capabilities = detector(agents).refresh()
        #expect(capabilities.mode == "local")
        // opencode's `acp --help` succeeds: its ACP mode is a provider of its own; goose's fails.
        #expect(capabilities.available == ["claude", "codex", "opencode", "goose", "opencode-acp"])
        let byID = Dictionary(uniqueKeysWithValues: capabilities.providers.map { ($0.id, $0) })
        #expect(byID["claude"]?.version == "2.1.12 (Claude Code)")
        #expect(byID["claude"]?.path == agents.directory.file("claude"))
        #expect(byID["claude"]?.acp == nil)
        #expect(byID["codex"]?.version == "codex-cli 0.154.0")
        #expect(byID["opencode"]?.acp == true)
        #expect(byID["goose"]?.acp == false)
        #expect(byID["opencode-acp"]?.path == agents.directory.file("opencode") && byID["opencode-acp"]?.name == "opencode (ACP)")
        #expect(byID["goose-acp"]?.available == false && byID["goose-acp"]?.path == agents.directory.file("goose"))
    }

    @Test func missingCLIsAreListedAsUnavailable() {
        let agents = FakeAgents(["codex"])
        let capabilities = detector(agents, custom: true).refresh()
        #expect(capabilities.available == ["codex", "custom"])
        let claude = capabilities.providers.first { $0.id == "claude" }
        #expect(claude == ProviderInfo(id: "claude", name: "Claude Code", available: false))
    }

    @Test func aCLIThatHangsOnVersionDoesNotHangTheProbe() {
        let agents = FakeAgents(["codex"])
        agents.installRaw("claude", "#!/bin/sh\nsleep 30 &\nexec sleep 30\n")
        agents.installRaw("goose", "#!/bin/sh\nkill -SEGV $$\n")
        let start = MonotonicClock.nanoseconds()
        let capabilities = detector(agents).refresh()
        let elapsed = (MonotonicClock.nanoseconds() - start) / 1_000_000
        #expect(elapsed < 4_000, "probe took \(elapsed) ms")
        #expect(capabilities.available == ["codex"])
        #expect(capabilities.providers.first { $0.id == "claude" }?.path != nil)
        #expect(capabilities.providers.first { $0.id == "goose" }?.available == false)
    }

    @Test func searchFollowsPathOrderAndNeedsTheExecutableBit() {
        let first = TemporaryDirectory()
        let second = TemporaryDirectory()
        first.write("claude", "#!/bin/sh\n", mode: 0o644)  // not executable: skipped
        second.write("claude", "#!/bin/sh\n", mode: 0o755)
        try? FileManager.default.createDirectory(atPath: first.file("codex"), withIntermediateDirectories: true)
        #expect(ExecutableSearch.find("claude", path: "\(first.path):\(second.path)") == second.file("claude"))
        #expect(ExecutableSearch.find("codex", path: first.path) == nil)  // a directory is not a program
        #expect(ExecutableSearch.find("claude", path: nil) == nil)
    }

    @Test func resultsAreCachedUntilRefreshed() {
        let agents = FakeAgents(["claude"])
        let detector = detector(agents)
        #expect(detector.current().available == ["claude"])
        agents.install("codex", version: "codex-cli 9")
        #expect(detector.current().available == ["claude"])
        #expect(detector.refresh().available == ["claude", "codex"])
    }

    @Test func probeOutcomeReportsTimeoutsAndSpawnErrors() {
        let timedOut = ProbeCommand.run(executable: "/bin/sleep", arguments: ["10"], environment: [], timeoutMilliseconds: 100)
        #expect(timedOut.timedOut)
        #expect(timedOut.status == .signaled(9))
        let missing = ProbeCommand.run(executable: "/nonexistent", arguments: [], environment: [], timeoutMilliseconds: 100)
        #expect(missing.spawnError == "No such file or directory")
    }
}
