import HyperV

/// A SCSI operation code, CDB byte 0 (SPC-4 §4.2.5.1, SBC-3 §5).
///
/// A struct rather than an enum so that any opcode a guest sends stays representable.

public struct SCSIOperationCode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let testUnitReady = SCSIOperationCode(rawValue: 0x00)
    public static let requestSense = SCSIOperationCode(rawValue: 0x03)
    public static let read6 = SCSIOperationCode(rawValue: 0x08)
    public static let write6 = SCSIOperationCode(rawValue: 0x0A)
    public static let inquiry = SCSIOperationCode(rawValue: 0x12)
    public static let modeSelect6 = SCSIOperationCode(rawValue: 0x15)
    public static let modeSense6 = SCSIOperationCode(rawValue: 0x1A)
    public static let startStopUnit = SCSIOperationCode(rawValue: 0x1B)
    public static let sendDiagnostic = SCSIOperationCode(rawValue: 0x1D)
    public static let preventAllowMediumRemoval = SCSIOperationCode(rawValue: 0x1E)
    public static let readCapacity10 = SCSIOperationCode(rawValue: 0x25)
    public static let read10 = SCSIOperationCode(rawValue: 0x28)
    public static let write10 = SCSIOperationCode(rawValue: 0x2A)
    public static let verify10 = SCSIOperationCode(rawValue: 0x2F)
    public static let synchronizeCache10 = SCSIOperationCode(rawValue: 0x35)
    public static let writeSame10 = SCSIOperationCode(rawValue: 0x41)
    public static let unmap = SCSIOperationCode(rawValue: 0x42)
    public static let modeSelect10 = SCSIOperationCode(rawValue: 0x55)
    public static let modeSense10 = SCSIOperationCode(rawValue: 0x5A)
    public static let ataPassThrough16 = SCSIOperationCode(rawValue: 0x85)
    public static let read16 = SCSIOperationCode(rawValue: 0x88)
    public static let write16 = SCSIOperationCode(rawValue: 0x8A)
    public static let verify16 = SCSIOperationCode(rawValue: 0x8F)
    public static let synchronizeCache16 = SCSIOperationCode(rawValue: 0x91)
    public static let writeSame16 = SCSIOperationCode(rawValue: 0x93)
    /// SERVICE ACTION IN(16); service action 0x10 is READ CAPACITY(16).
    public static let serviceActionIn16 = SCSIOperationCode(rawValue: 0x9E)
    public static let reportLUNs = SCSIOperationCode(rawValue: 0xA0)
    public static let ataPassThrough12 = SCSIOperationCode(rawValue: 0xA1)
    /// MAINTENANCE IN (REPORT SUPPORTED OPERATION CODES and others).
    public static let maintenanceIn = SCSIOperationCode(rawValue: 0xA3)
    public static let read12 = SCSIOperationCode(rawValue: 0xA8)
    public static let write12 = SCSIOperationCode(rawValue: 0xAA)

    /// The CDB length its group code implies (SPC-4 §4.2.5.1): 6, 10, 12 or 16 bytes; `nil`
    /// for the reserved and vendor-specific groups (3, 6, 7).
    public var groupLength: Int? {
        switch rawValue >> 5 {
        case 0: 6
        case 1, 2: 10
        case 4: 16
        case 5: 12
        default: nil
        }
    }
}

/// Why a CDB could not be decoded. The device server answers each with CHECK CONDITION,
/// ILLEGAL REQUEST and the sense this maps to.
public enum SCSICommandError: Error, Hashable, Sendable {
    /// The CDB has no bytes at all.
    case empty
    /// The CDB is shorter than its operation code requires.
    case truncated(opcode: SCSIOperationCode, needed: Int, available: Int)
    /// A field holds a value the command does not define (INVALID FIELD IN CDB, with this
    /// byte and bit as the field pointer).
    case invalidField(byte: Int, bit: UInt8?)
}

extension Array where Element == UInt8 {
    /// Checks a CDB is at least `length` bytes long for `opcode`.
    @usableFromInline
    func requireCDB(_ opcode: SCSIOperationCode, length: Int) throws(SCSICommandError) {
        guard count >= length else { throw .truncated(opcode: opcode, needed: length, available: count) }
    }
}
