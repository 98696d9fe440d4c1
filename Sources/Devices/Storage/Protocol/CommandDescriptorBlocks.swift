// The CDBs both ends of the storage channel use (SPC-4, SBC-3): each has an encoder (`bytes`)
// for the guest's driver and a total decoder (`init(parsing:)`) for the host's device server.
// Decoders only check the structure (length and defined fields); what the values mean for a
// given logical unit (ranges, capacity, support) is the device server's business.

import HyperV

/// TEST UNIT READY (0x00, 6 bytes).
public struct TestUnitReadyCDB: Hashable, Sendable {
    public init() {}
    public var bytes: [UInt8] { .zeros(6) }
}

/// REQUEST SENSE (0x03, 6 bytes): DESC @1 bit 0, allocation length @4.
public struct RequestSenseCDB: Hashable, Sendable {
    /// Ask for descriptor-format sense.
    public var descriptorFormat: Bool
    public var allocationLength: UInt8

    public init(descriptorFormat: Bool = false, allocationLength: UInt8 = UInt8(SenseData.fixedSize)) {
        self.descriptorFormat = descriptorFormat
        self.allocationLength = allocationLength
    }

    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.requestSense, length: 6)
        descriptorFormat = cdb[1] & 1 != 0
        allocationLength = cdb[4]
    }

    public var bytes: [UInt8] {
        [SCSIOperationCode.requestSense.rawValue, descriptorFormat ? 1 : 0, 0, 0, allocationLength, 0]
    }
}

/// INQUIRY (0x12, 6 bytes): EVPD @1 bit 0 (CMDDT @1 bit 1 is obsolete and refused), page code
/// @2, allocation length BE16 @3.
public struct InquiryCDB: Hashable, Sendable {
    /// Ask for a vital product data page rather than the standard data.
    public var vitalProductData: Bool
    public var pageCode: UInt8
    public var allocationLength: UInt16

    public init(vitalProductData: Bool = false, pageCode: UInt8 = 0, allocationLength: UInt16 = 36) {
        self.vitalProductData = vitalProductData
        self.pageCode = pageCode
        self.allocationLength = allocationLength
    }

    /// - Throws: `.invalidField` for CMDDT, or for a page code without EVPD.
    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.inquiry, length: 6)
        guard cdb[1] & 0x02 == 0 else { throw .invalidField(byte: 1, bit: 1) }
        vitalProductData = cdb[1] & 1 != 0
        pageCode = cdb[2]
        guard vitalProductData || pageCode == 0 else { throw .invalidField(byte: 2, bit: 7) }
        allocationLength = cdb.bigEndian(UInt16.self, at: 3) ?? 0
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = [SCSIOperationCode.inquiry.rawValue, vitalProductData ? 1 : 0, pageCode, 0, 0, 0]
        bytes.storeBigEndian(allocationLength, at: 3)
        return bytes
    }
}

/// REPORT LUNS (0xA0, 12 bytes): SELECT REPORT @2, allocation length BE32 @6.
public struct ReportLUNsCDB: Hashable, Sendable {
    /// 0: all logical units with a LUN; 1: well-known ones; 2: all.
    public var selectReport: UInt8
    public var allocationLength: UInt32

    public init(selectReport: UInt8 = 0, allocationLength: UInt32 = 4096) {
        self.selectReport = selectReport
        self.allocationLength = allocationLength
    }

    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.reportLUNs, length: 12)
        selectReport = cdb[2]
        allocationLength = cdb.bigEndian(UInt32.self, at: 6) ?? 0
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(12)
        bytes[0] = SCSIOperationCode.reportLUNs.rawValue
        bytes[2] = selectReport
        bytes.storeBigEndian(allocationLength, at: 6)
        return bytes
    }
}

/// READ CAPACITY(10) (0x25, 10 bytes): LBA BE32 @2 (must be 0 unless PMI), PMI @8 bit 0.
public struct ReadCapacity10CDB: Hashable, Sendable {
    public var logicalBlockAddress: UInt32
    public var partialMediumIndicator: Bool

    public init(logicalBlockAddress: UInt32 = 0, partialMediumIndicator: Bool = false) {
        self.logicalBlockAddress = logicalBlockAddress
        self.partialMediumIndicator = partialMediumIndicator
    }

