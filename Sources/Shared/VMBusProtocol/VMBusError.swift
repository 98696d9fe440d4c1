/// Why a VMBus channel message was rejected (Docs/hyperv-interface.md §6.1).
///
/// Every parser in this module turns hostile or malformed input into one of these; none traps.
public enum VMBusError: Error, Hashable, Sendable {
    /// The payload is shorter than `minimum`, the size this message type needs.
    case truncated(ChannelMessageType, size: Int, minimum: Int)
    /// The payload is longer than a SynIC message payload (240 bytes).
    case oversized(size: Int)
    /// The header's msgtype is `found`, not the `expected` type being parsed.
    case unexpectedType(expected: ChannelMessageType, found: ChannelMessageType)
    /// A field holds a value the message layout cannot describe; the string names the field.
    case invalidField(ChannelMessageType, String)
}
