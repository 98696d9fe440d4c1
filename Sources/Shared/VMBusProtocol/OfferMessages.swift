import HyperV

// Channel offers and their withdrawal (Docs/hyperv-interface.md §6.4, §6.6).

/// OFFERCHANNEL (1), host → guest, exactly 196 bytes (Docs/hyperv-interface.md §6.4).
///
/// Linux drops offers shorter than 196 bytes. Reserved fields (@40, @48, @182 and the unused
/// bits of @189 and @190) are written as zero and ignored when parsing.
public struct OfferChannel: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.offerChannel
    /// The smallest payload the parser accepts.
    public static let minimumSize = 196
    /// Size of the user-defined area at @60.
    public static let userDefinedSize = 120

    /// Device class GUID, if_type (@8; Docs/hyperv-interface.md §14).
    public var interfaceType: GUID
    /// Unique device instance GUID, if_instance (@24).
    public var interfaceInstance: GUID
    /// chn_flags u16 @56; 0 for ordinary devices (0x2000 would make the channel hv_sock).
    public var channelFlags: UInt16
    /// mmio_megabytes u16 @58.
    public var mmioMegabytes: UInt16
    /// user_def[120] @60; serialization copies at most 120 bytes and zero-fills the rest.
    public var userDefined: [UInt8]
    /// sub_channel_index u16 @180; 0 for primary channels.
    public var subChannelIndex: UInt16
    /// child_relid u32 @184; 1...2047 for Linux.
    public var childRelID: UInt32
    /// monitorid u8 @188.
    public var monitorID: UInt8
    /// monitor_allocated, bit 0 of u8 @189; must be `false` here (Docs/hyperv-interface.md §6.4).
    public var monitorAllocated: Bool
    /// is_dedicated_interrupt, bit 0 of u16 @190.
    public var isDedicatedInterrupt: Bool
    /// connection_id u32 @192: the event connection the guest signals.
    public var connectionID: ConnectionID

    /// Creates an offer; defaults describe a primary channel without monitor or MMIO.
    public init(
        interfaceType: GUID, interfaceInstance: GUID, childRelID: UInt32, connectionID: ConnectionID,
        channelFlags: UInt16 = 0, mmioMegabytes: UInt16 = 0,
        userDefined: [UInt8] = .zeros(OfferChannel.userDefinedSize),
        subChannelIndex: UInt16 = 0, monitorID: UInt8 = 0, monitorAllocated: Bool = false,
        isDedicatedInterrupt: Bool = true
    ) {
        self.interfaceType = interfaceType
        self.interfaceInstance = interfaceInstance
        self.childRelID = childRelID
        self.connectionID = connectionID
        self.channelFlags = channelFlags
        self.mmioMegabytes = mmioMegabytes
        self.userDefined = userDefined
        self.subChannelIndex = subChannelIndex
        self.monitorID = monitorID
        self.monitorAllocated = monitorAllocated
        self.isDedicatedInterrupt = isDedicatedInterrupt
    }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        interfaceType = try decoder.guid(at: 8)
        interfaceInstance = try decoder.guid(at: 24)
        channelFlags = try decoder.read(UInt16.self, at: 56)
        mmioMegabytes = try decoder.read(UInt16.self, at: 58)
        userDefined = try decoder.bytes(at: 60, count: Self.userDefinedSize)
        subChannelIndex = try decoder.read(UInt16.self, at: 180)
        childRelID = try decoder.read(UInt32.self, at: 184)
        monitorID = try decoder.read(UInt8.self, at: 188)
        monitorAllocated = try decoder.read(UInt8.self, at: 189) & 1 != 0
        isDedicatedInterrupt = try decoder.read(UInt16.self, at: 190) & 1 != 0
        connectionID = ConnectionID(try decoder.read(UInt32.self, at: 192))
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(interfaceType, at: 8)
        encoder.store(interfaceInstance, at: 24)
        encoder.store(channelFlags, at: 56)
        encoder.store(mmioMegabytes, at: 58)
        encoder.store(userDefined, at: 60, count: Self.userDefinedSize)
        encoder.store(subChannelIndex, at: 180)
        encoder.store(childRelID, at: 184)
        encoder.store(monitorID, at: 188)
        encoder.store(UInt8(monitorAllocated ? 1 : 0), at: 189)
        encoder.store(UInt16(isDedicatedInterrupt ? 1 : 0), at: 190)
        encoder.store(connectionID.rawValue, at: 192)
        return encoder.bytes
    }
}

/// RESCIND_CHANNELOFFER (2), host → guest, 12 bytes: child_relid @8
/// (Docs/hyperv-interface.md §6.6).
public struct RescindOffer: ChildRelIDMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.rescindChannelOffer
    /// The withdrawn channel (@8).
    public var childRelID: UInt32
    /// Creates the message.
    public init(childRelID: UInt32) { self.childRelID = childRelID }
}

/// RELID_RELEASED (13), guest → host, 12 bytes: child_relid @8 (Docs/hyperv-interface.md §6.6).
public struct RelIDReleased: ChildRelIDMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.relIDReleased
    /// The released channel (@8).
    public var childRelID: UInt32
    /// Creates the message.
    public init(childRelID: UInt32) { self.childRelID = childRelID }
}