    /// - Throws: `.invalidField` for a non-zero LBA without PMI (SBC-3 §5.15.1).
    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.readCapacity10, length: 10)
        logicalBlockAddress = cdb.bigEndian(UInt32.self, at: 2) ?? 0
        partialMediumIndicator = cdb[8] & 1 != 0
        guard partialMediumIndicator || logicalBlockAddress == 0 else { throw .invalidField(byte: 2, bit: 7) }
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(10)
        bytes[0] = SCSIOperationCode.readCapacity10.rawValue
        bytes.storeBigEndian(logicalBlockAddress, at: 2)
        bytes[8] = partialMediumIndicator ? 1 : 0
        return bytes
    }
}

/// READ CAPACITY(16): SERVICE ACTION IN(16) (0x9E, 16 bytes) with service action 0x10 @1,
/// LBA BE64 @2, allocation length BE32 @10, PMI @14 bit 0.
public struct ReadCapacity16CDB: Hashable, Sendable {
    /// The service action of SERVICE ACTION IN(16) that reads the capacity.
    public static let serviceAction: UInt8 = 0x10

    public var logicalBlockAddress: UInt64
    public var allocationLength: UInt32
    public var partialMediumIndicator: Bool

    public init(allocationLength: UInt32 = 32, logicalBlockAddress: UInt64 = 0, partialMediumIndicator: Bool = false) {
        self.logicalBlockAddress = logicalBlockAddress
        self.allocationLength = allocationLength
        self.partialMediumIndicator = partialMediumIndicator
    }

    /// - Throws: `.invalidField` for another service action, or a non-zero LBA without PMI.
    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.serviceActionIn16, length: 16)
        guard cdb[1] & 0x1F == Self.serviceAction else { throw .invalidField(byte: 1, bit: 4) }
        logicalBlockAddress = cdb.bigEndian(UInt64.self, at: 2) ?? 0
        allocationLength = cdb.bigEndian(UInt32.self, at: 10) ?? 0
        partialMediumIndicator = cdb[14] & 1 != 0
        guard partialMediumIndicator || logicalBlockAddress == 0 else { throw .invalidField(byte: 2, bit: 7) }
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(16)
        bytes[0] = SCSIOperationCode.serviceActionIn16.rawValue
        bytes[1] = Self.serviceAction
        bytes.storeBigEndian(logicalBlockAddress, at: 2)
        bytes.storeBigEndian(allocationLength, at: 10)
        bytes[14] = partialMediumIndicator ? 1 : 0
        return bytes
    }
}

/// The page control field of MODE SENSE (SPC-4 §6.11.1, table 157).
public struct PageControl: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 3 }

    public static let current = PageControl(rawValue: 0)
    public static let changeable = PageControl(rawValue: 1)
    public static let defaults = PageControl(rawValue: 2)
    public static let saved = PageControl(rawValue: 3)
}

/// MODE SENSE(6) (0x1A: DBD @1 bit 3, PC/page @2, subpage @3, allocation length @4) and
/// MODE SENSE(10) (0x5A: LLBAA @1 bit 4, DBD @1 bit 3, PC/page @2, subpage @3, allocation
/// length BE16 @7).
public struct ModeSenseCDB: Hashable, Sendable {
    /// The page code that asks for every page.
    public static let allPages: UInt8 = 0x3F

    /// MODE SENSE(10) rather than MODE SENSE(6).
    public var isTenByte: Bool
    /// DBD: no block descriptors.
    public var disableBlockDescriptors: Bool
    /// LLBAA (10-byte only): long LBA block descriptors are acceptable.
    public var longLBAAccepted: Bool
    public var pageControl: PageControl
    public var pageCode: UInt8
    public var subpageCode: UInt8
    public var allocationLength: UInt16

    public init(isTenByte: Bool = false, disableBlockDescriptors: Bool = false, longLBAAccepted: Bool = false,
                pageControl: PageControl = .current, pageCode: UInt8, subpageCode: UInt8 = 0, allocationLength: UInt16) {
        self.isTenByte = isTenByte
        self.disableBlockDescriptors = disableBlockDescriptors
        self.longLBAAccepted = longLBAAccepted
        self.pageControl = pageControl
        self.pageCode = pageCode & 0x3F
        self.subpageCode = subpageCode
        self.allocationLength = allocationLength
    }

