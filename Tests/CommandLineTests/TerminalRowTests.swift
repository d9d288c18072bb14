import Testing

@testable import agentgate

/// The in-progress line drawn on a terminal must fit one row, or `\r` and erase-line leave
/// the rows it wrapped onto behind (attacker trial: CJK text left 19 garbage rows).
struct TerminalRowTests {
    @Test func wideCharactersCountTwoColumnsAndTheLineFitsOneRow() {
        let cjk = String(repeating: "漢", count: 60)
        let row = LogPrinter.oneRow(cjk, columns: 40)
        #expect(row.hasPrefix("…"))
        #expect(row.reduce(0) { $0 + LogPrinter.cellWidth($1) } <= 39)
        #expect(LogPrinter.oneRow("short", columns: 40) == "short")
    }

    @Test func tabsAndControlsCannotMoveTheCursor() {
        let row = LogPrinter.oneRow("a\tb\u{1B}[2Jc\u{8}", columns: 80)
        #expect(!row.contains("\t") && !row.contains("\u{1B}") && !row.contains("\u{8}"))
    }
}
