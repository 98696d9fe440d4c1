/// A decoded `Method`: its flags and undecoded body.
public struct AMLMethod: Equatable, Sendable {
    /// MethodFlags bits 2:0.
    public var argumentCount: Int
    /// MethodFlags bit 3.
    public var isSerialized: Bool
    /// MethodFlags bits 7:4.
    public var syncLevel: Int
    /// The TermList, as bytes.
    public var body: [UInt8]

    /// The value returned by a body that is exactly `Return(data object)`, such as the usual
    /// `Method(_STA) { Return (0x0F) }`; `nil` for anything that would need an interpreter.
    public var constantReturnValue: AMLValue? {
        guard body.first == AMLOpcode.return else { return nil }
        var cursor = AMLCursor(body, from: 1, depthLimit: AMLDecoder.maximumDepth)
        guard let value = try? cursor.dataObject(depth: 0), cursor.isAtEnd else { return nil }
        return value
    }
}
