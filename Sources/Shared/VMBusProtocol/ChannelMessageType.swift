/// The `msgtype` word at offset 0 of every VMBus channel message (CHANNELMSG_*;
/// `include/linux/hyperv.h: enum vmbus_channel_message_type`; Docs/hyperv-interface.md §6.2).
///
/// A struct rather than an enum so that any value a guest sends stays representable.
public struct ChannelMessageType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 1: host offers a device channel.
    public static let offerChannel = ChannelMessageType(rawValue: 1)
    /// 2: host withdraws an offer.
    public static let rescindChannelOffer = ChannelMessageType(rawValue: 2)
    /// 3: guest asks for all offers.
    public static let requestOffers = ChannelMessageType(rawValue: 3)
    /// 4: host has sent every offer.
    public static let allOffersDelivered = ChannelMessageType(rawValue: 4)
    /// 5: guest opens a channel.
    public static let openChannel = ChannelMessageType(rawValue: 5)
    /// 6: host answers OPENCHANNEL.
    public static let openChannelResult = ChannelMessageType(rawValue: 6)
    /// 7: guest closes a channel.
    public static let closeChannel = ChannelMessageType(rawValue: 7)
    /// 8: guest starts describing a GPADL.
    public static let gpadlHeader = ChannelMessageType(rawValue: 8)
    /// 9: guest continues a GPADL's page list.
    public static let gpadlBody = ChannelMessageType(rawValue: 9)
    /// 10: host confirms a GPADL.
    public static let gpadlCreated = ChannelMessageType(rawValue: 10)
    /// 11: guest tears a GPADL down.
    public static let gpadlTeardown = ChannelMessageType(rawValue: 11)
    /// 12: host confirms a teardown.
    public static let gpadlTorndown = ChannelMessageType(rawValue: 12)
    /// 13: guest releases a rescinded channel's relid.
    public static let relIDReleased = ChannelMessageType(rawValue: 13)
    /// 14: guest proposes a protocol version.
    public static let initiateContact = ChannelMessageType(rawValue: 14)
    /// 15: host accepts or refuses the proposed version.
    public static let versionResponse = ChannelMessageType(rawValue: 15)
    /// 16: guest disconnects (module unload, kexec, panic).
    public static let unload = ChannelMessageType(rawValue: 16)
    /// 17: host confirms the disconnect.
    public static let unloadResponse = ChannelMessageType(rawValue: 17)
    /// 18: open a reserved channel (not used by Linux).
    public static let openReservedChannel = ChannelMessageType(rawValue: 18)
    /// 19: close a reserved channel (not used by Linux).
    public static let closeReservedChannel = ChannelMessageType(rawValue: 19)
    /// 20: reply to CLOSE_RESERVED_CHANNEL.
    public static let closeReservedResponse = ChannelMessageType(rawValue: 20)
    /// 21: hv_sock connection request; ignored here (Docs/hyperv-interface.md §6.2).
    public static let tlConnectRequest = ChannelMessageType(rawValue: 21)
    /// 22: guest retargets a channel's interrupt VP.
    public static let modifyChannel = ChannelMessageType(rawValue: 22)
    /// 23: reply to TL_CONNECT_REQUEST.
    public static let tlConnectResult = ChannelMessageType(rawValue: 23)
    /// 24: host answers MODIFYCHANNEL (awaited by Linux for version 5.3 and later).
    public static let modifyChannelResponse = ChannelMessageType(rawValue: 24)
    /// 25: modify the connection (newer protocol versions).
    public static let modifyConnection = ChannelMessageType(rawValue: 25)
    /// 26: reply to MODIFY_CONNECTION.
    public static let modifyConnectionResponse = ChannelMessageType(rawValue: 26)
    /// 27: pause message delivery (newer protocol versions).
    public static let pause = ChannelMessageType(rawValue: 27)
    /// 28: reply to PAUSE.
    public static let pauseResponse = ChannelMessageType(rawValue: 28)
    /// 29: resume message delivery.
    public static let resume = ChannelMessageType(rawValue: 29)
}
