/// A channel message with a fixed layout: parsed from and serialized to a SynIC message payload
/// (Docs/hyperv-interface.md §6.1). Use as a generic constraint.
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

/// A 12-byte channel message whose only field is child_relid @8 (CLOSECHANNEL,
/// RESCIND_CHANNELOFFER, RELID_RELEASED): parsing and serializing are shared.
public protocol ChildRelIDMessage: ChannelMessageRepresentable {
    /// The channel (@8).
    var childRelID: UInt32 { get }
    /// Creates the message.
    init(childRelID: UInt32)
}

extension ChildRelIDMessage {
    /// The smallest payload the parser accepts.
    public static var minimumSize: Int { 12 }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        self.init(childRelID: try decoder.read(UInt32.self, at: 8))
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        return encoder.bytes
    }
}

/// A message that is only the 8-byte header (REQUESTOFFERS, ALLOFFERS_DELIVERED, UNLOAD,
/// UNLOAD_RESPONSE).
public protocol HeaderOnlyMessage: ChannelMessageRepresentable {
    /// Creates the message.
    init()
}

extension HeaderOnlyMessage {
    /// The smallest payload the parser accepts.
    public static var minimumSize: Int { ChannelMessageHeader.size }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        _ = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        self.init()
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] { MessageEncoder(Self.messageType, size: Self.minimumSize).bytes }
}
