import StorageProtocol
import Synchronization

/// The synthetic SCSI adapter behind one storage device: its logical units and the addressing
/// rules Linux's storvsc depends on. Shared by the primary channel and its sub-channels, whose
/// workers call it concurrently, so its state sits behind a mutex.
///
/// Addressing (drivers/scsi/storvsc_drv.c, scsi_scan.c):
/// - Disks live on path (SCSI channel) 0 only: storvsc looks devices up at channel 0 whatever
///   the request's path was (`storvsc_remove_lun`, `storvsc_device_scan`).
/// - INQUIRY to an absent unit answers peripheral qualifier 3, type 0x1F (byte 0 = 0x7F) with
///   data, never an error: Linux forces INQUIRY's status to success (`storvsc_on_io_completion`)
///   and would take an empty answer for a disk.
/// - REPORT LUNS answers GOOD on every path and target, with an empty list where nothing is
///   attached: a target whose LUN 0 answered 0x7F still gets REPORT LUNS (`__scsi_scan_target`).
/// - SRB_STATUS_INVALID_LUN is answered only for a path-0 unit that was removed, since it makes
///   Linux remove the device at (channel 0, target, lun).
/// - Any other command to an absent unit: ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25/00).
public final class StorageController: Sendable {
    /// A unit's address on the adapter.
    public struct Address: Hashable, Sendable, CustomStringConvertible {
        public var path: UInt8
        public var target: UInt8
        public var lun: UInt8

        public init(path: UInt8 = 0, target: UInt8, lun: UInt8) {
            self.path = path
            self.target = target
            self.lun = lun
        }

        public var description: String { "\(path):\(target):\(lun)" }
    }

    /// Identifies one attachment of a disk (a detached and re-attached disk gets a new one), so
    /// that the driver can map requests to the right back end.
    public struct UnitID: Hashable, Sendable, CustomStringConvertible {
        public var rawValue: UInt64
        public var description: String { "unit\(rawValue)" }
    }

    /// The outcome of a command and the unit that produced it.
    public struct Result: Hashable, Sendable {
        public var outcome: SCSIOutcome
        /// The attached unit the command went to, if any.
        public var unit: UnitID?
    }

    private struct Unit: Sendable {
        var id: UnitID
        var disk: SCSIDisk

        /// Runs a CDB on the disk; one that does not parse is answered with its sense.
        mutating func execute(_ cdb: [UInt8]) -> Result {
            do throws(SCSICommandError) {
                return Result(outcome: disk.execute(try SCSICommand(parsing: cdb)), unit: id)
            } catch {
                return Result(outcome: .checkCondition(SCSIDisk.sense(for: error)), unit: id)
            }
        }
    }

    private struct State: Sendable {
        var units: [Address: Unit] = [:]
        /// Path-0 addresses whose disk was detached and not re-attached.
        var removed: Set<Address> = []
        var nextID: UInt64 = 1
    }

    /// The largest transfer of one SRB (QUERY_PROPERTIES max_transfer_bytes, BLOCK LIMITS).
    public let maximumTransferBytes: UInt32
    private let state = Mutex(State())
    private let generation = Atomic<UInt64>(0)
    private let onBusChange: (@Sendable () -> Void)?

    /// Identity strings of absent units' INQUIRY data at LUN 0.
    static let absentVendor = Array("Msft".utf8)
    static let absentProduct = Array("Virtual Disk".utf8)
    static let absentRevision = Array("1.0".utf8)

    /// An adapter with no units.
    /// - Parameters:
    ///   - maximumTransferBytes: rounded down to whole pages and kept within 4 KiB and
    ///     `StorageSettings.maximumTransferKiB` (Linux turns 0 into 4 KiB transfers; its request
    ///     lists grow with the size; one request's pages must fit one call's I/O vectors).
    ///   - onBusChange: called (on the caller's thread) after every attach, detach and resize,
    ///     for example to wake the primary channel's worker so it announces the change.
    public init(maximumTransferBytes: UInt32 = 0x40000, onBusChange: (@Sendable () -> Void)? = nil) {
        self.maximumTransferBytes = min(max(maximumTransferBytes, 4096), UInt32(StorageSettings.maximumTransferKiB) * 1024) & ~4095
        self.onBusChange = onBusChange
    }

