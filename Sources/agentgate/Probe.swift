import AgentCore
import ArgumentParser

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show which agent CLIs are installed.")

    @Flag(help: "Print the capabilities as JSON.")
    var json = false

    @Flag(help: "Include 'custom' among the available providers.")
    var allowCustomCommands = false

    func run() throws {
        let detector = AgentDetector(configuration: .fromProcessEnvironment(allowCustomCommands: allowCustomCommands))
        let capabilities = detector.refresh()
        if json {
            print(JSONWriter.string(capabilities.json))
            return
        }
        for provider in capabilities.providers {
            let mark = provider.available ? "✓" : "✗"
            var line = "\(mark) \(provider.id.padding(toLength: 9, withPad: " ", startingAt: 0)) \(provider.name)"
            if let version = provider.version { line += " — \(version)" }
            if let path = provider.path { line += " (\(path))" }
            if let acp = provider.acp { line += acp ? " · acp" : " · no acp" }
            if provider.path != nil && !provider.available { line += " · does not answer --version" }
            print(line)
        }
        print("available: " + (capabilities.available.isEmpty ? "(none)" : capabilities.available.joined(separator: ", ")))
    }
}

import Foundation
