/// Why bytes of the synthetic network protocols (NVSP, RNDIS, NDIS structures) were rejected.
///
/// Every parser in this module turns short, inconsistent or hostile input into one of these;
/// none traps.
public enum NetworkProtocolError: Error, Hashable, Sendable {
    /// The bytes end before the structure does: `needed` bytes are required, `available` exist.
    case truncated(needed: Int, available: Int)
    /// A length, offset or count field does not fit the message that carries it; the string
    /// names the field.
    case badLayout(String)
    /// A field holds a value the structure does not allow; the string names the field.
    case invalidValue(String)
}
