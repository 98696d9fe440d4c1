import HyperV

/// The 20-byte `icmsg_hdr` at offset 8 of an IC packet payload (Docs/hyperv-interface.md §10.2):
/// fw major u16 @0, fw minor u16 @2, icmsgtype u16 @4, msg major u16 @6, msg minor u16 @8,
/// icmsgsize u16 @10, status u32 @12, ictransaction_id u8 @16, icflags u8 @17, reserved[2] @18.
public struct ICMessageHeader: Hashable, Sendable {
    /// Size on the wire.
    public static let size = 20
    /// Offset of icmsgtype within the header.
    public static let messageTypeOffset = 4
    /// Offset of icmsgsize within the header.
    public static let messageSizeOffset = 10
    /// Offset of status within the header.
    public static let statusOffset = 12
    /// Offset of ictransaction_id within the header.
    public static let transactionIDOffset = 16
    /// Offset of icflags within the header.
    public static let flagsOffset = 17

    /// The IC framework version.
    public var frameworkVersion: ICVersion
    /// Which service message this is.
    public var messageType: ICMessageType
    /// The service message version.
    public var messageVersion: ICVersion
    /// icmsgsize: body size as the sender states it (0x10 in NEGOTIATE responses).
    public var messageSize: UInt16
    /// The guest's answer; 0 in requests.
    public var status: ICStatus
    /// Echoed by the guest.
    public var transactionID: UInt8
    /// Request or response markers.
    public var flags: ICFlags

    /// Creates a header.
    public init(
        frameworkVersion: ICVersion, messageType: ICMessageType, messageVersion: ICVersion, messageSize: UInt16,
        status: ICStatus = .success, transactionID: UInt8 = 0, flags: ICFlags = [.transaction, .request]
    ) {
        self.frameworkVersion = frameworkVersion
        self.messageType = messageType
        self.messageVersion = messageVersion
        self.messageSize = messageSize
        self.status = status
        self.transactionID = transactionID
        self.flags = flags
    }

    /// Reads the header at `offset` of `bytes`.
    /// - Throws: `ICError.truncated` if 20 bytes are not available there.
    public init(parsing bytes: [UInt8], at offset: Int = PipeHeader.size) throws(ICError) {
        guard offset >= 0, offset <= bytes.count - ICMessageHeader.size,
            let frameworkVersion = ICVersion(bytes: bytes, at: offset),
            let messageType = bytes.littleEndian(UInt16.self, at: offset + 4),
            let messageVersion = ICVersion(bytes: bytes, at: offset + 6),
            let messageSize = bytes.littleEndian(UInt16.self, at: offset + 10),
            let status = bytes.littleEndian(UInt32.self, at: offset + 12),
            let transactionID = bytes.littleEndian(UInt8.self, at: offset + 16),
            let flags = bytes.littleEndian(UInt8.self, at: offset + 17)
        else { throw .truncated(needed: max(offset, 0) + ICMessageHeader.size, available: bytes.count) }
        self.init(
            frameworkVersion: frameworkVersion, messageType: ICMessageType(rawValue: messageType),
            messageVersion: messageVersion, messageSize: messageSize, status: ICStatus(rawValue: status),
            transactionID: transactionID, flags: ICFlags(rawValue: flags))
    }

    /// Stores the header at `offset` of a buffer with room for it; reserved bytes become 0.
    public func store(into buffer: inout [UInt8], at offset: Int = PipeHeader.size) {
        frameworkVersion.store(into: &buffer, at: offset)
        buffer.storeLittleEndian(messageType.rawValue, at: offset + 4)
        messageVersion.store(into: &buffer, at: offset + 6)
        buffer.storeLittleEndian(messageSize, at: offset + 10)
        buffer.storeLittleEndian(status.rawValue, at: offset + 12)
        buffer.storeLittleEndian(transactionID, at: offset + 16)
        buffer.storeLittleEndian(flags.rawValue, at: offset + 17)
        buffer.storeLittleEndian(UInt16(0), at: offset + 18)
    }
}
