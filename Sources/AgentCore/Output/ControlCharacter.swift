extension Unicode.Scalar {
    /// A C0 control, DEL or a C1 control (U+0080–U+009F): what a terminal acts on instead of
    /// showing (ESC, CR, BEL, U+009B as CSI…). Launch requests refuse them and the CLI shows
    /// them escaped.
    public var isControlCharacter: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value)
    }
}

extension Unicode.Scalar {
    /// An invisible character that changes how the text around it is shown: a bidi embedding,
    /// override, isolate or mark (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C),
    /// which reorders what follows ("Trojan Source"); a line or paragraph separator (U+2028,
    /// U+2029), which some viewers break lines at; a zero-width space or BOM (U+200B, U+FEFF).
    /// Short launch fields refuse them and the CLI shows them escaped. (Zero-width joiners
    /// are left alone: emoji and several scripts need them.)
    public var isLayoutControl: Bool {
        switch value {
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C, 0x2028, 0x2029, 0x200B, 0xFEFF: true
        default: false
        }
    }
}
