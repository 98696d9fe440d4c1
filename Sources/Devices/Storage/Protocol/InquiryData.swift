import HyperV

/// Standard INQUIRY data (SPC-4 §6.6.2), the 36-byte form: peripheral qualifier and device
/// type @0, RMB @1 bit 7, version @2, HISUP @3 bit 4 and response data format @3, additional
/// length @4 (= 31), CMDQUE @7 bit 1, vendor @8 (8 bytes), product @16 (16), revision @32 (4).

public struct StandardInquiryData: Hashable, Sendable {
    /// Size of the form this type writes.
    public static let size = 36

    /// 0: a unit is connected; 3: the target cannot have a unit here (with device type 0x1F
    /// that is byte 0 = 0x7F, what Linux needs for an absent LUN, `scsi_probe_lun`).
    public var peripheralQualifier: UInt8
    /// 0: direct-access block device; 0x1F: unknown or none.
    public var deviceType: UInt8
    public var removable: Bool
    /// 5: SPC-3 (Linux then tries READ CAPACITY(16) first); 6: SPC-4.
    public var version: UInt8
    public var hierarchicalSupport: Bool
    /// CMDQUE: the unit queues commands (Linux then tags its requests).
    public var commandQueueing: Bool
    /// T10 vendor identification, space padded to 8 bytes.
    public var vendor: [UInt8]
    /// Product identification, space padded to 16 bytes.
    public var product: [UInt8]
    /// Product revision level, space padded to 4 bytes.
    public var revision: [UInt8]

    public init(peripheralQualifier: UInt8 = 0, deviceType: UInt8 = 0, removable: Bool = false, version: UInt8 = 5,
                hierarchicalSupport: Bool = false, commandQueueing: Bool = true,
                vendor: [UInt8], product: [UInt8], revision: [UInt8]) {
        self.peripheralQualifier = peripheralQualifier & 7
        self.deviceType = deviceType & 0x1F
        self.removable = removable
        self.version = version
        self.hierarchicalSupport = hierarchicalSupport
        self.commandQueueing = commandQueueing
        self.vendor = Self.field(vendor, width: 8)
        self.product = Self.field(product, width: 16)
        self.revision = Self.field(revision, width: 4)
    }

    /// `text` cut or space-padded to `width` bytes (SPC-4 §4.4.1 ASCII fields).
    public static func field(_ text: [UInt8], width: Int) -> [UInt8] {
        var bytes = text.truncated(to: width)
        while bytes.count < width { bytes.append(0x20) }
        return bytes
    }

    /// Byte 0 on its own.
    public var peripheralByte: UInt8 { peripheralQualifier << 5 | deviceType }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(Self.size)
        bytes[0] = peripheralByte
        bytes[1] = removable ? 0x80 : 0
        bytes[2] = version
        bytes[3] = (hierarchicalSupport ? 0x10 : 0) | 0x02
        bytes[4] = UInt8(Self.size - 5)
        bytes[7] = commandQueueing ? 0x02 : 0
        for index in 0..<8 { bytes[8 + index] = vendor[index] }
        for index in 0..<16 { bytes[16 + index] = product[index] }
        for index in 0..<4 { bytes[32 + index] = revision[index] }
        return bytes
    }

    /// Parses at least the first 36 bytes of standard INQUIRY data.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard bytes.count >= Self.size else { throw .truncated(needed: Self.size, available: bytes.count) }
        peripheralQualifier = bytes[0] >> 5
        deviceType = bytes[0] & 0x1F
        removable = bytes[1] & 0x80 != 0
        version = bytes[2]
        hierarchicalSupport = bytes[3] & 0x10 != 0
        commandQueueing = bytes[7] & 0x02 != 0
        vendor = Array(bytes[8..<16])
        product = Array(bytes[16..<32])
        revision = Array(bytes[32..<36])
    }
}

