import StorageProtocol

/// The device server of one virtual disk (a SCSI direct-access logical unit, SBC-3): it decodes
/// each command and decides its outcome as a real disk would, with no I/O of its own.
///
/// State that outlives a command: a pending unit attention (capacity changed) and whether the
/// unit was stopped with START STOP UNIT. Unit attentions are reported once, by the next command
/// other than INQUIRY, REPORT LUNS and REQUEST SENSE (SPC-4 §5.14).
public struct SCSIDisk: Sendable {
    public let configuration: SCSIDiskConfiguration
    /// The current capacity in logical blocks (changes with `resize`).
    public private(set) var blockCount: UInt64
    /// The largest transfer of one command, in bytes (the adapter's limit).
    public let maximumTransferBytes: UInt32
    /// A unit attention waiting for the next command.
    public private(set) var pendingUnitAttention: AdditionalSense?
    /// Whether START STOP UNIT stopped the unit; media access then fails with NOT READY.
    public private(set) var isStopped = false

    /// The most blocks one UNMAP may deallocate (BLOCK LIMITS @20).
    public static let maximumUnmapBlocks: UInt32 = 0x0040_0000
    /// The most descriptors one UNMAP may carry (BLOCK LIMITS @24).
    public static let maximumUnmapDescriptors: UInt32 = 16
    /// SPC-3: Linux then tries READ CAPACITY(16) first (`sd_try_rc16_first`).
    static let inquiryVersion: UInt8 = 5

    /// A disk with a validated configuration.
    public init(configuration: SCSIDiskConfiguration, maximumTransferBytes: UInt32) {
        self.configuration = configuration
        blockCount = configuration.blockCount
        self.maximumTransferBytes = maximumTransferBytes
    }

    /// Changes the capacity; the next command reports UNIT ATTENTION, CAPACITY DATA HAS CHANGED
    /// (2A/09), which makes Linux requeue it and rescan the disk (`storvsc_handle_error`).
    /// - Returns: `false`, changing nothing, for a capacity the configuration could not have
    ///   (no block, or more bytes than a file holds).
    @discardableResult
    public mutating func resize(blockCount newCount: UInt64) -> Bool {
        let (bytes, overflow) = newCount.multipliedReportingOverflow(by: UInt64(configuration.blockSize))
        guard newCount >= 1, !overflow, bytes <= UInt64(Int64.max) else { return false }
        guard newCount != blockCount else { return true }
        blockCount = newCount
        pendingUnitAttention = .capacityDataHasChanged
        return true
    }

    /// Runs one command.
    public mutating func execute(_ command: SCSICommand) -> SCSIOutcome {
        switch command {
        case .inquiry(let cdb): return inquiry(cdb)
        case .requestSense(let cdb): return requestSense(cdb)
        case .reportLUNs: return .checkCondition(.illegalRequest(.invalidCommandOperationCode))
        default: break
        }
        if let attention = pendingUnitAttention {
            pendingUnitAttention = nil
            return .checkCondition(.unitAttention(attention))
        }
        switch command {
        case .testUnitReady:
            return isStopped ? .checkCondition(Self.notReady) : .good
        case .readCapacity10:
            if isStopped { return .checkCondition(Self.notReady) }
            return .dataIn(ReadCapacity10Data(blockCount: blockCount, blockLength: configuration.blockSize).bytes)
        case .readCapacity16(let cdb):
            if isStopped { return .checkCondition(Self.notReady) }
            return .dataIn(readCapacity16.bytes.truncated(to: Int(cdb.allocationLength)))
        case .modeSense(let cdb): return modeSense(cdb)
        case .read(let cdb): return readWrite(cdb)
        case .write(let cdb): return readWrite(cdb)
        case .synchronizeCache(let cdb): return synchronizeCache(cdb)
        case .unmap(let cdb): return unmap(cdb)
        case .startStopUnit(let cdb): return startStopUnit(cdb)
        case .unsupported: return .checkCondition(.illegalRequest(.invalidCommandOperationCode))
        case .inquiry, .requestSense, .reportLUNs: return .good  // handled above
        }
    }

    /// The sense a CDB decoding error maps to: ILLEGAL REQUEST, INVALID FIELD IN CDB with the
    /// field pointer, or INVALID COMMAND OPERATION CODE for an empty CDB.
    public static func sense(for error: SCSICommandError) -> SenseData {
        switch error {
        case .empty: .illegalRequest(.invalidCommandOperationCode)
        case .truncated: .illegalRequest(.invalidFieldInCDB, cdbByte: 0)
        case .invalidField(let byte, let bit): .illegalRequest(.invalidFieldInCDB, cdbByte: byte, bit: bit)
        }
    }

    static let notReady = SenseData(key: .notReady, additional: .notReadyInitializingCommandRequired)
    static let writeProtected = SenseData(key: .dataProtect, additional: .writeProtected)
    static let outOfRange = SenseData.illegalRequest(.logicalBlockAddressOutOfRange)

    /// READ CAPACITY(16) data for the current capacity.
    var readCapacity16: ReadCapacity16Data {
        ReadCapacity16Data(
            lastLogicalBlockAddress: blockCount - 1, blockLength: configuration.blockSize,
            logicalBlocksPerPhysicalBlockExponent: configuration.physicalBlockExponent,
            provisioningManagementEnabled: configuration.discardSupported,
            unmappedReadsZero: configuration.discardSupported)
    }

    private mutating func requestSense(_ cdb: RequestSenseCDB) -> SCSIOutcome {
        guard !cdb.descriptorFormat else { return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 0)) }
        let sense: SenseData
        if let attention = pendingUnitAttention {
            pendingUnitAttention = nil
            sense = .unitAttention(attention)
        } else if isStopped {
            sense = Self.notReady
        } else {
            sense = .noSense
        }
        return .dataIn(sense.bytes.truncated(to: Int(cdb.allocationLength)))
    }

    private mutating func startStopUnit(_ cdb: StartStopUnitCDB) -> SCSIOutcome {
        // POWER CONDITION 0 (START_VALID): the START bit decides. Other power conditions only
        // move between power states, which a virtual disk does not have. LOEJ has no medium
        // to eject on a fixed disk and is ignored.
        guard cdb.powerCondition == 0 else { return .good }
        isStopped = !cdb.start
        // SBC-3: a stop writes the cache to the medium first, unless NO_FLUSH says not to; once
        // stopped, the unit takes no SYNCHRONIZE CACHE that could do it later.
        return !cdb.start && !cdb.noFlush && !configuration.readOnly ? .flush : .good
    }
}