    /// Counts attaches, detaches and resizes; a primary channel announces a change with
    /// ENUMERATE_BUS.
    public var busGeneration: UInt64 { generation.load(ordering: .acquiring) }

    /// Attaches a disk at path 0, `target` (0...1), `lun` (0...254).
    /// - Throws: `.invalidConfiguration` for a bad disk, `.invalidAddress` outside the scan
    ///   range, `.occupied` if a disk is there already.
    @discardableResult
    public func attach(_ configuration: SCSIDiskConfiguration, target: UInt8, lun: UInt8) throws(StorageControllerError) -> UnitID {
        let validated: SCSIDiskConfiguration
        do {
            validated = try configuration.validated()
        } catch {
            throw .invalidConfiguration(error)
        }
        guard Int(target) < StorageChannelConstants.maximumTargets, Int(lun) < StorageChannelConstants.maximumLUNs else {
            throw .invalidAddress(Address(target: target, lun: lun))
        }
        let address = Address(target: target, lun: lun)
        let id = try state.withLock { state throws(StorageControllerError) -> UnitID in
            guard state.units[address] == nil else { throw .occupied(address) }
            let id = UnitID(rawValue: state.nextID)
            state.nextID += 1
            state.units[address] = Unit(id: id, disk: SCSIDisk(configuration: validated, maximumTransferBytes: maximumTransferBytes))
            state.removed.remove(address)
            return id
        }
        busChanged()
        return id
    }

    /// Detaches the disk at path 0 `target`/`lun`; commands other than INQUIRY and REPORT LUNS
    /// to it then answer SRB_STATUS_INVALID_LUN, so Linux removes it after the rescan the
    /// announcement triggers. Requests already handed out still complete.
    /// - Returns: the detached unit, or `nil` if nothing was there.
    @discardableResult
    public func detach(target: UInt8, lun: UInt8) -> UnitID? {
        let address = Address(target: target, lun: lun)
        let id = state.withLock { state -> UnitID? in
            guard let unit = state.units.removeValue(forKey: address) else { return nil }
            state.removed.insert(address)
            return unit.id
        }
        if id != nil { busChanged() }
        return id
    }

    /// Changes a disk's capacity; its next command reports CAPACITY DATA HAS CHANGED.
    /// - Returns: whether a disk was there and took the capacity (`SCSIDisk.resize`).
    @discardableResult
    public func resize(target: UInt8, lun: UInt8, blockCount: UInt64) -> Bool {
        let address = Address(target: target, lun: lun)
        let found = state.withLock { state -> Bool in
            state.units[address]?.disk.resize(blockCount: blockCount) ?? false
        }
        if found { busChanged() }
        return found
    }

    /// The attached units, by address.
    public var units: [Address: UnitID] {
        state.withLock { state in state.units.mapValues(\.id) }
    }

    /// The configuration and current capacity of the unit at `address`.
    public func disk(at address: Address) -> (id: UnitID, disk: SCSIDisk)? {
        state.withLock { state in state.units[address].map { ($0.id, $0.disk) } }
    }

    /// Runs a CDB addressed to `address`.
    public func execute(_ cdb: [UInt8], at address: Address) -> Result {
        let opcode = SCSIOperationCode(rawValue: cdb.first ?? 0xFF)
        return state.withLock { state in
            // One lookup, and the unit changed in place: this runs for every request.
            let present = address.path == 0 ? state.units.index(forKey: address) : nil
            // REPORT LUNS is the target's business, on every path and target.
            if opcode == .reportLUNs {
                return Result(outcome: reportLUNs(cdb, at: address, state), unit: present.map { state.units.values[$0].id })
            }
            guard let present else {
                return Result(outcome: absentUnit(cdb, opcode: opcode, at: address, removed: state.removed.contains(address)),
                              unit: nil)
            }
            // In place: a copy of the unit would retain everything its disk holds.
            return state.units.values[present].execute(cdb)
        }
    }