/// A vital product data page (SPC-4 §7.8): peripheral byte @0, page code @1, page length BE16
/// @2, then the page's own bytes.
public struct VitalProductDataPage: Hashable, Sendable {
    /// 0x00 SUPPORTED VPD PAGES.
    public static let supportedPages: UInt8 = 0x00
    /// 0x80 UNIT SERIAL NUMBER.
    public static let unitSerialNumber: UInt8 = 0x80
    /// 0x83 DEVICE IDENTIFICATION.
    public static let deviceIdentification: UInt8 = 0x83
    /// 0xB0 BLOCK LIMITS (SBC-3 §6.5.3).
    public static let blockLimits: UInt8 = 0xB0
    /// 0xB1 BLOCK DEVICE CHARACTERISTICS (SBC-3 §6.5.2).
    public static let blockDeviceCharacteristics: UInt8 = 0xB1
    /// 0xB2 LOGICAL BLOCK PROVISIONING (SBC-3 §6.5.4).
    public static let logicalBlockProvisioning: UInt8 = 0xB2

    public var peripheralByte: UInt8
    public var pageCode: UInt8
    /// The bytes after the 4-byte header.
    public var content: [UInt8]

    public init(peripheralByte: UInt8 = 0, pageCode: UInt8, content: [UInt8]) {
        self.peripheralByte = peripheralByte
        self.pageCode = pageCode
        self.content = content
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = [peripheralByte, pageCode]
        bytes.appendBigEndian(UInt16(truncatingIfNeeded: content.count))
        bytes.append(contentsOf: content)
        return bytes
    }

    /// Parses a page; the content is cut to the bytes present if the page length says more.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard bytes.count >= 4, let length = bytes.bigEndian(UInt16.self, at: 2) else {
            throw .truncated(needed: 4, available: bytes.count)
        }
        peripheralByte = bytes[0]
        pageCode = bytes[1]
        content = Array(bytes[4..<min(bytes.count, 4 + Int(length))])
    }

    /// SUPPORTED VPD PAGES listing `pages` in ascending order.
    public static func supported(_ pages: [UInt8], peripheralByte: UInt8 = 0) -> VitalProductDataPage {
        VitalProductDataPage(peripheralByte: peripheralByte, pageCode: supportedPages, content: pages.sorted())
    }

    /// UNIT SERIAL NUMBER: the ASCII serial.
    public static func serialNumber(_ serial: [UInt8], peripheralByte: UInt8 = 0) -> VitalProductDataPage {
        VitalProductDataPage(peripheralByte: peripheralByte, pageCode: unitSerialNumber, content: serial)
    }

    /// DEVICE IDENTIFICATION with one T10 vendor ID designator (SPC-4 §7.8.6.4: code set 2
    /// ASCII, association 0 logical unit, type 1): the 8-byte vendor followed by
    /// `vendorSpecific` (product and serial here).
    public static func t10Identification(vendor: [UInt8], vendorSpecific: [UInt8],
                                         peripheralByte: UInt8 = 0) -> VitalProductDataPage {
        let designator = StandardInquiryData.field(vendor, width: 8) + vendorSpecific.truncated(to: 247)
        let content: [UInt8] = [0x02, 0x01, 0x00, UInt8(designator.count)] + designator
        return VitalProductDataPage(peripheralByte: peripheralByte, pageCode: deviceIdentification, content: content)
    }
}

/// The BLOCK LIMITS VPD page (0xB0, SBC-3 §6.5.3), 64 bytes: optimal transfer length
/// granularity BE16 @6, maximum transfer length BE32 @8, optimal transfer length BE32 @12,
/// maximum unmap LBA count BE32 @20, maximum unmap block descriptor count BE32 @24, optimal
/// unmap granularity BE32 @28, UGAVALID and unmap granularity alignment BE32 @32, maximum
/// WRITE SAME length BE64 @36. Linux needs all 64 bytes to read the unmap fields.
public struct BlockLimitsPage: Hashable, Sendable {
    public static let pageLength = 0x3C

