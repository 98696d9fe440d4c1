/// Why AML bytes could not be decoded: where, and what was wrong.
public struct AMLDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The byte offset in the input where decoding stopped.
    public var offset: Int
    /// What was wrong there.
    public var reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "AML at offset \(offset): \(reason)" }
}