    /// Decodes either length by its opcode.
    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        guard let opcode = cdb.first.map(SCSIOperationCode.init(rawValue:)) else { throw .empty }
        isTenByte = opcode == .modeSense10
        try cdb.requireCDB(opcode, length: isTenByte ? 10 : 6)
        disableBlockDescriptors = cdb[1] & 0x08 != 0
        longLBAAccepted = isTenByte && cdb[1] & 0x10 != 0
        pageControl = PageControl(rawValue: cdb[2] >> 6)
        pageCode = cdb[2] & 0x3F
        subpageCode = cdb[3]
        allocationLength = isTenByte ? (cdb.bigEndian(UInt16.self, at: 7) ?? 0) : UInt16(cdb[4])
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(isTenByte ? 10 : 6)
        bytes[0] = isTenByte ? SCSIOperationCode.modeSense10.rawValue : SCSIOperationCode.modeSense6.rawValue
        bytes[1] = (disableBlockDescriptors ? 0x08 : 0) | (isTenByte && longLBAAccepted ? 0x10 : 0)
        bytes[2] = pageControl.rawValue << 6 | (pageCode & 0x3F)
        bytes[3] = subpageCode
        if isTenByte {
            bytes.storeBigEndian(allocationLength, at: 7)
        } else {
            bytes[4] = UInt8(truncatingIfNeeded: min(allocationLength, 255))
        }
        return bytes
    }
}

/// READ and WRITE in their four sizes (SBC-3 §5.7-5.11, §5.31-5.35):
///
/// - 6 bytes (0x08/0x0A): LBA 21 bits @1-3, transfer length @4 (0 means 256 blocks);
/// - 10 bytes (0x28/0x2A): RD/WRPROTECT @1 bits 7-5, DPO @1 bit 4, FUA @1 bit 3, LBA BE32 @2,
///   group @6, transfer length BE16 @7;
/// - 12 bytes (0xA8/0xAA): as 10 with transfer length BE32 @6, group @10;
/// - 16 bytes (0x88/0x8A): as 10 with LBA BE64 @2, transfer length BE32 @10, group @14.
public struct ReadWriteCDB: Hashable, Sendable {
    /// Which way the data flows.
    public enum Direction: Hashable, Sendable {
        case read
        case write
    }

    public var direction: Direction
    /// The CDB size: 6, 10, 12 or 16.
    public var size: Int
    public var logicalBlockAddress: UInt64
    /// Blocks to transfer (already 256 for a READ(6)/WRITE(6) with length 0).
    public var transferLength: UInt32
    /// FUA: the data must reach (or come from) non-volatile storage.
    public var forceUnitAccess: Bool
    /// DPO: a caching hint.
    public var disablePageOut: Bool
    /// RDPROTECT/WRPROTECT (protection information); this device has none.
    public var protect: UInt8
    public var groupNumber: UInt8

    /// A CDB of the given size. The caller keeps the values within what that size encodes;
    /// `smallest` picks a size that does.
    public init(direction: Direction, size: Int = 10, logicalBlockAddress: UInt64, transferLength: UInt32,
                forceUnitAccess: Bool = false, disablePageOut: Bool = false) {
        self.direction = direction
        self.size = size
        self.logicalBlockAddress = logicalBlockAddress
        self.transferLength = transferLength
        self.forceUnitAccess = forceUnitAccess
        self.disablePageOut = disablePageOut
        protect = 0
        groupNumber = 0
    }

    /// The 10-byte CDB when the LBA and length fit it (as Linux's sd prefers), else 16 bytes.
    public static func smallest(direction: Direction, logicalBlockAddress: UInt64, transferLength: UInt32,
                                forceUnitAccess: Bool = false) -> ReadWriteCDB {
        let fitsTen = logicalBlockAddress <= UInt64(UInt32.max) && transferLength <= UInt32(UInt16.max)
        return ReadWriteCDB(direction: direction, size: fitsTen ? 10 : 16, logicalBlockAddress: logicalBlockAddress,
                            transferLength: transferLength, forceUnitAccess: forceUnitAccess)
    }

