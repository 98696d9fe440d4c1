import HyperV

/// The union of QUERY_PROTOCOL_VERSION (`struct vmstorage_protocol_version`): u16 major_minor
/// @12, u16 revision @14 (Linux sends 0; only Windows uses it).

public struct StorageVersionRequest: Hashable, Sendable {
    /// Packet offset of major_minor.
    public static let versionOffset = 12
    /// Packet offset of revision.
    public static let revisionOffset = 14

    public var version: StorageProtocolVersion
    public var revision: UInt16

    public init(version: StorageProtocolVersion, revision: UInt16 = 0) {
        self.version = version
        self.revision = revision
    }

    /// Reads the version from a packet's union.
    /// - Throws: `.truncated` if the sender did not send both fields.
    public init(parsing packet: VStorPacket) throws(StorageProtocolError) {
        guard let version = packet.field(UInt16.self, at: Self.versionOffset),
            let revision = packet.field(UInt16.self, at: Self.revisionOffset)
        else { throw .truncated(needed: Self.revisionOffset + 2, available: VStorPacket.bodyOffset + packet.bodyLength) }
        self.init(version: StorageProtocolVersion(rawValue: version), revision: revision)
    }

    /// Writes the fields into a packet's union.
    public func store(into packet: inout VStorPacket) {
        packet.setField(version.rawValue, at: Self.versionOffset)
        packet.setField(revision, at: Self.revisionOffset)
    }

    /// A complete QUERY_PROTOCOL_VERSION request.
    public var packet: VStorPacket {
        var packet = VStorPacket(operation: .queryProtocolVersion, flags: .requestCompletion)
        store(into: &packet)
        return packet
    }
}

/// Flags of `vmstorage_channel_properties`.
public struct StorageChannelFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL (1): the guest may ask for sub-channels.
    public static let supportsMultiChannel = StorageChannelFlags(rawValue: 1)
}

/// The union of a QUERY_PROPERTIES answer (`struct vmstorage_channel_properties`, 24 bytes):
/// u32 reserved @12, u16 max_channel_cnt @16, u16 reserved @18, u32 flags @20,
/// u32 max_transfer_bytes @24, u64 reserved @28.
///
/// Linux asks for `min(online CPUs − 1, maximumSubChannels)` sub-channels when the
/// multi-channel flag is set, and sets max_sectors = max_transfer_bytes / 512 and
/// sg_tablesize = max_transfer_bytes / 4096 + 1 (`storvsc_probe`).
public struct StorageChannelProperties: Hashable, Sendable {
    /// Size of the structure (also OPENCHANNEL's user data, all zero).
    public static let size = 24
    static let maximumChannelCountOffset = 16
    static let flagsOffset = 20
    static let maximumTransferBytesOffset = 24

    /// max_channel_cnt: how many sub-channels the guest may ask for.
    public var maximumSubChannels: UInt16
    public var flags: StorageChannelFlags
    /// The largest transfer of one SRB in bytes.
    public var maximumTransferBytes: UInt32

    public init(maximumSubChannels: UInt16, flags: StorageChannelFlags, maximumTransferBytes: UInt32) {
        self.maximumSubChannels = maximumSubChannels
        self.flags = flags
        self.maximumTransferBytes = maximumTransferBytes
    }

    /// Reads the properties from an answer's union.
    /// - Throws: `.truncated` if the union ends before max_transfer_bytes does.
    public init(parsing packet: VStorPacket) throws(StorageProtocolError) {
        guard let count = packet.field(UInt16.self, at: Self.maximumChannelCountOffset),
            let flags = packet.field(UInt32.self, at: Self.flagsOffset),
            let transfer = packet.field(UInt32.self, at: Self.maximumTransferBytesOffset)
        else { throw .truncated(needed: 28, available: VStorPacket.bodyOffset + packet.bodyLength) }
        self.init(maximumSubChannels: count, flags: StorageChannelFlags(rawValue: flags), maximumTransferBytes: transfer)
    }

    /// Writes the properties into a packet's union (reserved fields zero).
    public func store(into packet: inout VStorPacket) {
        packet.setField(UInt32(0), at: 12)
        packet.setField(maximumSubChannels, at: Self.maximumChannelCountOffset)
        packet.setField(UInt16(0), at: 18)
        packet.setField(flags.rawValue, at: Self.flagsOffset)
        packet.setField(maximumTransferBytes, at: Self.maximumTransferBytesOffset)
        packet.setField(UInt64(0), at: 28)
    }
}

/// The union of CREATE_SUB_CHANNELS: u16 sub_channel_count @12.
public struct SubChannelRequest: Hashable, Sendable {
    static let countOffset = 12

    public var count: UInt16

    public init(count: UInt16) { self.count = count }

    /// Reads the count from a packet's union.
    /// - Throws: `.truncated` if the sender did not send it.
    public init(parsing packet: VStorPacket) throws(StorageProtocolError) {
        guard let count = packet.field(UInt16.self, at: Self.countOffset) else {
            throw .truncated(needed: Self.countOffset + 2, available: VStorPacket.bodyOffset + packet.bodyLength)
        }
        self.count = count
    }

    /// A complete CREATE_SUB_CHANNELS request.
    public var packet: VStorPacket {
        var packet = VStorPacket(operation: .createSubChannels, flags: .requestCompletion)
        packet.setField(count, at: Self.countOffset)
        return packet
    }
}
