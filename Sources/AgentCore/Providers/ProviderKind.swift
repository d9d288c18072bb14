/// The agents agentgate knows how to drive.
public enum ProviderKind: String, Sendable, CaseIterable {
    case claude, codex, opencode, goose
    /// An explicit argv; only when the operator passed `--allow-custom-commands`.
    case custom

    /// The CLIs looked for on PATH.
    public static let detectable: [ProviderKind] = [.claude, .codex, .opencode, .goose]

    public var displayName: String {
        switch self {
        case .claude: "Claude Code"
        case .codex: "Codex CLI"
        case .opencode: "opencode"
        case .goose: "goose"
        case .custom: "Custom command"
        }
    }

    public var executableName: String { rawValue }

    /// opencode and goose ship an Agent Client Protocol mode (`<cli> acp`).
    public var hasACPMode: Bool { self == .opencode || self == .goose }

    public var outputFormat: OutputFormat {
        switch self {
        case .claude: .claudeStreamJSON
        case .codex: .codexJSON
        case .opencode: .opencodeJSON
        case .goose: .gooseStreamJSON
        case .custom: .auto
        }
    }
}
