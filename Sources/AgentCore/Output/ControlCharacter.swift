extension Unicode.Scalar {
    /// A C0 control, DEL or a C1 control (U+0080–U+009F): what a terminal acts on instead of
    /// showing (ESC, CR, BEL, U+009B as CSI…). Launch requests refuse them and the CLI shows
    /// them escaped.
    public var isControlCharacter: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value)
    }
}

extension Unicode.Scalar {
    /// A bidirectional embedding, override or isolate (U+202A–U+202E, U+2066–U+2069): it
    /// reorders the text shown after it, so a label or a log line can read differently from
    /// what it holds ("Trojan Source"). Short launch fields refuse them and the CLI shows them
    /// escaped.
    public var isBidiControl: Bool {
        (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
    }
}
