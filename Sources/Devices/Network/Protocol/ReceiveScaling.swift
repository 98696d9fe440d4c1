import HyperV

/// NDIS_RECEIVE_SCALE_CAPABILITIES (`struct ndis_recv_scale_cap`, packed, 18 bytes): header
/// {0x88, 2, 18} @0, cap_flag @4, num_int_msg @8, num_recv_que @12, u16 num_indirect_tabent @16.
/// Linux uses min(CPUs, num_recv_que) queues; fewer than 2 means one channel.
public struct RSSCapabilities: Hashable, Sendable {
    public static let size = 18
    /// `NDIS_OBJECT_TYPE_RSS_CAPABILITIES`.
    public static let objectType: UInt8 = 0x88
    /// Hash-type capability bits (`NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4`, `_IPV6`).
    public static let hashTCPIPv4: UInt32 = 0x100
    public static let hashTCPIPv6: UInt32 = 0x200

    public var capabilityFlags: UInt32
    public var interruptMessageCount: UInt32
    public var receiveQueueCount: UInt32
    public var indirectionTableEntryCount: UInt16

    public init(capabilityFlags: UInt32, interruptMessageCount: UInt32, receiveQueueCount: UInt32,
                indirectionTableEntryCount: UInt16) {
        self.capabilityFlags = capabilityFlags
        self.interruptMessageCount = interruptMessageCount
        self.receiveQueueCount = receiveQueueCount
        self.indirectionTableEntryCount = indirectionTableEntryCount
    }

    public init(parsing bytes: [UInt8]) throws(NetworkProtocolError) {
        guard bytes.count >= RSSCapabilities.size, let flags = bytes.littleEndian(UInt32.self, at: 4),
            let interrupts = bytes.littleEndian(UInt32.self, at: 8), let queues = bytes.littleEndian(UInt32.self, at: 12),
            let entries = bytes.littleEndian(UInt16.self, at: 16)
        else { throw .truncated(needed: RSSCapabilities.size, available: bytes.count) }
        guard bytes[0] == RSSCapabilities.objectType else { throw .invalidValue("RSS capabilities type") }
        self.init(capabilityFlags: flags, interruptMessageCount: interrupts, receiveQueueCount: queues,
                  indirectionTableEntryCount: entries)
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(RSSCapabilities.size)
        bytes[0] = RSSCapabilities.objectType
        bytes[1] = 2
        bytes.storeLittleEndian(UInt16(RSSCapabilities.size), at: 2)
        bytes.storeLittleEndian(capabilityFlags, at: 4)
        bytes.storeLittleEndian(interruptMessageCount, at: 8)
        bytes.storeLittleEndian(receiveQueueCount, at: 12)
        bytes.storeLittleEndian(indirectionTableEntryCount, at: 16)
        return bytes
    }
}

/// NDIS_RECEIVE_SCALE_PARAMETERS (`struct ndis_recv_scale_param`, 40 bytes, natural
/// alignment): header {0x89, 2, size} @0, u16 flag @4, u16 base_cpu @6, u32 hashinfo @8,
/// u16 indirect_tabsize @12, u32 indirect_taboffset @16, u16 hashkey_size @20,
/// u32 hashkey_offset @24, processor masks @28/@32/@36. Offsets count from the structure
/// start; Linux puts the u32 indirection table (128 entries) at 40 and the 40-byte key after it.
public struct RSSParameters: Hashable, Sendable {
    public static let headerSize = 40
    /// `NDIS_OBJECT_TYPE_RSS_PARAMETERS`.
    public static let objectType: UInt8 = 0x89
    /// `NDIS_RSS_PARAM_FLAG_DISABLE_RSS`.
    public static let flagDisable: UInt16 = 0x10
    /// Largest indirection table accepted (`ITAB_NUM` × 4 bytes).
    public static let maximumIndirectionEntries = 128
    /// Largest key accepted (`NDIS_RSS_HASH_SECRET_KEY_MAX_SIZE_REVISION_2`).
    public static let maximumKeySize = 40

    public var flags: UInt16
    public var hashInformation: UInt32
    public var indirectionTable: [UInt32]
    public var key: [UInt8]

    public init(flags: UInt16, hashInformation: UInt32, indirectionTable: [UInt32], key: [UInt8]) {
        self.flags = flags
        self.hashInformation = hashInformation
        self.indirectionTable = indirectionTable
        self.key = key
    }

    public init(parsing bytes: [UInt8]) throws(NetworkProtocolError) {
        guard bytes.count >= RSSParameters.headerSize, let flags = bytes.littleEndian(UInt16.self, at: 4),
            let hash = bytes.littleEndian(UInt32.self, at: 8), let tableSize = bytes.littleEndian(UInt16.self, at: 12),
            let tableOffset = bytes.littleEndian(UInt32.self, at: 16), let keySize = bytes.littleEndian(UInt16.self, at: 20),
            let keyOffset = bytes.littleEndian(UInt32.self, at: 24)
        else { throw .truncated(needed: RSSParameters.headerSize, available: bytes.count) }
        guard bytes[0] == RSSParameters.objectType else { throw .invalidValue("RSS parameters type") }
        guard tableSize % 4 == 0, Int(tableSize) / 4 <= RSSParameters.maximumIndirectionEntries,
            UInt64(tableOffset) + UInt64(tableSize) <= UInt64(bytes.count)
        else { throw .badLayout("RSS indirection table") }
        guard Int(keySize) <= RSSParameters.maximumKeySize, UInt64(keyOffset) + UInt64(keySize) <= UInt64(bytes.count)
        else { throw .badLayout("RSS hash key") }
        var table: [UInt32] = []
        for index in 0..<(Int(tableSize) / 4) {
            table.append(bytes.littleEndian(UInt32.self, at: Int(tableOffset) + index * 4) ?? 0)
        }
        self.init(flags: flags, hashInformation: hash, indirectionTable: table,
                  key: Array(bytes[Int(keyOffset)..<(Int(keyOffset) + Int(keySize))]))
    }

    /// The structure as Linux lays it out: header, table at 40, key after the table.
    public var bytes: [UInt8] {
        let tableBytes = indirectionTable.count * 4
        var bytes: [UInt8] = .zeros(RSSParameters.headerSize + tableBytes + key.count)
        bytes[0] = RSSParameters.objectType
        bytes[1] = 2
        bytes.storeLittleEndian(UInt16(RSSParameters.headerSize), at: 2)
        bytes.storeLittleEndian(flags, at: 4)
        bytes.storeLittleEndian(hashInformation, at: 8)
        bytes.storeLittleEndian(UInt16(truncatingIfNeeded: tableBytes), at: 12)
        bytes.storeLittleEndian(UInt32(RSSParameters.headerSize), at: 16)
        bytes.storeLittleEndian(UInt16(truncatingIfNeeded: key.count), at: 20)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: RSSParameters.headerSize + tableBytes), at: 24)
        for (index, entry) in indirectionTable.enumerated() {
            bytes.storeLittleEndian(entry, at: RSSParameters.headerSize + index * 4)
        }
        bytes.replaceSubrange((RSSParameters.headerSize + tableBytes)..., with: key)
        return bytes
    }
}
