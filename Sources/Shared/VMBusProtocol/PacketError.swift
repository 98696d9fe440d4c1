/// Why a VMBus packet descriptor or extra header was rejected (hyperv-guest-interface.md §6.3).
public enum PacketError: Error, Hashable, Sendable {
    /// The bytes end before the structure does: `needed` bytes are required, `available` exist.
    case truncated(needed: Int, available: Int)
    /// A field is inconsistent; the string says which.
    case invalid(String)
}
