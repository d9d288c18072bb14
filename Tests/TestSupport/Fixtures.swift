import Foundation

/// Paths into the repository and the shared fixtures beside it.
public enum Fixtures {
    /// The package root (this file is Tests/TestSupport/Fixtures.swift).
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `../shared/fixtures/agents` beside the project root.
    public static let agentTranscripts: String = {
        URL(fileURLWithPath: packageRoot).deletingLastPathComponent().appendingPathComponent("shared/fixtures/agents").path
    }()

    /// Raw stream-json of the real Claude Code CLI, recorded by `Tests/claude/claude_test.py
    /// --record` (the CLI run against the fake Messages API on each scripted scenario).
    public static let realClaudeTranscripts = packageRoot + "/Tests/claude/fixtures"

    public static func transcript(_ name: String) -> String {
        (name.hasPrefix("claude-real-") ? realClaudeTranscripts : agentTranscripts) + "/" + name
    }

    /// Every recorded agent stdout transcript (JSONL and the goose banner capture), shared
    /// and recorded here.
    public static var transcriptNames: [String] {
        let shared = (try? FileManager.default.contentsOfDirectory(atPath: agentTranscripts)) ?? []
        let real = (try? FileManager.default.contentsOfDirectory(atPath: realClaudeTranscripts)) ?? []
        return (shared.filter { ($0.hasSuffix(".jsonl") || $0.hasPrefix("goose-run-stdout")) } + real.filter { $0.hasSuffix(".jsonl") }).sorted()
    }

    /// The provider whose output a transcript holds, from its file name.
    public static func provider(ofTranscript name: String) -> String? {
        for provider in ["claude", "codex", "opencode", "goose"] where name.hasPrefix(provider + "-") {
            return provider
        }
        // ACP exchanges, as agentgate's ACP client writes them for its ACP providers.
        return name.hasPrefix("acp-") ? "opencode-acp" : nil
    }

    public static var goldenDirectory: String { packageRoot + "/Tests/AgentCoreTests/Golden" }
}
