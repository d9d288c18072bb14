import Foundation

/// Fake agent CLIs: small shell scripts named `claude`, `codex`, … in a temporary directory
/// that tests put on PATH. Each answers `--version` like the real CLI and otherwise runs the
/// shell snippet in its `FAKE_SCRIPT` environment variable (set per job through the launch
/// request's env), so one script serves every behaviour: replaying a real transcript,
/// sleeping, ignoring SIGTERM, forking grandchildren, printing huge or invalid lines.
public final class FakeAgents: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public var path: String { directory.path }

    public static let versions = [
        "claude": "2.1.12 (Claude Code)",
        "codex": "codex-cli 0.154.0",
        "opencode": "1.0.150",
        "goose": "1.43.0",
    ]

    /// - Parameter acp: the CLIs whose `acp --help` succeeds.
    public init(_ names: [String] = ["claude", "codex", "opencode", "goose"], acp: Set<String> = ["opencode"]) {
        directory = TemporaryDirectory("agentgate-fake-agents")
        for name in names {
            install(name, version: Self.versions[name] ?? "1.0", acp: acp.contains(name))
        }
    }

    public func install(_ name: String, version: String, acp: Bool = false) {
        directory.write(
            name,
            """
            #!/bin/sh
            if [ "$1" = "--version" ]; then echo "\(version)"; exit 0; fi
            if [ "$1" = "acp" ] && [ "$2" = "--help" ]; then \(acp ? "echo 'ACP server'; exit 0" : "echo 'unknown command acp' >&2; exit 2"); fi
            if [ -n "$FAKE_ARGS_FILE" ]; then printf '%s\\n' "$@" > "$FAKE_ARGS_FILE"; fi
            if [ -n "$FAKE_STDIN_FILE" ]; then \(name == "claude" ? "head -n 1" : "cat") > "$FAKE_STDIN_FILE"; fi
            if [ -n "$FAKE_ENV_FILE" ]; then env > "$FAKE_ENV_FILE"; fi
            eval "$FAKE_SCRIPT"
            """, mode: 0o755)
    }

    /// The text of the user message a fake `claude` read from its stdin (one
    /// `--input-format stream-json` line; it keeps no more, since its stdin stays open).
    public static func claudeMessageText(_ line: String?) -> String? {
        guard let line, let value = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let message = value["message"] as? [String: Any], let content = message["content"] as? [[String: Any]]
        else { return nil }
        return content.first?["text"] as? String
    }

    /// Installs a script with arbitrary content under `name`.
    public func installRaw(_ name: String, _ content: String, mode: Int = 0o755) {
        directory.write(name, content, mode: mode)
    }

    /// A PATH with the fakes first, then the system's basics (sh, cat, sleep).
    public var searchPath: String { path + ":/usr/local/bin:/usr/bin:/bin" }

    /// `FAKE_SCRIPT` that replays a shared transcript to stdout.
    public static func replay(_ transcript: String) -> String {
        "cat '\(Fixtures.transcript(transcript))'"
    }
}
