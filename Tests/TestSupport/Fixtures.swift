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

    public static func transcript(_ name: String) -> String { agentTranscripts + "/" + name }

    /// Every recorded agent stdout transcript (JSONL and the goose banner capture).
    public static var transcriptNames: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: agentTranscripts)) ?? []
        return names.filter { ($0.hasSuffix(".jsonl") || $0.hasPrefix("goose-run-stdout")) }.sorted()
    }

    /// The provider whose output a transcript holds, from its file name.
    public static func provider(ofTranscript name: String) -> String? {
        for provider in ["claude", "codex", "opencode", "goose"] where name.hasPrefix(provider + "-") {
            return provider
        }
        return nil
    }

    public static var goldenDirectory: String { packageRoot + "/Tests/AgentCoreTests/Golden" }
}
