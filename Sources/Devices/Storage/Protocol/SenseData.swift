import HyperV

/// The sense key (SPC-4 §4.5.6, table 52).
public struct SenseKey: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x0F }

    public static let noSense = SenseKey(rawValue: 0x0)
    public static let recoveredError = SenseKey(rawValue: 0x1)
    public static let notReady = SenseKey(rawValue: 0x2)
    public static let mediumError = SenseKey(rawValue: 0x3)
    public static let hardwareError = SenseKey(rawValue: 0x4)
    public static let illegalRequest = SenseKey(rawValue: 0x5)
    public static let unitAttention = SenseKey(rawValue: 0x6)
    public static let dataProtect = SenseKey(rawValue: 0x7)
    public static let blankCheck = SenseKey(rawValue: 0x8)
    public static let abortedCommand = SenseKey(rawValue: 0xB)
    public static let miscompare = SenseKey(rawValue: 0xE)
}

/// An additional sense code and qualifier (ASC/ASCQ, SPC-4 §4.5.6, table 53).
public struct AdditionalSense: Hashable, Sendable {
    public var code: UInt8
    public var qualifier: UInt8

    public init(_ code: UInt8, _ qualifier: UInt8) {
        self.code = code
        self.qualifier = qualifier
    }

    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    public static let none = AdditionalSense(0x00, 0x00)
    /// 04/00 LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    public static let notReady = AdditionalSense(0x04, 0x00)
    /// 04/02 LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED (a stopped unit).
    public static let notReadyInitializingCommandRequired = AdditionalSense(0x04, 0x02)
    /// 0C/00 WRITE ERROR.
    public static let writeError = AdditionalSense(0x0C, 0x00)
    /// 11/00 UNRECOVERED READ ERROR.
    public static let unrecoveredReadError = AdditionalSense(0x11, 0x00)
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    public static let parameterListLengthError = AdditionalSense(0x1A, 0x00)
    /// 20/00 INVALID COMMAND OPERATION CODE.
    public static let invalidCommandOperationCode = AdditionalSense(0x20, 0x00)
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    public static let logicalBlockAddressOutOfRange = AdditionalSense(0x21, 0x00)
    /// 24/00 INVALID FIELD IN CDB.
    public static let invalidFieldInCDB = AdditionalSense(0x24, 0x00)
    /// 25/00 LOGICAL UNIT NOT SUPPORTED.
    public static let logicalUnitNotSupported = AdditionalSense(0x25, 0x00)
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    public static let invalidFieldInParameterList = AdditionalSense(0x26, 0x00)
    /// 27/00 WRITE PROTECTED.
    public static let writeProtected = AdditionalSense(0x27, 0x00)
    /// 27/07 SPACE ALLOCATION FAILED WRITE PROTECT (a thin-provisioned unit out of space).
    public static let spaceAllocationFailedWriteProtect = AdditionalSense(0x27, 0x07)
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    public static let powerOnOrReset = AdditionalSense(0x29, 0x00)
    /// 2A/09 CAPACITY DATA HAS CHANGED: Linux requeues the command and rescans the unit
    /// (`storvsc_handle_error`).
    public static let capacityDataHasChanged = AdditionalSense(0x2A, 0x09)
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    public static let savingParametersNotSupported = AdditionalSense(0x39, 0x00)
    /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
    public static let reportedLUNsDataHasChanged = AdditionalSense(0x3F, 0x0E)
    /// 44/00 INTERNAL TARGET FAILURE.
    public static let internalTargetFailure = AdditionalSense(0x44, 0x00)
}

/// The sense-key specific field of fixed-format sense for ILLEGAL REQUEST (SPC-4 §4.5.2.4.2):
/// which CDB or parameter-list byte (and bit) was wrong.
public struct FieldPointer: Hashable, Sendable {
    /// The error is in the CDB (C/D = 1) rather than in the parameter data.
    public var inCDB: Bool
    /// The byte in error.
    public var byte: UInt16
    /// The bit in error (0...7), if known (BPV).
    public var bit: UInt8?

    public init(inCDB: Bool, byte: UInt16, bit: UInt8? = nil) {
        self.inCDB = inCDB
        self.byte = byte
        self.bit = bit.map { $0 & 7 }
    }

    /// The three bytes @15 of fixed-format sense: SKSV, C/D, BPV, bit pointer; field pointer.
    var bytes: [UInt8] {
        var first: UInt8 = 0x80 | (inCDB ? 0x40 : 0)
        if let bit { first |= 0x08 | bit }
        return [first, UInt8(truncatingIfNeeded: byte >> 8), UInt8(truncatingIfNeeded: byte)]
    }
}

