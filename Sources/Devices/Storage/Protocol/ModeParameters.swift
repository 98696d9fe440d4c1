import HyperV

/// The device-specific parameter of a direct-access unit's mode parameter header (SBC-3
/// §6.4.1): WP bit 7, DPOFUA bit 4. Linux enables FUA writes only when DPOFUA is set
/// (`sd_read_cache_type`) and marks the disk read-only when WP is (`sd_read_write_protect_flag`).

public struct DeviceSpecificParameter: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let writeProtected = DeviceSpecificParameter(rawValue: 0x80)
    public static let dpoAndFUASupported = DeviceSpecificParameter(rawValue: 0x10)
}

/// The CACHING mode page (0x08, SBC-3 §6.4.5), 20 bytes: page code @0, page length 0x12 @1,
/// WCE @2 bit 2, RCD @2 bit 0.
public struct CachingModePage: Hashable, Sendable {
    public static let pageCode: UInt8 = 0x08
    public static let size = 20

    /// WCE: writes may complete before they are durable; the initiator must flush.
    public var writeCacheEnabled: Bool
    /// RCD: reads always come from the medium.
    public var readCacheDisabled: Bool

    public init(writeCacheEnabled: Bool, readCacheDisabled: Bool = false) {
        self.writeCacheEnabled = writeCacheEnabled
        self.readCacheDisabled = readCacheDisabled
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(Self.size)
        bytes[0] = Self.pageCode
        bytes[1] = UInt8(Self.size - 2)
        bytes[2] = (writeCacheEnabled ? 0x04 : 0) | (readCacheDisabled ? 0x01 : 0)
        return bytes
    }

    /// Parses the page from its first three bytes.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard bytes.count >= 3 else { throw .truncated(needed: 3, available: bytes.count) }
        guard bytes[0] & 0x3F == Self.pageCode else { throw .malformed("not the caching mode page") }
        writeCacheEnabled = bytes[2] & 0x04 != 0
        readCacheDisabled = bytes[2] & 0x01 != 0
    }
}

/// Mode parameter data as MODE SENSE returns it (SPC-4 §7.5): a header, optional block
/// descriptors, then pages.
///
/// - MODE SENSE(6) header, 4 bytes: mode data length @0 (bytes after itself), medium type @1,
///   device-specific parameter @2, block descriptor length @3.
/// - MODE SENSE(10) header, 8 bytes: mode data length BE16 @0, medium type @2, device-specific
///   parameter @3, LONGLBA @4 bit 0, block descriptor length BE16 @6.
///
/// The length fields always describe the whole data, even when the allocation length cuts the
/// transfer short: Linux probes with 4 bytes and asks again for `header[0] + 1`
/// (`sd_read_cache_type`).
public struct ModeParameterData: Hashable, Sendable {
    public var isTenByte: Bool
    public var deviceSpecific: DeviceSpecificParameter
    /// Each block descriptor's bytes (8 for short LBA, 16 for long LBA).
    public var blockDescriptors: [UInt8]
    public var longLBA: Bool
    /// The pages, concatenated.
    public var pages: [UInt8]

    public init(isTenByte: Bool, deviceSpecific: DeviceSpecificParameter, blockDescriptors: [UInt8] = [],
                longLBA: Bool = false, pages: [UInt8]) {
        self.isTenByte = isTenByte
        self.deviceSpecific = deviceSpecific
        self.blockDescriptors = blockDescriptors
        self.longLBA = longLBA
        self.pages = pages
    }

    /// The short LBA block descriptor of a direct-access unit (SBC-3 §6.4.2.2): number of
    /// blocks BE32 @0 (0xFFFFFFFF when it does not fit), block length 24 bits @5.
    public static func shortBlockDescriptor(blockCount: UInt64, blockLength: UInt32) -> [UInt8] {
        var bytes: [UInt8] = .zeros(8)
        bytes.storeBigEndian(blockCount > UInt64(UInt32.max) ? UInt32.max : UInt32(blockCount), at: 0)
        bytes[5] = UInt8(truncatingIfNeeded: blockLength >> 16)
        bytes[6] = UInt8(truncatingIfNeeded: blockLength >> 8)
        bytes[7] = UInt8(truncatingIfNeeded: blockLength)
        return bytes
    }