    public var optimalTransferLengthGranularity: UInt16
    public var maximumTransferLength: UInt32
    public var optimalTransferLength: UInt32
    public var maximumUnmapLBACount: UInt32
    public var maximumUnmapBlockDescriptorCount: UInt32
    public var optimalUnmapGranularity: UInt32
    public var unmapGranularityAlignment: UInt32?
    public var maximumWriteSameLength: UInt64

    public init(optimalTransferLengthGranularity: UInt16 = 0, maximumTransferLength: UInt32 = 0,
                optimalTransferLength: UInt32 = 0, maximumUnmapLBACount: UInt32 = 0,
                maximumUnmapBlockDescriptorCount: UInt32 = 0, optimalUnmapGranularity: UInt32 = 0,
                unmapGranularityAlignment: UInt32? = nil, maximumWriteSameLength: UInt64 = 0) {
        self.optimalTransferLengthGranularity = optimalTransferLengthGranularity
        self.maximumTransferLength = maximumTransferLength
        self.optimalTransferLength = optimalTransferLength
        self.maximumUnmapLBACount = maximumUnmapLBACount
        self.maximumUnmapBlockDescriptorCount = maximumUnmapBlockDescriptorCount
        self.optimalUnmapGranularity = optimalUnmapGranularity
        self.unmapGranularityAlignment = unmapGranularityAlignment
        self.maximumWriteSameLength = maximumWriteSameLength
    }

    public func page(peripheralByte: UInt8 = 0) -> VitalProductDataPage {
        var content: [UInt8] = .zeros(Self.pageLength)
        // Offsets below are from the page start; content starts 4 bytes in.
        content.storeBigEndian(optimalTransferLengthGranularity, at: 6 - 4)
        content.storeBigEndian(maximumTransferLength, at: 8 - 4)
        content.storeBigEndian(optimalTransferLength, at: 12 - 4)
        content.storeBigEndian(maximumUnmapLBACount, at: 20 - 4)
        content.storeBigEndian(maximumUnmapBlockDescriptorCount, at: 24 - 4)
        content.storeBigEndian(optimalUnmapGranularity, at: 28 - 4)
        if let unmapGranularityAlignment {
            content.storeBigEndian(0x8000_0000 | (unmapGranularityAlignment & 0x7FFF_FFFF), at: 32 - 4)
        }
        content.storeBigEndian(maximumWriteSameLength, at: 36 - 4)
        return VitalProductDataPage(peripheralByte: peripheralByte, pageCode: VitalProductDataPage.blockLimits, content: content)
    }

    /// Reads the fields from a page's content (zero where the page is short).
    public init(page: VitalProductDataPage) {
        let content = page.content
        optimalTransferLengthGranularity = content.bigEndian(UInt16.self, at: 2) ?? 0
        maximumTransferLength = content.bigEndian(UInt32.self, at: 4) ?? 0
        optimalTransferLength = content.bigEndian(UInt32.self, at: 8) ?? 0
        maximumUnmapLBACount = content.bigEndian(UInt32.self, at: 16) ?? 0
        maximumUnmapBlockDescriptorCount = content.bigEndian(UInt32.self, at: 20) ?? 0
        optimalUnmapGranularity = content.bigEndian(UInt32.self, at: 24) ?? 0
        let alignment = content.bigEndian(UInt32.self, at: 28) ?? 0
        unmapGranularityAlignment = alignment & 0x8000_0000 != 0 ? alignment & 0x7FFF_FFFF : nil
        maximumWriteSameLength = content.bigEndian(UInt64.self, at: 32) ?? 0
    }
}

