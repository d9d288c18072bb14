/// What one known agent CLI looks like on this machine.
public struct ProviderInfo: Sendable, Equatable {
    public var id: String
    public var name: String
    public var available: Bool
    public var path: String?
    public var version: String?
    /// Whether `<cli> acp --help` exits 0 (opencode and goose only; nil for the others).
    public var acp: Bool?

    public var json: JSONValue {
        .object([
            "id": .string(id), "name": .string(name), "available": .bool(available),
            "path": path.map(JSONValue.string) ?? .null, "version": version.map(JSONValue.string) ?? .null,
            "acp": acp.map(JSONValue.bool) ?? .null,
            // The launch fields it takes besides provider, prompt, cwd, label and env.
            "fields": AgentProvider.named(id)?.fieldsJSON ?? .array([]),
        ])
    }
}

/// The result of probing: `{mode, providers, available}`.
public struct AgentCapabilities: Sendable, Equatable {
    /// Where jobs run: "local" (this machine). Remote runners will add other modes.
    public var mode: String
    public var providers: [ProviderInfo]
    /// Ids of the providers a launch may name (plus "custom" when the operator allowed it).
    public var available: [String]
    /// When this probe ran (ms since the epoch).
    public var probedAt: Int

    public var json: JSONValue {
        .object([
            "mode": .string(mode), "providers": .array(providers.map(\.json)),
            "available": .array(available.map(JSONValue.string)), "probedAt": .int(probedAt),
        ])
    }
}
