import HyperV

/// The type of a VMBus ring packet, u16 @0 of its descriptor (`VM_PKT_*`;
/// Docs/hyperv-interface.md §9.2).
///
/// A struct rather than an enum so that any value a guest writes stays representable.
public struct PacketType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// 0: invalid.
    public static let invalid = PacketType(rawValue: 0)
    /// 1: synchronization packet.
    public static let synchronize = PacketType(rawValue: 1)
    /// 2: add a transfer page set.
    public static let addTransferPageSet = PacketType(rawValue: 2)
    /// 3: remove a transfer page set.
    public static let removeTransferPageSet = PacketType(rawValue: 3)
    /// 4: establish a GPADL in-band.
    public static let establishGPADL = PacketType(rawValue: 4)
    /// 5: tear down a GPADL in-band.
    public static let tearDownGPADL = PacketType(rawValue: 5)
    /// 6: data carried in the packet itself.
    public static let inband = PacketType(rawValue: 6)
    /// 7: data in a transfer page set; the extra header is a `TransferPageHeader`.
    public static let transferPages = PacketType(rawValue: 7)
    /// 8: data described by a GPADL.
    public static let gpadl = PacketType(rawValue: 8)
    /// 9: data in guest pages listed in the packet; the extra header is a `GPADirectHeader`.
    public static let gpaDirect = PacketType(rawValue: 9)
    /// 10: cancel a request.
    public static let cancelRequest = PacketType(rawValue: 10)
    /// 11: completion of a packet that requested one; echoes its transaction ID.
    public static let completion = PacketType(rawValue: 11)
    /// 12: data continued in additional packets.
    public static let additionalPackets = PacketType(rawValue: 12)
    /// 13: additional data of a previous packet.
    public static let additionalData = PacketType(rawValue: 13)
}

/// The flags of a ring packet, u16 @6 of its descriptor (Docs/hyperv-interface.md §9.1).
public struct PacketFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Bit 0: the sender wants a completion packet with the same transaction ID.
    public static let completionRequested = PacketFlags(rawValue: 1)
}

/// The 16-byte descriptor that starts every ring packet (`struct vmpacket_descriptor`;
/// Docs/hyperv-interface.md §9.1): type u16 @0, offset8 u16 @2, len8 u16 @4, flags u16 @6,
/// trans_id u64 @8.
public struct PacketDescriptor: Hashable, Sendable {
    /// Size of a descriptor.
    public static let size = 16

    /// What the packet carries.
    public var type: PacketType
    /// Offset of the payload from the descriptor start, in 8-byte units (2 for plain in-band).
    public var dataOffset8: UInt16
    /// Length of the packet from the descriptor through padding (trailer excluded), in 8-byte units.
    public var length8: UInt16
    /// Packet flags.
    public var flags: PacketFlags
    /// Matches completions to requests; completions echo it exactly.
    public var transactionID: UInt64

    /// Creates a descriptor from its fields.
    @inlinable
    public init(type: PacketType, dataOffset8: UInt16, length8: UInt16, flags: PacketFlags, transactionID: UInt64) {
        self.type = type
        self.dataOffset8 = dataOffset8
        self.length8 = length8
        self.flags = flags
        self.transactionID = transactionID
    }

    /// Parses the descriptor at `offset` of `bytes` and checks it is self-consistent: the payload
    /// starts after the descriptor (offset8 ≥ 2) and inside the packet (len8 ≥ offset8).
    /// - Throws: `PacketError.truncated` if 16 bytes are not available, `.invalid` otherwise.
    @inlinable
    public init(parsing bytes: [UInt8], at offset: Int = 0) throws(PacketError) {
        guard let type = bytes.littleEndian(UInt16.self, at: offset),
            let dataOffset8 = bytes.littleEndian(UInt16.self, at: offset &+ 2),
            let length8 = bytes.littleEndian(UInt16.self, at: offset &+ 4),
            let flags = bytes.littleEndian(UInt16.self, at: offset &+ 6),
            let transactionID = bytes.littleEndian(UInt64.self, at: offset &+ 8)
        else { throw .truncated(needed: PacketDescriptor.size, available: max(bytes.count - max(offset, 0), 0)) }
        guard Int(dataOffset8) * 8 >= PacketDescriptor.size else {
            throw .invalid("descriptor offset8 points inside the descriptor")
        }
        guard length8 >= dataOffset8 else { throw .invalid("descriptor len8 is shorter than offset8") }
        self.init(
            type: PacketType(rawValue: type), dataOffset8: dataOffset8, length8: length8,
            flags: PacketFlags(rawValue: flags), transactionID: transactionID)
    }

    /// Byte offset of the payload from the descriptor start: offset8 × 8.
    @inlinable
    public var payloadOffset: Int { Int(dataOffset8) * 8 }

    /// Packet length in bytes from the descriptor through padding, trailer excluded: len8 × 8.
    @inlinable
    public var totalLength: Int { Int(length8) * 8 }

    /// The 16 descriptor bytes.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(PacketDescriptor.size)
        store(into: &bytes, at: 0)
        return bytes
    }

    /// Stores the descriptor at `offset` of a buffer that has room for it.
    @inlinable
    public func store(into buffer: inout [UInt8], at offset: Int) {
        buffer.storeLittleEndian(type.rawValue, at: offset)
        buffer.storeLittleEndian(dataOffset8, at: offset + 2)
        buffer.storeLittleEndian(length8, at: offset + 4)
        buffer.storeLittleEndian(flags.rawValue, at: offset + 6)
        buffer.storeLittleEndian(transactionID, at: offset + 8)
    }
}
