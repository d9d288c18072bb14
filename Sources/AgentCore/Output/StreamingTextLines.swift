/// Assistant text that arrives in pieces (Claude `--include-partial-messages` deltas), turned
/// into the same log lines `LogLine.lines` makes of the whole text: each line as soon as its
/// newline arrives, and the unfinished last line as `partial`, which viewers show live and the
/// next line replaces. Stored history therefore holds each line once, whether or not the text
/// was streamed, and a job killed mid-answer keeps what it had said.
///
/// Pure state: pieces in, lines out.
struct StreamingTextLines: Sendable {
    /// A line longer than this is given out in pieces, so an answer without newlines cannot
    /// grow the partial line (and every viewer's copy of it) without bound.
    static let maxLineBytes = 8 * 1024

    let kind: LogLine.Kind
    let prefix: String
    /// The text after the last newline.
    private(set) var pending = ""
    /// Bytes of text received so far, to find where the complete text goes on.
    private(set) var receivedBytes = 0
    /// Blank lines are given out only once a non-blank line follows, as `LogLine.lines`
    /// drops blank lines at the edges.
    private var heldBlankLines = 0
    private var hasGivenLine = false
    /// Lines given out so far, blank ones included.
    private var givenLines = 0

    init(kind: LogLine.Kind = .text, prefix: String = "") {
        self.kind = kind
        self.prefix = prefix
    }

    /// The unfinished line, as viewers show it while it streams.
    var partial: LogLine? {
        pending.isEmpty ? nil : LogLine(.stdout, kind, prefix + pending)
    }

    /// Adds a piece of text; returns the lines it completed.
    mutating func append(_ piece: String) -> [LogLine] {
        receivedBytes += piece.utf8.count
        guard piece.utf8.contains(0x0A) else {
            pending += piece
            return pending.utf8.count > Self.maxLineBytes ? line(take(&pending)) : releaseBlankLines()
        }
        var lines: [LogLine] = []
        let parts = TextLines.split(pending + piece)
        for part in parts.dropLast() { lines += line(part) }
        pending = parts.last ?? ""
        if pending.utf8.count > Self.maxLineBytes { lines += line(take(&pending)) }
        return lines + releaseBlankLines()
    }

    /// The complete text is known: the lines of it not given out yet. The complete text is
    /// what counts: if it does not go on from the pieces (an agent that trims its answer), its
    /// lines after those already given replace the unfinished one.
    mutating func complete(with text: String) -> [LogLine] {
        guard receivedBytes <= text.utf8.count else {
            pending = ""
            let lines = Array(LogLine.lines(kind, text, prefix: prefix).dropFirst(givenLines))
            givenLines += lines.count
            return lines
        }
        return append(String(decoding: text.utf8.dropFirst(receivedBytes), as: UTF8.self)) + finish()
    }

    /// The text ended: the unfinished line, if any, as a line of its own.
    mutating func finish() -> [LogLine] {
        let rest = pending
        pending = ""
        let lines = rest.isEmpty ? [] : line(rest)
        heldBlankLines = 0
        return lines
    }

    /// Blank lines held back go out as soon as the next line has begun: they are inside the
    /// text then, and a viewer must see the paragraph break before the new paragraph's
    /// in-progress line (newcomer trial: the break came only with the next finished line).
    private mutating func releaseBlankLines() -> [LogLine] {
        guard heldBlankLines > 0, !pending.isEmpty else { return [] }
        let lines = Array(repeating: LogLine(.stdout, kind, prefix), count: heldBlankLines)
        heldBlankLines = 0
        givenLines += lines.count
        return lines
    }

    private mutating func line(_ text: String) -> [LogLine] {
        if text.isEmpty {
            if hasGivenLine { heldBlankLines += 1 }
            return []
        }
        var lines = Array(repeating: LogLine(.stdout, kind, prefix), count: heldBlankLines)
        heldBlankLines = 0
        hasGivenLine = true
        lines.append(LogLine(.stdout, kind, prefix + text))
        givenLines += lines.count
        return lines
    }

    private func take(_ text: inout String) -> String {
        defer { text = "" }
        return text
    }
}
