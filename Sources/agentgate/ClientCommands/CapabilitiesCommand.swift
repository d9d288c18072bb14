import AgentCore
import ArgumentParser

/// `agentgate capabilities`: which agent CLIs the server found.
struct CapabilitiesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "capabilities", abstract: "List the agent CLIs the server can run.")

    @Flag(help: "Probe again (runs each CLI's --version on the server).")
    var refresh = false

    @Flag(help: "The JSON answer.")
    var json = false

    @OptionGroup var client: ClientOptions

    func run() throws {
        try runClient { () throws(ClientFailure) -> Int32 in
            let api = try client.api()
            let reply = refresh ? try api.call("POST", "/api/agents/capabilities/refresh") : try api.call("GET", "/api/agents/capabilities")
            if json {
                print(String(decoding: JSONWriter.serialize(reply), as: UTF8.self))
                return 0
            }
            for provider in reply["providers"]?.arrayValue ?? [] {
                let available = provider["available"]?.boolValue ?? false
                var line = (available ? "✓ " : "✗ ") + JobTable.pad(provider["id"]?.stringValue ?? "?", 10)
                line += provider["name"]?.stringValue ?? ""
                if let version = provider["version"]?.stringValue { line += " — \(version)" }
                if let path = provider["path"]?.stringValue { line += " (\(path))" }
                if provider["acp"]?.boolValue == true { line += " · acp" }
                print(TerminalText.escaped(line))
                // The launch fields it takes, as the server describes them (run's --model,
                // --effort… are checked against these).
                let fields = (provider["fields"]?.arrayValue ?? []).compactMap { field -> String? in
                    guard let name = field["name"]?.stringValue else { return nil }
                    let values = (field["values"]?.arrayValue ?? []).compactMap(\.stringValue)
                    return values.isEmpty ? name : "\(name) (\(values.joined(separator: "|")))"
                }
                if !fields.isEmpty { print(TerminalText.escaped("  fields: " + fields.joined(separator: ", "))) }
            }
            let available = (reply["available"]?.arrayValue ?? []).compactMap(\.stringValue)
            print("available: " + (available.isEmpty ? "none" : available.joined(separator: ", ")))
            // The operator's launch profiles (run --profile NAME).
            for profile in reply["profiles"]?.arrayValue ?? [] {
                var line = "profile " + JobTable.pad(profile["name"]?.stringValue ?? "?", 12) + (profile["provider"]?.stringValue ?? "")
                if case .object(let fields)? = profile["fields"], !fields.isEmpty {
                    line += " · " + fields.map { "\($0.key) \($0.value.stringValue ?? String(decoding: JSONWriter.serialize($0.value), as: UTF8.self))" }.joined(separator: ", ")
                }
                if let mode = profile["permissionMode"]?.stringValue { line += " · permission mode \(mode)" }
                if let description = profile["description"]?.stringValue { line += " — \(description)" }
                print(TerminalText.escaped(line))
            }
            return 0
        }
    }
}
