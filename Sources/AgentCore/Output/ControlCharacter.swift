extension Unicode.Scalar {
    /// A C0 control, DEL or a C1 control (U+0080–U+009F): what a terminal acts on instead of
    /// showing (ESC, CR, BEL, U+009B as CSI…). Launch requests refuse them and the CLI shows
    /// them escaped.
    public var isControlCharacter: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value)
    }
}