    /// Decodes any of the eight opcodes.
    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        guard let first = cdb.first else { throw .empty }
        let opcode = SCSIOperationCode(rawValue: first)
        switch opcode {
        case .read6, .read10, .read12, .read16: direction = .read
        case .write6, .write10, .write12, .write16: direction = .write
        default: throw .invalidField(byte: 0, bit: nil)
        }
        switch opcode {
        case .read6, .write6:
            try cdb.requireCDB(opcode, length: 6)
            size = 6
            logicalBlockAddress = UInt64(cdb[1] & 0x1F) << 16 | UInt64(cdb[2]) << 8 | UInt64(cdb[3])
            transferLength = cdb[4] == 0 ? 256 : UInt32(cdb[4])
            forceUnitAccess = false
            disablePageOut = false
            protect = 0
            groupNumber = 0
            return
        case .read10, .write10:
            try cdb.requireCDB(opcode, length: 10)
            size = 10
            logicalBlockAddress = UInt64(cdb.bigEndian(UInt32.self, at: 2) ?? 0)
            transferLength = UInt32(cdb.bigEndian(UInt16.self, at: 7) ?? 0)
            groupNumber = cdb[6] & 0x1F
        case .read12, .write12:
            try cdb.requireCDB(opcode, length: 12)
            size = 12
            logicalBlockAddress = UInt64(cdb.bigEndian(UInt32.self, at: 2) ?? 0)
            transferLength = cdb.bigEndian(UInt32.self, at: 6) ?? 0
            groupNumber = cdb[10] & 0x1F
        default:
            try cdb.requireCDB(opcode, length: 16)
            size = 16
            logicalBlockAddress = cdb.bigEndian(UInt64.self, at: 2) ?? 0
            transferLength = cdb.bigEndian(UInt32.self, at: 10) ?? 0
            groupNumber = cdb[14] & 0x1F
        }
        protect = cdb[1] >> 5
        disablePageOut = cdb[1] & 0x10 != 0
        forceUnitAccess = cdb[1] & 0x08 != 0
    }

    /// The operation code for this direction and size.
    public var opcode: SCSIOperationCode {
        switch (direction, size) {
        case (.read, 6): .read6
        case (.write, 6): .write6
        case (.read, 12): .read12
        case (.write, 12): .write12
        case (.read, 16): .read16
        case (.write, 16): .write16
        case (.read, _): .read10
        case (.write, _): .write10
        }
    }

    public var bytes: [UInt8] {
        let length = [6, 10, 12, 16].contains(size) ? size : 10
        var bytes: [UInt8] = .zeros(length)
        bytes[0] = opcode.rawValue
        if length == 6 {
            bytes[1] = UInt8(truncatingIfNeeded: logicalBlockAddress >> 16) & 0x1F
            bytes[2] = UInt8(truncatingIfNeeded: logicalBlockAddress >> 8)
            bytes[3] = UInt8(truncatingIfNeeded: logicalBlockAddress)
            bytes[4] = UInt8(truncatingIfNeeded: transferLength)
            return bytes
        }
        bytes[1] = (protect & 7) << 5 | (disablePageOut ? 0x10 : 0) | (forceUnitAccess ? 0x08 : 0)
        switch length {
        case 10:
            bytes.storeBigEndian(UInt32(truncatingIfNeeded: logicalBlockAddress), at: 2)
            bytes[6] = groupNumber & 0x1F
            bytes.storeBigEndian(UInt16(truncatingIfNeeded: transferLength), at: 7)
        case 12:
            bytes.storeBigEndian(UInt32(truncatingIfNeeded: logicalBlockAddress), at: 2)
            bytes.storeBigEndian(transferLength, at: 6)
            bytes[10] = groupNumber & 0x1F
        default:
            bytes.storeBigEndian(logicalBlockAddress, at: 2)
            bytes.storeBigEndian(transferLength, at: 10)
            bytes[14] = groupNumber & 0x1F
        }
        return bytes
    }
}

/// SYNCHRONIZE CACHE(10) (0x35: IMMED @1 bit 1, LBA BE32 @2, group @6, blocks BE16 @7) and
/// SYNCHRONIZE CACHE(16) (0x91: IMMED @1 bit 1, LBA BE64 @2, blocks BE32 @10, group @14).
/// Zero blocks means "to the end of the medium".
public struct SynchronizeCacheCDB: Hashable, Sendable {
    public var isSixteenByte: Bool
    public var immediate: Bool
    public var logicalBlockAddress: UInt64
    public var blockCount: UInt32