    /// The long LBA block descriptor (SBC-3 §6.4.2.3): number of blocks BE64 @0, block length
    /// BE32 @12.
    public static func longBlockDescriptor(blockCount: UInt64, blockLength: UInt32) -> [UInt8] {
        var bytes: [UInt8] = .zeros(16)
        bytes.storeBigEndian(blockCount, at: 0)
        bytes.storeBigEndian(blockLength, at: 12)
        return bytes
    }

    /// The header length for this CDB size.
    public var headerLength: Int { isTenByte ? 8 : 4 }

    /// The whole data, header lengths describing everything. A MODE SENSE(6) answer longer
    /// than 256 bytes cannot be described and is cut to 256 (never the case for this device).
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(headerLength)
        bytes += blockDescriptors
        bytes += pages
        if isTenByte {
            bytes.storeBigEndian(UInt16(truncatingIfNeeded: bytes.count - 2), at: 0)
            bytes[3] = deviceSpecific.rawValue
            bytes[4] = longLBA ? 1 : 0
            bytes.storeBigEndian(UInt16(truncatingIfNeeded: blockDescriptors.count), at: 6)
        } else {
            bytes = bytes.truncated(to: 256)
            bytes[0] = UInt8(truncatingIfNeeded: bytes.count - 1)
            bytes[2] = deviceSpecific.rawValue
            bytes[3] = UInt8(truncatingIfNeeded: blockDescriptors.count)
        }
        return bytes
    }

    /// Parses mode parameter data returned for a MODE SENSE of the given size; block
    /// descriptors and pages are cut to the bytes present.
    public init(parsing bytes: [UInt8], isTenByte: Bool) throws(StorageProtocolError) {
        let headerLength = isTenByte ? 8 : 4
        guard bytes.count >= headerLength else { throw .truncated(needed: headerLength, available: bytes.count) }
        self.isTenByte = isTenByte
        let dataLength: Int
        let descriptorLength: Int
        if isTenByte {
            dataLength = Int(bytes.bigEndian(UInt16.self, at: 0) ?? 0) + 2
            deviceSpecific = DeviceSpecificParameter(rawValue: bytes[3])
            longLBA = bytes[4] & 1 != 0
            descriptorLength = Int(bytes.bigEndian(UInt16.self, at: 6) ?? 0)
        } else {
            dataLength = Int(bytes[0]) + 1
            deviceSpecific = DeviceSpecificParameter(rawValue: bytes[2])
            longLBA = false
            descriptorLength = Int(bytes[3])
        }
        let end = min(bytes.count, max(dataLength, headerLength))
        let descriptorEnd = min(end, headerLength + descriptorLength)
        blockDescriptors = Array(bytes[headerLength..<descriptorEnd])
        pages = Array(bytes[descriptorEnd..<end])
    }

    /// The first page with `pageCode` among the pages present (page_0 format: code @0, length
    /// @1; sub-page format: code | 0x40 @0, length BE16 @2).
    public func page(_ pageCode: UInt8) -> [UInt8]? {
        var offset = 0
        while offset + 2 <= pages.count {
            let code = pages[offset] & 0x3F
            let subPageFormat = pages[offset] & 0x40 != 0
            let length: Int
            if subPageFormat {
                guard offset + 4 <= pages.count, let value = pages.bigEndian(UInt16.self, at: offset + 2) else { return nil }
                length = Int(value) + 4
            } else {
                length = Int(pages[offset + 1]) + 2
            }
            if code == pageCode { return Array(pages[offset..<min(pages.count, offset + length)]) }
            offset += length
        }
        return nil
    }
}
