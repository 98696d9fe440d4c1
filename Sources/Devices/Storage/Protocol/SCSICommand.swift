import HyperV

/// A decoded CDB: the commands a Linux disk bring-up and its I/O use (drivers/scsi/sd.c,
/// scsi_scan.c), and `.unsupported` for every other opcode.

public enum SCSICommand: Hashable, Sendable {
    case testUnitReady
    case requestSense(RequestSenseCDB)
    case inquiry(InquiryCDB)
    case reportLUNs(ReportLUNsCDB)
    case readCapacity10(ReadCapacity10CDB)
    case readCapacity16(ReadCapacity16CDB)
    case modeSense(ModeSenseCDB)
    case read(ReadWriteCDB)
    case write(ReadWriteCDB)
    case synchronizeCache(SynchronizeCacheCDB)
    case unmap(UnmapCDB)
    case startStopUnit(StartStopUnitCDB)
    /// An opcode this decoder does not implement (INVALID COMMAND OPERATION CODE).
    case unsupported(SCSIOperationCode)

    /// Decodes `cdb`. Total: any bytes give a command or a typed error.
    public init(parsing cdb: [UInt8]) throws(SCSICommandError) {
        guard let first = cdb.first else { throw .empty }
        let opcode = SCSIOperationCode(rawValue: first)
        switch opcode {
        case .testUnitReady:
            try cdb.requireCDB(opcode, length: 6)
            self = .testUnitReady
        case .requestSense: self = .requestSense(try RequestSenseCDB(parsing: cdb))
        case .inquiry: self = .inquiry(try InquiryCDB(parsing: cdb))
        case .reportLUNs: self = .reportLUNs(try ReportLUNsCDB(parsing: cdb))
        case .readCapacity10: self = .readCapacity10(try ReadCapacity10CDB(parsing: cdb))
        case .serviceActionIn16: self = .readCapacity16(try ReadCapacity16CDB(parsing: cdb))
        case .modeSense6, .modeSense10: self = .modeSense(try ModeSenseCDB(parsing: cdb))
        case .read6, .read10, .read12, .read16: self = .read(try ReadWriteCDB(parsing: cdb))
        case .write6, .write10, .write12, .write16: self = .write(try ReadWriteCDB(parsing: cdb))
        case .synchronizeCache10, .synchronizeCache16: self = .synchronizeCache(try SynchronizeCacheCDB(parsing: cdb))
        case .unmap: self = .unmap(try UnmapCDB(parsing: cdb))
        case .startStopUnit: self = .startStopUnit(try StartStopUnitCDB(parsing: cdb))
        default: self = .unsupported(opcode)
        }
    }
}
