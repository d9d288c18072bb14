/// `→ Bash: ls -la`, `→ Edit: Sources/x.swift`: the one-line form of a tool call, shared by
/// every agent whose tools take JSON input.
enum ToolCallSummary {
    /// The input field that best names what a tool call does, by common tool names.
    private static let keyFields = [
        "command", "cmd", "file_path", "filePath", "path", "notebook_path", "pattern", "url", "query",
        "description", "prompt", "skill",
    ]

    static func line(name: String, input: JSONValue?) -> String {
        "→ \(name): \(describe(input))"
    }

    static func describe(_ input: JSONValue?) -> String {
        guard let input else { return "" }
        if case .object = input {
            for key in keyFields {
                if let value = input[key]?.stringValue { return Summary.oneLine(value) }
                if let parts = input[key]?.arrayValue {
                    return Summary.oneLine(parts.compactMap(\.stringValue).joined(separator: " "))
                }
            }
            if let todos = input["todos"]?.arrayValue { return "\(todos.count) items" }
            if case .object(let members) = input, members.isEmpty { return "" }
        }
        if let text = input.stringValue { return Summary.oneLine(text) }
        return Summary.compactJSON(input)
    }
}
