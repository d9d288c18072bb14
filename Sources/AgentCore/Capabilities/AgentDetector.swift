import Foundation
import Synchronization

/// Detects the known agent CLIs: PATH search, `--version` with a deadline, and ACP support
/// for the CLIs that have an `acp` mode. Probes run in parallel, so a full probe takes about
/// one timeout at worst. Results are cached until `refresh()`.
public final class AgentDetector: Sendable {
    public struct Configuration: Sendable {
        /// The PATH to search (the server's own by default).
        public var path: String?
        public var environment: [String]
        /// 2 s: a healthy CLI answers `--version` in well under a second.
        public var timeoutMilliseconds: Int = 2_000
        /// Adds "custom" to `available`.
        public var allowCustomCommands = false

        public init(path: String?, environment: [String], allowCustomCommands: Bool = false) {
            self.path = path
            self.environment = environment
            self.allowCustomCommands = allowCustomCommands
        }

        public static func fromProcessEnvironment(allowCustomCommands: Bool = false) -> Configuration {
            let environment = ProcessInfo.processInfo.environment
            return Configuration(
                path: environment["PATH"], environment: environment.map { "\($0.key)=\($0.value)" }.sorted(),
                allowCustomCommands: allowCustomCommands)
        }
    }

    public let configuration: Configuration
    private let cache = Mutex<AgentCapabilities?>(nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// The cached capabilities, probing first if there are none.
    public func current() -> AgentCapabilities {
        if let cached = cache.withLock({ $0 }) { return cached }
        return refresh()
    }

    /// Probes again and replaces the cache.
    @discardableResult
    public func refresh() -> AgentCapabilities {
        let kinds = AgentProvider.detectable
        let results = Mutex<[ProviderInfo?]>(Array(repeating: nil, count: kinds.count))
        DispatchQueue.concurrentPerform(iterations: kinds.count) { index in
            let info = probe(kinds[index])
            results.withLock { $0[index] = info }
        }
        var providers = results.withLock { $0.compactMap { $0 } }
        // ACP providers: the CLI's own probe says whether its acp mode exists.
        for kind in AgentProvider.all {
            guard let base = kind.acpModeOf, let found = providers.first(where: { $0.id == base }) else { continue }
            var info = ProviderInfo(id: kind.id, name: kind.name, available: found.available && found.acp == true)
            info.path = found.path
            info.version = found.version
            info.acp = found.acp
            providers.append(info)
        }
        var available = providers.filter(\.available).map(\.id)
        if configuration.allowCustomCommands { available.append(AgentProvider.customID) }
        let capabilities = AgentCapabilities(
            mode: "local", providers: providers, available: available,
            probedAt: Int(Date().timeIntervalSince1970 * 1000))
        cache.withLock { $0 = capabilities }
        return capabilities
    }

    private func probe(_ kind: AgentProvider) -> ProviderInfo {
        var info = ProviderInfo(id: kind.id, name: kind.name, available: false)
        guard let executable = kind.executableName, let path = ExecutableSearch.find(executable, path: configuration.path) else { return info }
        info.path = path
        let version = ProbeCommand.run(
            executable: path, arguments: ["--version"], environment: configuration.environment,
            timeoutMilliseconds: configuration.timeoutMilliseconds)
        // Found but broken (crashes, hangs) is reported, not hidden: available stays false.
        info.available = version.status == .exited(0)
        info.version = version.status == .exited(0) ? version.firstLine : nil
        if kind.hasACPMode {
            let acp = ProbeCommand.run(
                executable: path, arguments: ["acp", "--help"], environment: configuration.environment,
                timeoutMilliseconds: configuration.timeoutMilliseconds)
            info.acp = acp.status == .exited(0)
        }
        return info
    }
}
