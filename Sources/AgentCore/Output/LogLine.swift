/// One human-readable line of a job's log, as viewers show it.
public struct LogLine: Sendable, Equatable {
    /// Where the line came from: the agent's stdout, its stderr, agentgate itself, or a
    /// user's message to the agent (a follow-up in a conversation).
    public enum Stream: String, Sendable {
        case stdout, stderr, system, user
    }

    /// What the line is, so viewers can style tool calls apart from assistant text.
    public enum Kind: String, Sendable {
        /// Assistant prose.
        case text
        /// A tool call the agent made (`→ Bash: ls -la`).
        case tool
        /// A tool's result (`← …`).
        case toolResult = "tool_result"
        case thinking
        case error
        /// Session, model, usage and other bookkeeping.
        case info
        /// The run's final summary line.
        case result
        /// A line that was not JSON, passed through verbatim.
        case raw
    }

    public var stream: Stream
    public var kind: Kind
    public var text: String

    public init(_ stream: Stream, _ kind: Kind, _ text: String) {
        self.stream = stream
        self.kind = kind
        self.text = text
    }

    /// The line as plain-text viewers print it: stderr and agentgate's own lines marked.
    public var displayText: String {
        switch stream {
        case .stdout: text
        case .stderr: "[stderr] " + text
        case .system: "[agentgate] " + text
        case .user: "› " + text
        }
    }

    /// Splits multi-line text into one log line per text line (empty edge lines dropped).
    public static func lines(_ kind: Kind, _ text: String, stream: Stream = .stdout, prefix: String = "") -> [LogLine] {
        var parts = TextLines.split(text)
        while parts.first?.isEmpty == true { parts.removeFirst() }
        while parts.last?.isEmpty == true { parts.removeLast() }
        return parts.map { LogLine(stream, kind, prefix + $0) }
    }
}

/// Line splitting on bytes: Swift's `Character` treats "\r\n" as one character, so
/// `split(separator: "\n")` would leave CRLF lines joined.
enum TextLines {
    /// Splits on LF and CRLF; a lone CR stays (terminals and agents use it for progress).
    static func split(_ text: String) -> [String] {
        // Most agent text is one line: return it as it is, without copying byte by byte.
        var probe = text
        if !probe.withUTF8({ $0.count > 0 && memchr($0.baseAddress!, 0x0A, $0.count) != nil }) { return [text] }
        var lines: [String] = []
        var current: [UInt8] = []
        for byte in text.utf8 {
            if byte == 0x0A {
                if current.last == 0x0D { current.removeLast() }
                lines.append(String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
            } else {
                current.append(byte)
            }
        }
        lines.append(String(decoding: current, as: UTF8.self))
        return lines
    }
}

/// Shortening for one-line summaries of tool input and output.
enum Summary {
    /// The first line of `text`, cut to `limit` characters, with a note of what was left out.
    static func firstLine(_ text: String, limit: Int = 160) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = TextLines.split(trimmed)
        var first = String(lines.first ?? "")
        var suffix = ""
        if first.count > limit {
            first = String(first.prefix(limit)) + "…"
        }
        if lines.count > 1 {
            suffix = " (+\(lines.count - 1) line\(lines.count == 2 ? "" : "s"))"
        }
        return first + suffix
    }

    static func oneLine(_ text: String, limit: Int = 160) -> String {
        let flat = TextLines.split(text).joined(separator: " ⏎ ")
        return flat.count > limit ? String(flat.prefix(limit)) + "…" : flat
    }

    static func compactJSON(_ value: JSONValue, limit: Int = 120) -> String {
        oneLine(JSONWriter.string(value), limit: limit)
    }
}

import Foundation