    public init(isSixteenByte: Bool = false, immediate: Bool = false, logicalBlockAddress: UInt64 = 0, blockCount: UInt32 = 0) {
        self.isSixteenByte = isSixteenByte
        self.immediate = immediate
        self.logicalBlockAddress = logicalBlockAddress
        self.blockCount = blockCount
    }

    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        guard let opcode = cdb.first.map(SCSIOperationCode.init(rawValue:)) else { throw .empty }
        isSixteenByte = opcode == .synchronizeCache16
        try cdb.requireCDB(opcode, length: isSixteenByte ? 16 : 10)
        immediate = cdb[1] & 0x02 != 0
        if isSixteenByte {
            logicalBlockAddress = cdb.bigEndian(UInt64.self, at: 2) ?? 0
            blockCount = cdb.bigEndian(UInt32.self, at: 10) ?? 0
        } else {
            logicalBlockAddress = UInt64(cdb.bigEndian(UInt32.self, at: 2) ?? 0)
            blockCount = UInt32(cdb.bigEndian(UInt16.self, at: 7) ?? 0)
        }
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(isSixteenByte ? 16 : 10)
        bytes[0] = isSixteenByte ? SCSIOperationCode.synchronizeCache16.rawValue : SCSIOperationCode.synchronizeCache10.rawValue
        bytes[1] = immediate ? 0x02 : 0
        if isSixteenByte {
            bytes.storeBigEndian(logicalBlockAddress, at: 2)
            bytes.storeBigEndian(blockCount, at: 10)
        } else {
            bytes.storeBigEndian(UInt32(truncatingIfNeeded: logicalBlockAddress), at: 2)
            bytes.storeBigEndian(UInt16(truncatingIfNeeded: blockCount), at: 7)
        }
        return bytes
    }
}

/// UNMAP (0x42, 10 bytes): ANCHOR @1 bit 0, group @6, parameter list length BE16 @7. The
/// parameter list (`UnmapParameterList`) follows as data-out.
public struct UnmapCDB: Hashable, Sendable {
    public var anchor: Bool
    public var groupNumber: UInt8
    public var parameterListLength: UInt16

    public init(anchor: Bool = false, parameterListLength: UInt16) {
        self.anchor = anchor
        groupNumber = 0
        self.parameterListLength = parameterListLength
    }

    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.unmap, length: 10)
        anchor = cdb[1] & 1 != 0
        groupNumber = cdb[6] & 0x1F
        parameterListLength = cdb.bigEndian(UInt16.self, at: 7) ?? 0
    }

    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(10)
        bytes[0] = SCSIOperationCode.unmap.rawValue
        bytes[1] = anchor ? 1 : 0
        bytes[6] = groupNumber & 0x1F
        bytes.storeBigEndian(parameterListLength, at: 7)
        return bytes
    }
}

/// START STOP UNIT (0x1B, 6 bytes): IMMED @1 bit 0, power condition modifier @3, POWER
/// CONDITION @4 bits 7-4, NO_FLUSH @4 bit 2, LOEJ @4 bit 1, START @4 bit 0.
public struct StartStopUnitCDB: Hashable, Sendable {
    public var immediate: Bool
    public var powerConditionModifier: UInt8
    /// 0 (START_VALID): the START bit decides; other values change power states only.
    public var powerCondition: UInt8
    public var noFlush: Bool
    public var loadEject: Bool
    public var start: Bool

    public init(start: Bool, immediate: Bool = false, loadEject: Bool = false, powerCondition: UInt8 = 0) {
        self.immediate = immediate
        powerConditionModifier = 0
        self.powerCondition = powerCondition & 0x0F
        noFlush = false
        self.loadEject = loadEject
        self.start = start
    }

    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        try cdb.requireCDB(.startStopUnit, length: 6)
        immediate = cdb[1] & 1 != 0
        powerConditionModifier = cdb[3] & 0x0F
        powerCondition = cdb[4] >> 4
        noFlush = cdb[4] & 0x04 != 0
        loadEject = cdb[4] & 0x02 != 0
        start = cdb[4] & 0x01 != 0
    }

    public var bytes: [UInt8] {
        [SCSIOperationCode.startStopUnit.rawValue, immediate ? 1 : 0, 0, powerConditionModifier & 0x0F,
         powerCondition << 4 | (noFlush ? 0x04 : 0) | (loadEject ? 0x02 : 0) | (start ? 0x01 : 0), 0]
    }
}
