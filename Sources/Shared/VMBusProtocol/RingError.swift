/// Why a ring operation failed (Docs/hyperv-interface.md §8.7).
public enum RingError: Error, Hashable, Sendable {
    /// The packet needs `needed` ring bytes (trailer included) and the ring does not have more
    /// than that free. Nothing was staged; retry after the consumer frees space
    /// (`RingWriter.requestSpaceNotification(bytes:)`).
    case full(needed: Int)
    /// The packet can never be written: it needs `needed` ring bytes, more than the ring or a
    /// descriptor's u16 length8 can hold.
    case packetTooLarge(needed: Int)
    /// The caller passed a packet this side cannot encode (for example an extra header that is
    /// not a multiple of 8 bytes).
    case invalidPacket(String)
    /// The ring's control page or contents are inconsistent. The peer is broken or hostile:
    /// close the channel.
    case corrupt(String)
}
