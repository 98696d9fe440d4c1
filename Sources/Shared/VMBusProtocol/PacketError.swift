/// Why a VMBus packet descriptor or extra header was rejected (Docs/hyperv-interface.md §9.1).
public enum PacketError: Error, Hashable, Sendable {
    /// The bytes end before the structure does: `needed` bytes are required, `available` exist.
    case truncated(needed: Int, available: Int)
    /// A field is inconsistent; the string says which.
    case invalid(String)
}
