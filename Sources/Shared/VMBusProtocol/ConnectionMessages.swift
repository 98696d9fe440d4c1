import HyperV

// Connection-level messages: version negotiation, offer requests and unload
// (Docs/hyperv-interface.md §6.3, §6.4, §6.7).

/// INITIATE_CONTACT (14), guest → host, 40 bytes (Docs/hyperv-interface.md §6.3).
public struct InitiateContact: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.initiateContact
    /// The smallest payload the parser accepts.
    public static let minimumSize = 40

    /// The proposed protocol version (@8).
    public var version: VMBusVersion
    /// The VP index that receives host messages (@12).
    public var targetVP: UInt32
    /// @16: the interrupt-page GPA below 5.0; from 5.0 on, the low byte is the message SINT.
    public var interruptPageOrTargetInfo: UInt64
    /// GPA of monitor page 1, parent → child (@24).
    public var monitorPage1: UInt64
    /// GPA of monitor page 2, child → parent (@32).
    public var monitorPage2: UInt64

    /// Creates the message from its fields.
    public init(
        version: VMBusVersion, targetVP: UInt32, interruptPageOrTargetInfo: UInt64,
        monitorPage1: UInt64, monitorPage2: UInt64
    ) {
        self.version = version
        self.targetVP = targetVP
        self.interruptPageOrTargetInfo = interruptPageOrTargetInfo
        self.monitorPage1 = monitorPage1
        self.monitorPage2 = monitorPage2
    }

    /// The SINT host messages should arrive on (versions 5.0 and later): the low byte at @16.
    public var messageSINT: UInt8 { UInt8(truncatingIfNeeded: interruptPageOrTargetInfo) }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        version = VMBusVersion(rawValue: try decoder.read(UInt32.self, at: 8))
        targetVP = try decoder.read(UInt32.self, at: 12)
        interruptPageOrTargetInfo = try decoder.read(UInt64.self, at: 16)
        monitorPage1 = try decoder.read(UInt64.self, at: 24)
        monitorPage2 = try decoder.read(UInt64.self, at: 32)
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(version.rawValue, at: 8)
        encoder.store(targetVP, at: 12)
        encoder.store(interruptPageOrTargetInfo, at: 16)
        encoder.store(monitorPage1, at: 24)
        encoder.store(monitorPage2, at: 32)
        return encoder.bytes
    }
}

/// VERSION_RESPONSE (15), host → guest, 16 bytes (Docs/hyperv-interface.md §6.3).
public struct VersionResponse: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.versionResponse
    /// The smallest payload the parser accepts.
    public static let minimumSize = 16

    /// Whether the proposed version is accepted (u8 @8); `false` makes Linux try the next one.
    public var versionSupported: Bool
    /// connection_state u8 @9; 0 means connected.
    public var connectionState: UInt8
    /// The connection all later guest messages are posted to, for versions 5.0 and later (@12).
    public var messageConnectionID: ConnectionID

    /// Creates the message from its fields.
    public init(
        versionSupported: Bool, connectionState: UInt8 = 0,
        messageConnectionID: ConnectionID = VMBusConstants.messageConnectionID
    ) {
        self.versionSupported = versionSupported
        self.connectionState = connectionState
        self.messageConnectionID = messageConnectionID
    }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        versionSupported = try decoder.read(UInt8.self, at: 8) != 0
        connectionState = try decoder.read(UInt8.self, at: 9)
        messageConnectionID = ConnectionID(try decoder.read(UInt32.self, at: 12))
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(UInt8(versionSupported ? 1 : 0), at: 8)
        encoder.store(connectionState, at: 9)
        encoder.store(messageConnectionID.rawValue, at: 12)
        return encoder.bytes
    }
}

/// REQUESTOFFERS (3), guest → host, header only (Docs/hyperv-interface.md §6.4).
public struct RequestOffers: HeaderOnlyMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.requestOffers
    /// Creates the message.
    public init() {}
}

/// ALLOFFERS_DELIVERED (4), host → guest, header only (Docs/hyperv-interface.md §6.4).
public struct AllOffersDelivered: HeaderOnlyMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.allOffersDelivered
    /// Creates the message.
    public init() {}
}

/// UNLOAD (16), guest → host, header only; sent on unload, kexec and every panic
/// (Docs/hyperv-interface.md §6.7).
public struct Unload: HeaderOnlyMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.unload
    /// Creates the message.
    public init() {}
}

/// UNLOAD_RESPONSE (17), host → guest, header only (Docs/hyperv-interface.md §6.7).
public struct UnloadResponse: HeaderOnlyMessage {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.unloadResponse
    /// Creates the message.
    public init() {}
}
