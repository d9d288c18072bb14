/// Text from agents and from the server made safe to print. A terminal acts on control
/// characters: an agent (or a prompt-injected web page it read) could write an OSC 52
/// clipboard write, change the window title, or use CR and backspace to overwrite a log
/// line with a fake one. So every C0 control but tab and newline, DEL, and every C1
/// control (U+0080–U+009F, which some terminals treat like ESC [ for U+009B) is shown as
/// `\xHH`, its code point in hex: ESC is `\x1b`, CR `\x0d`, BEL `\x07`, CSI `\x9b`; an
/// invisible layout control (a bidi override that would reorder the rest of the line, a line
/// separator, a BOM, a tag character…) is `\u202e`. A
/// backslash already in the text is left as it is. The CLI prints through it (`--raw` does
/// not), and so does the `format=text` WebSocket stream, which websocat shows on a terminal.
public enum TerminalText {
    public static func escaped(_ text: String) -> String {
        // Plain ASCII without controls is the common case; anything else is looked at.
        guard text.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if needsEscape(scalar) {
                let hex = String(scalar.value, radix: 16)
                result.append(contentsOf: ("\\x" + (hex.count < 2 ? "0" : "") + hex).unicodeScalars)
            } else if scalar.isLayoutControl {
                result.append(contentsOf: ("\\u" + String(scalar.value, radix: 16)).unicodeScalars)
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar.isControlCharacter && scalar != "\t" && scalar != "\n"
    }
}
