import HyperV

// Opening, closing and retargeting a channel (Docs/hyperv-interface.md §6.5).

/// OPENCHANNEL (5), guest → host, 148 bytes (Docs/hyperv-interface.md §6.5).
public struct OpenChannel: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.openChannel
    /// The smallest payload the parser accepts.
    public static let minimumSize = 148
    /// Size of the user-data area at @28.
    public static let userDataSize = 120

    /// The channel to open (@8).
    public var childRelID: UInt32
    /// Echoed in OPENCHANNEL_RESULT (@12); Linux uses the relid.
    public var openID: UInt32
    /// The GPADL holding both rings (@16).
    public var ringBufferGPADL: UInt32
    /// The VP that receives this channel's events (@20).
    public var targetVP: UInt32
    /// Page offset of the host → guest ring within the GPADL (@24); pages before it hold the
    /// guest → host ring.
    public var downstreamRingBufferPageOffset: UInt32
    /// userdata[120] @28; serialization copies at most 120 bytes and zero-fills the rest.
    public var userData: [UInt8]

    /// Creates the message from its fields.
    public init(
        childRelID: UInt32, openID: UInt32, ringBufferGPADL: UInt32, targetVP: UInt32,
        downstreamRingBufferPageOffset: UInt32, userData: [UInt8] = .zeros(OpenChannel.userDataSize)
    ) {
        self.childRelID = childRelID
        self.openID = openID
        self.ringBufferGPADL = ringBufferGPADL
        self.targetVP = targetVP
        self.downstreamRingBufferPageOffset = downstreamRingBufferPageOffset
        self.userData = userData
    }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        openID = try decoder.read(UInt32.self, at: 12)
        ringBufferGPADL = try decoder.read(UInt32.self, at: 16)
        targetVP = try decoder.read(UInt32.self, at: 20)
        downstreamRingBufferPageOffset = try decoder.read(UInt32.self, at: 24)
        userData = try decoder.bytes(at: 28, count: Self.userDataSize)
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        encoder.store(openID, at: 12)
        encoder.store(ringBufferGPADL, at: 16)
        encoder.store(targetVP, at: 20)
        encoder.store(downstreamRingBufferPageOffset, at: 24)
        encoder.store(userData, at: 28, count: Self.userDataSize)
        return encoder.bytes
    }
}

/// OPENCHANNEL_RESULT (6), host → guest, 20 bytes: child_relid @8, openid @12, status @16
/// (Docs/hyperv-interface.md §6.5). A non-zero status fails the open.
public struct OpenResult: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.openChannelResult
    /// The smallest payload the parser accepts.
    public static let minimumSize = 20
    /// The channel (@8).
    public var childRelID: UInt32
    /// The openid from OPENCHANNEL (@12).
    public var openID: UInt32
    /// 0 on success (@16).
    public var status: UInt32
    /// Creates the message.
    public init(childRelID: UInt32, openID: UInt32, status: UInt32 = 0) {
        self.childRelID = childRelID
        self.openID = openID
        self.status = status
    }
    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        openID = try decoder.read(UInt32.self, at: 12)
        status = try decoder.read(UInt32.self, at: 16)
    }
    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        encoder.store(openID, at: 12)
        encoder.store(status, at: 16)
        return encoder.bytes
    }
}

/// CLOSECHANNEL (7), guest → host, 12 bytes: child_relid @8; no reply
/// (Docs/hyperv-interface.md §6.5).
public struct CloseChannel: ChildRelIDMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.closeChannel
    /// The channel (@8).
    public var childRelID: UInt32
    /// Creates the message.
    public init(childRelID: UInt32) { self.childRelID = childRelID }
}

/// MODIFYCHANNEL (22), guest → host, 16 bytes: child_relid @8, target_vp @12
/// (Docs/hyperv-interface.md §6.5).
public struct ModifyChannel: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.modifyChannel
    /// The smallest payload the parser accepts.
    public static let minimumSize = 16
    /// The channel (@8).
    public var childRelID: UInt32
    /// The VP that should receive the channel's events from now on (@12).
    public var targetVP: UInt32
    /// Creates the message.
    public init(childRelID: UInt32, targetVP: UInt32) {
        self.childRelID = childRelID
        self.targetVP = targetVP
    }
    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        targetVP = try decoder.read(UInt32.self, at: 12)
    }
    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        encoder.store(targetVP, at: 12)
        return encoder.bytes
    }
}

/// MODIFYCHANNEL_RESPONSE (24), host → guest, 16 bytes: child_relid @8, status @12
/// (Docs/hyperv-interface.md §6.5). Linux waits for it from version 5.3 on.
public struct ModifyChannelResponse: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.modifyChannelResponse
    /// The smallest payload the parser accepts.
    public static let minimumSize = 16
    /// The channel (@8).
    public var childRelID: UInt32
    /// 0 on success (@12).
    public var status: UInt32
    /// Creates the message.
    public init(childRelID: UInt32, status: UInt32 = 0) {
        self.childRelID = childRelID
        self.status = status
    }
    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        status = try decoder.read(UInt32.self, at: 12)
    }
    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        encoder.store(status, at: 12)
        return encoder.bytes
    }
}
