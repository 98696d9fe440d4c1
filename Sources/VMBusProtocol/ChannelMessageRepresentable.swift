/// A channel message with a fixed layout: parsed from and serialized to a SynIC message payload
/// (hyperv-guest-interface.md §6.1). Use as a generic constraint.
public protocol ChannelMessageRepresentable: Hashable, Sendable {
    /// The msgtype this message carries.
    static var messageType: ChannelMessageType { get }
    /// The smallest payload the parser accepts.
    static var minimumSize: Int { get }
    /// Parses `payload`, checking the msgtype, the minimum size and the 240-byte maximum.
    init(parsing payload: [UInt8]) throws(VMBusError)
    /// The serialized payload, header included, at its exact wire size.
    var bytes: [UInt8] { get }
}
