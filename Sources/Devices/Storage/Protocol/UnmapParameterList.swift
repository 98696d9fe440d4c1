import HyperV

/// One UNMAP block descriptor (SBC-3 §5.28.2): LBA BE64 @0, number of blocks BE32 @8, 4
/// reserved bytes.

public struct UnmapBlockDescriptor: Hashable, Sendable {
    public var logicalBlockAddress: UInt64
    public var blockCount: UInt32

    public init(logicalBlockAddress: UInt64, blockCount: UInt32) {
        self.logicalBlockAddress = logicalBlockAddress
        self.blockCount = blockCount
    }
}

/// The UNMAP parameter list (SBC-3 §5.28.2): UNMAP DATA LENGTH BE16 @0 (bytes after itself),
/// UNMAP BLOCK DESCRIPTOR DATA LENGTH BE16 @2, 4 reserved bytes, then 16-byte descriptors.
/// Linux sends one descriptor in a 24-byte list (`sd_setup_unmap_cmnd`).
public struct UnmapParameterList: Hashable, Sendable {
    /// Size of the header before the descriptors.
    public static let headerSize = 8
    /// Size of one descriptor.
    public static let descriptorSize = 16

    public var descriptors: [UnmapBlockDescriptor]

    public init(descriptors: [UnmapBlockDescriptor]) { self.descriptors = descriptors }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        let descriptorBytes = descriptors.count * Self.descriptorSize
        bytes.appendBigEndian(UInt16(truncatingIfNeeded: descriptorBytes + 6))
        bytes.appendBigEndian(UInt16(truncatingIfNeeded: descriptorBytes))
        bytes.appendBigEndian(UInt32(0))
        for descriptor in descriptors {
            bytes.appendBigEndian(descriptor.logicalBlockAddress)
            bytes.appendBigEndian(descriptor.blockCount)
            bytes.appendBigEndian(UInt32(0))
        }
        return bytes
    }

    /// Parses the list the initiator transferred. Following SBC-3 §5.28.2, the descriptors are
    /// those that fit entirely in the smallest of the transferred bytes, the UNMAP DATA LENGTH
    /// and the UNMAP BLOCK DESCRIPTOR DATA LENGTH; a trailing partial descriptor is ignored.
    /// - Throws: `.truncated` for 1...7 bytes (PARAMETER LIST LENGTH ERROR); no bytes give no
    ///   descriptors.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard !bytes.isEmpty else {
            descriptors = []
            return
        }
        guard bytes.count >= Self.headerSize, let dataLength = bytes.bigEndian(UInt16.self, at: 0),
            let descriptorLength = bytes.bigEndian(UInt16.self, at: 2)
        else { throw .truncated(needed: Self.headerSize, available: bytes.count) }
        let available = min(bytes.count - Self.headerSize, max(Int(dataLength) - 6, 0), Int(descriptorLength))
        var descriptors: [UnmapBlockDescriptor] = []
        let count = available / Self.descriptorSize
        descriptors.reserveCapacity(count)
        for index in 0..<count {
            let offset = Self.headerSize + index * Self.descriptorSize
            guard let lba = bytes.bigEndian(UInt64.self, at: offset),
                let blocks = bytes.bigEndian(UInt32.self, at: offset + 8)
            else { break }
            descriptors.append(UnmapBlockDescriptor(logicalBlockAddress: lba, blockCount: blocks))
        }
        self.descriptors = descriptors
    }
}