    /// Hands an UNMAP parameter list to the unit that asked for it (`unit`); if that unit is
    /// gone the command fails as any command to it would now.
    public func unmap(parameterList: [UInt8], at address: Address, unit: UnitID) -> SCSIOutcome {
        state.withLock { state in
            guard address.path == 0, let present = state.units[address], present.id == unit else {
                // Detached (or replaced) while the parameter list was being fetched.
                return state.removed.contains(address) ? .invalidLUN : .checkCondition(.illegalRequest(.logicalUnitNotSupported))
            }
            return state.units[address]?.disk.unmap(parameterList: parameterList) ?? .invalidLUN
        }
    }

    private func reportLUNs(_ cdb: [UInt8], at address: Address, _ state: State) -> SCSIOutcome {
        let request: ReportLUNsCDB
        do {
            request = try ReportLUNsCDB(parsing: cdb)
        } catch {
            return .checkCondition(SCSIDisk.sense(for: error))
        }
        // SELECT REPORT 0 and 2 list every unit; 1 (well-known units only) lists none here.
        guard request.selectReport <= 2 else {
            return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 2, bit: 7))
        }
        // SPC-4 §6.33: an allocation length below 4 cannot hold the list length.
        guard request.allocationLength >= 4 else {
            return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 6, bit: 7))
        }
        var luns: [UInt16] = []
        if address.path == 0, request.selectReport != 1 {
            luns = state.units.keys.filter { $0.target == address.target }.map { UInt16($0.lun) }.sorted()
        }
        return .dataIn(ReportLUNsData(luns: luns).bytes.truncated(to: Int(min(request.allocationLength, 1 << 20))))
    }

    private func absentUnit(_ cdb: [UInt8], opcode: SCSIOperationCode, at address: Address, removed: Bool) -> SCSIOutcome {
        switch opcode {
        case .inquiry:
            let request: InquiryCDB
            do {
                request = try InquiryCDB(parsing: cdb)
            } catch {
                return .checkCondition(SCSIDisk.sense(for: error))
            }
            guard !request.vitalProductData else { return .checkCondition(.illegalRequest(.logicalUnitNotSupported)) }
            // As openvmm's storvsp: LUN 0 keeps the adapter's identity strings, others are zero.
            let lunZero = address.lun == 0
            let data = StandardInquiryData(
                peripheralQualifier: 3, deviceType: 0x1F, version: SCSIDisk.inquiryVersion, commandQueueing: false,
                vendor: lunZero ? Self.absentVendor : .init(repeating: 0, count: 8),
                product: lunZero ? Self.absentProduct : .init(repeating: 0, count: 16),
                revision: lunZero ? Self.absentRevision : .init(repeating: 0, count: 4))
            return .dataIn(data.bytes.truncated(to: Int(request.allocationLength)))
        case .requestSense:
            // SPC-4 §6.37: sense data for an absent unit reports it, with GOOD status.
            let request: RequestSenseCDB
            do {
                request = try RequestSenseCDB(parsing: cdb)
            } catch {
                return .checkCondition(SCSIDisk.sense(for: error))
            }
            if removed { return .invalidLUN }
            return .dataIn(SenseData.illegalRequest(.logicalUnitNotSupported).bytes.truncated(to: Int(request.allocationLength)))
        default:
            return removed ? .invalidLUN : .checkCondition(.illegalRequest(.logicalUnitNotSupported))
        }
    }

    private func busChanged() {
        generation.add(1, ordering: .acquiringAndReleasing)
        onBusChange?()
    }
}

/// An adapter change that cannot be made.
public enum StorageControllerError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidConfiguration(SCSIDiskConfigurationError)
    /// Outside path 0, targets 0...1, LUNs 0...254.
    case invalidAddress(StorageController.Address)
    /// A disk is attached there already.
    case occupied(StorageController.Address)

    public var description: String {
        switch self {
        case .invalidConfiguration(let error): "\(error)"
        case .invalidAddress(let address): "no disk can live at \(address): targets 0-1, LUNs 0-254"
        case .occupied(let address): "a disk is already attached at \(address)"
        }
    }
}