/// The BLOCK DEVICE CHARACTERISTICS VPD page (0xB1, SBC-3 §6.5.2), 64 bytes: medium rotation
/// rate BE16 @4 (1 = non-rotating, which makes Linux mark the queue non-rotational), nominal
/// form factor @7 bits 3-0.
public struct BlockDeviceCharacteristicsPage: Hashable, Sendable {
    public static let pageLength = 0x3C
    /// The rotation rate of a solid-state medium.
    public static let nonRotating: UInt16 = 1

    public var mediumRotationRate: UInt16
    public var nominalFormFactor: UInt8

    public init(mediumRotationRate: UInt16, nominalFormFactor: UInt8 = 0) {
        self.mediumRotationRate = mediumRotationRate
        self.nominalFormFactor = nominalFormFactor & 0x0F
    }

    public func page(peripheralByte: UInt8 = 0) -> VitalProductDataPage {
        var content: [UInt8] = .zeros(Self.pageLength)
        content.storeBigEndian(mediumRotationRate, at: 0)
        content[3] = nominalFormFactor & 0x0F
        return VitalProductDataPage(peripheralByte: peripheralByte, pageCode: VitalProductDataPage.blockDeviceCharacteristics,
                                    content: content)
    }
}

/// The LOGICAL BLOCK PROVISIONING VPD page (0xB2, SBC-3 §6.5.4), 8 bytes: threshold exponent
/// @4; LBPU @5 bit 7 (UNMAP), LBPWS bit 6, LBPWS10 bit 5, LBPRZ bit 2 (unmapped blocks read
/// as zero), ANC_SUP bit 1, DP bit 0; provisioning type @6 bits 2-0 (0 full, 2 thin).
public struct LogicalBlockProvisioningPage: Hashable, Sendable {
    public static let pageLength = 4

    public var thresholdExponent: UInt8
    public var unmapSupported: Bool
    public var writeSame16UnmapSupported: Bool
    public var writeSame10UnmapSupported: Bool
    public var unmappedReadsZero: Bool
    public var anchorSupported: Bool
    public var provisioningType: UInt8

    public init(unmapSupported: Bool, unmappedReadsZero: Bool, provisioningType: UInt8, thresholdExponent: UInt8 = 0,
                writeSame16UnmapSupported: Bool = false, writeSame10UnmapSupported: Bool = false, anchorSupported: Bool = false) {
        self.thresholdExponent = thresholdExponent
        self.unmapSupported = unmapSupported
        self.writeSame16UnmapSupported = writeSame16UnmapSupported
        self.writeSame10UnmapSupported = writeSame10UnmapSupported
        self.unmappedReadsZero = unmappedReadsZero
        self.anchorSupported = anchorSupported
        self.provisioningType = provisioningType & 7
    }

    public func page(peripheralByte: UInt8 = 0) -> VitalProductDataPage {
        var content: [UInt8] = .zeros(Self.pageLength)
        content[0] = thresholdExponent
        content[1] = (unmapSupported ? 0x80 : 0) | (writeSame16UnmapSupported ? 0x40 : 0)
            | (writeSame10UnmapSupported ? 0x20 : 0) | (unmappedReadsZero ? 0x04 : 0) | (anchorSupported ? 0x02 : 0)
        content[2] = provisioningType & 7
        return VitalProductDataPage(peripheralByte: peripheralByte, pageCode: VitalProductDataPage.logicalBlockProvisioning,
                                    content: content)
    }

    /// Reads the fields from a page's content (false/zero where the page is short).
    public init(page: VitalProductDataPage) {
        let content = page.content
        let flags = content.count > 1 ? content[1] : 0
        thresholdExponent = content.first ?? 0
        unmapSupported = flags & 0x80 != 0
        writeSame16UnmapSupported = flags & 0x40 != 0
        writeSame10UnmapSupported = flags & 0x20 != 0
        unmappedReadsZero = flags & 0x04 != 0
        anchorSupported = flags & 0x02 != 0
        provisioningType = content.count > 2 ? content[2] & 7 : 0
    }
}
