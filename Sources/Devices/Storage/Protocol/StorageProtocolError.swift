import HyperV

/// Why a storage VSC/VSP structure was rejected. Every parser in this module turns short or
/// hostile bytes into one of these; none traps.

public enum StorageProtocolError: Error, Hashable, Sendable {
    /// The bytes end before the structure does: `needed` bytes are required, `available` exist.
    case truncated(needed: Int, available: Int)
    /// A GPA-direct header does not describe exactly one range.
    case rangeCount(UInt32)
    /// A range's byte offset is not inside its first page.
    case rangeOffset(UInt32)
    /// A range needs more pages than the receiver allows.
    case tooManyPages(needed: Int, limit: Int)
    /// The structure is not the kind expected here (for example sense data with an unknown
    /// response code).
    case malformed(String)
}
