import HyperV

/// READ CAPACITY(10) parameter data (SBC-3 §5.15.2): last LBA BE32 @0 (0xFFFFFFFF when it
/// does not fit), block length BE32 @4.

public struct ReadCapacity10Data: Hashable, Sendable {
    public static let size = 8

    public var lastLogicalBlockAddress: UInt32
    public var blockLength: UInt32

    public init(lastLogicalBlockAddress: UInt32, blockLength: UInt32) {
        self.lastLogicalBlockAddress = lastLogicalBlockAddress
        self.blockLength = blockLength
    }

    /// The data for a medium of `blockCount` blocks (≥ 1).
    public init(blockCount: UInt64, blockLength: UInt32) {
        let last = blockCount == 0 ? 0 : blockCount - 1
        self.init(lastLogicalBlockAddress: last > UInt64(UInt32.max) ? UInt32.max : UInt32(last), blockLength: blockLength)
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(lastLogicalBlockAddress)
        bytes.appendBigEndian(blockLength)
        return bytes
    }

    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard let last = bytes.bigEndian(UInt32.self, at: 0), let length = bytes.bigEndian(UInt32.self, at: 4) else {
            throw .truncated(needed: Self.size, available: bytes.count)
        }
        self.init(lastLogicalBlockAddress: last, blockLength: length)
    }
}

/// READ CAPACITY(16) parameter data (SBC-3 §5.16.2), 32 bytes: last LBA BE64 @0, block length
/// BE32 @8, P_TYPE/PROT_EN @12 (0), logical blocks per physical block exponent @13 bits 3-0,
/// LBPME @14 bit 7, LBPRZ @14 bit 6, lowest aligned LBA @14-15 (14 bits).
public struct ReadCapacity16Data: Hashable, Sendable {
    public static let size = 32

    public var lastLogicalBlockAddress: UInt64
    public var blockLength: UInt32
    public var logicalBlocksPerPhysicalBlockExponent: UInt8
    /// LBPME: logical block provisioning (UNMAP) is enabled. Linux only considers discard when
    /// it is set (`sd_read_capacity`).
    public var provisioningManagementEnabled: Bool
    /// LBPRZ: unmapped blocks read as zero.
    public var unmappedReadsZero: Bool
    public var lowestAlignedLogicalBlockAddress: UInt16

    public init(lastLogicalBlockAddress: UInt64, blockLength: UInt32, logicalBlocksPerPhysicalBlockExponent: UInt8 = 0,
                provisioningManagementEnabled: Bool = false, unmappedReadsZero: Bool = false,
                lowestAlignedLogicalBlockAddress: UInt16 = 0) {
        self.lastLogicalBlockAddress = lastLogicalBlockAddress
        self.blockLength = blockLength
        self.logicalBlocksPerPhysicalBlockExponent = logicalBlocksPerPhysicalBlockExponent & 0x0F
        self.provisioningManagementEnabled = provisioningManagementEnabled
        self.unmappedReadsZero = unmappedReadsZero
        self.lowestAlignedLogicalBlockAddress = lowestAlignedLogicalBlockAddress & 0x3FFF
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(Self.size)
        bytes.storeBigEndian(lastLogicalBlockAddress, at: 0)
        bytes.storeBigEndian(blockLength, at: 8)
        bytes[13] = logicalBlocksPerPhysicalBlockExponent & 0x0F
        bytes[14] = (provisioningManagementEnabled ? 0x80 : 0) | (unmappedReadsZero ? 0x40 : 0)
            | UInt8(truncatingIfNeeded: lowestAlignedLogicalBlockAddress >> 8) & 0x3F
        bytes[15] = UInt8(truncatingIfNeeded: lowestAlignedLogicalBlockAddress)
        return bytes
    }

    /// Parses at least the first 16 bytes.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard bytes.count >= 16, let last = bytes.bigEndian(UInt64.self, at: 0),
            let length = bytes.bigEndian(UInt32.self, at: 8)
        else { throw .truncated(needed: 16, available: bytes.count) }
        self.init(lastLogicalBlockAddress: last, blockLength: length,
                  logicalBlocksPerPhysicalBlockExponent: bytes[13] & 0x0F,
                  provisioningManagementEnabled: bytes[14] & 0x80 != 0, unmappedReadsZero: bytes[14] & 0x40 != 0,
                  lowestAlignedLogicalBlockAddress: UInt16(bytes[14] & 0x3F) << 8 | UInt16(bytes[15]))
    }
}

/// REPORT LUNS parameter data (SPC-4 §6.33.2): LUN list length BE32 @0 (8 per LUN), 4 reserved
/// bytes, then 8-byte LUNs. LUNs below 256 use peripheral device addressing {0, lun, 0…};
/// 256…16383 flat space addressing {0x40 | lun >> 8, lun & 0xFF, 0…} (SAM-5 §4.7).
public struct ReportLUNsData: Hashable, Sendable {
    public var luns: [UInt16]

    public init(luns: [UInt16]) { self.luns = luns }

    /// The full list; the device server cuts it to the allocation length but keeps the length
    /// field, so an initiator with a short buffer can ask again.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(UInt32(truncatingIfNeeded: luns.count * 8))
        bytes.appendBigEndian(UInt32(0))
        for lun in luns {
            if lun < 256 {
                bytes += [0, UInt8(lun), 0, 0, 0, 0, 0, 0]
            } else {
                bytes += [0x40 | UInt8(truncatingIfNeeded: lun >> 8) & 0x3F, UInt8(truncatingIfNeeded: lun), 0, 0, 0, 0, 0, 0]
            }
        }
        return bytes
    }

    /// Parses the LUNs present in `bytes` (at most as many as the length field says); entries
    /// in address methods other than peripheral and flat space are skipped.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard let length = bytes.bigEndian(UInt32.self, at: 0), bytes.count >= 8 else {
            throw .truncated(needed: 8, available: bytes.count)
        }
        let present = (bytes.count - 8) / 8
        let count = min(Int(length / 8), present)
        var luns: [UInt16] = []
        for index in 0..<count {
            let first = bytes[8 + index * 8]
            let second = bytes[9 + index * 8]
            switch first >> 6 {
            case 0 where first & 0x3F == 0: luns.append(UInt16(second))
            case 1: luns.append(UInt16(first & 0x3F) << 8 | UInt16(second))
            default: continue
            }
        }
        self.luns = luns
    }
}