/// Fixed-format sense data (SPC-4 §4.5.3, response code 0x70/0x71): 18 bytes with the sense
/// key @2, the information field @3, additional length 10 @7, ASC @12, ASCQ @13 and the
/// sense-key specific bytes @15.
public struct SenseData: Hashable, Sendable {
    /// Size of the fixed format this type writes.
    public static let fixedSize = 18

    public var key: SenseKey
    public var additional: AdditionalSense
    /// The information field (for example the first LBA in error); sets VALID when present.
    public var information: UInt32?
    /// Response code 0x71: the error belongs to an earlier command.
    public var deferred: Bool
    /// The field in error, for ILLEGAL REQUEST.
    public var fieldPointer: FieldPointer?

    public init(key: SenseKey, additional: AdditionalSense, information: UInt32? = nil, deferred: Bool = false,
                fieldPointer: FieldPointer? = nil) {
        self.key = key
        self.additional = additional
        self.information = information
        self.deferred = deferred
        self.fieldPointer = fieldPointer
    }

    /// NO SENSE, 00/00: what REQUEST SENSE returns when nothing is pending.
    public static let noSense = SenseData(key: .noSense, additional: .none)

    /// ILLEGAL REQUEST with `additional`, pointing at a CDB field if given.
    public static func illegalRequest(_ additional: AdditionalSense, cdbByte: Int? = nil, bit: UInt8? = nil) -> SenseData {
        SenseData(key: .illegalRequest, additional: additional,
                  fieldPointer: cdbByte.map { FieldPointer(inCDB: true, byte: UInt16(truncatingIfNeeded: $0), bit: bit) })
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST at parameter byte `byte`.
    public static func invalidParameter(byte: Int, bit: UInt8? = nil) -> SenseData {
        SenseData(key: .illegalRequest, additional: .invalidFieldInParameterList,
                  fieldPointer: FieldPointer(inCDB: false, byte: UInt16(truncatingIfNeeded: byte), bit: bit))
    }

    /// UNIT ATTENTION with `additional`.
    public static func unitAttention(_ additional: AdditionalSense) -> SenseData {
        SenseData(key: .unitAttention, additional: additional)
    }

    /// The 18 bytes on the wire.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(Self.fixedSize)
        bytes[0] = (information != nil ? 0x80 : 0) | (deferred ? 0x71 : 0x70)
        bytes[2] = key.rawValue
        if let information { bytes.storeBigEndian(information, at: 3) }
        bytes[7] = UInt8(Self.fixedSize - 8)
        bytes[12] = additional.code
        bytes[13] = additional.qualifier
        if let fieldPointer {
            let pointer = fieldPointer.bytes
            bytes[15] = pointer[0]
            bytes[16] = pointer[1]
            bytes[17] = pointer[2]
        }
        return bytes
    }

    /// Parses fixed-format (0x70/0x71) or descriptor-format (0x72/0x73) sense data; from the
    /// descriptor format only the key and ASC/ASCQ are kept.
    /// - Throws: `.truncated` if the key and codes are not all present, `.malformed` for
    ///   another response code.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        guard let first = bytes.first else { throw .truncated(needed: 1, available: 0) }
        switch first & 0x7F {
        case 0x70, 0x71:
            guard bytes.count >= 14 else { throw .truncated(needed: 14, available: bytes.count) }
            key = SenseKey(rawValue: bytes[2])
            additional = AdditionalSense(bytes[12], bytes[13])
            information = first & 0x80 != 0 ? bytes.bigEndian(UInt32.self, at: 3) : nil
            deferred = first & 0x7F == 0x71
            if bytes.count >= 18, bytes[15] & 0x80 != 0, key == .illegalRequest {
                fieldPointer = FieldPointer(
                    inCDB: bytes[15] & 0x40 != 0, byte: UInt16(bytes[16]) << 8 | UInt16(bytes[17]),
                    bit: bytes[15] & 0x08 != 0 ? bytes[15] & 7 : nil)
            } else {
                fieldPointer = nil
            }
        case 0x72, 0x73:
            guard bytes.count >= 4 else { throw .truncated(needed: 4, available: bytes.count) }
            key = SenseKey(rawValue: bytes[1])
            additional = AdditionalSense(bytes[2], bytes[3])
            information = nil
            deferred = first & 0x7F == 0x73
            fieldPointer = nil
        default:
            throw .malformed("sense response code is not 0x70-0x73")
        }
    }
}
