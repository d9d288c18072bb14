extension Unicode.Scalar {
    /// A C0 control, DEL or a C1 control (U+0080–U+009F): what a terminal acts on instead of
    /// showing (ESC, CR, BEL, U+009B as CSI…). Launch requests refuse them and the CLI shows
    /// them escaped.
    public var isControlCharacter: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value)
    }
}

extension Unicode.Scalar {
    /// An invisible character that changes how the text around it is shown or compared: a
    /// format character (Unicode category Cf — bidi embeddings, overrides, isolates and marks,
    /// which reorder what follows, "Trojan Source"; zero-width spaces and joiners; the BOM;
    /// soft hyphens; tag characters, used to smuggle text past a reader), a line or paragraph
    /// separator (U+2028, U+2029), or a Hangul filler (blank yet a letter). Short launch fields
    /// refuse them and the CLI shows them escaped. ZWJ and ZWNJ are left alone: emoji and
    /// several scripts need them.
    public var isLayoutControl: Bool {
        switch value {
        case 0x200C, 0x200D: return false
        case 0x2028, 0x2029, 0x115F, 0x1160, 0x3164, 0xFFA0: return true
        default: return properties.generalCategory == .format
        }
    }
}
