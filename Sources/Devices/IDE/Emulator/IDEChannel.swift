/// One legacy IDE channel as a pure state machine: an ATA disk as device 0, no device 1.
/// Register reads and writes in; data, an interrupt line and storage accesses out. No
/// threads, no clocks: every command finishes within the access that starts it, so BSY is
/// seen only while the host holds SRST, or, with `loadsBlocksLater`, while the next data-in
/// block waits for the host to load it (`loadAwaitedBlock()`).
///
/// **Device 1 is absent.** Writes to the command block reach device 0 whichever device is
/// selected, so the address registers echo what was written (libata's `ata_devchk` then sees
/// a device); with device 1 selected, device 0 answers Status and Alternate Status with 00h,
/// Error with 00h, ignores commands other than EXECUTE DEVICE DIAGNOSTIC, and does not drive
/// the data register or INTRQ. `ata_sff_dev_classify` turns the zero Status into
/// ATA_DEV_NONE.
///
/// **Errors.** ERR with ABRT for unsupported commands and parameters and for writes to a
/// read-only disk; IDNF for addresses outside the disk (or the CHS translation); UNC at the
/// failed block for a storage read failure, ABRT at the failed block for a storage write or
/// flush failure. DF is never set: the back end's failures are command errors.
///
/// **Interrupts.** Device 0 latches an interrupt when a PIO data-in block is ready, after each
/// PIO data-out block but the last, and at command completion (the last data-in block raises
/// none). Reading Status or writing Command clears it; reading Alternate Status does not.
/// The line (`interruptLine`) is the latch gated by nIEN and by device 0 being selected.
/// ISA IRQ 14 is edge-triggered and one access may drop and raise the line (a Command write),
/// so `interruptRisingEdges` counts every low-to-high transition: after each access, if the
/// count changed, deliver an edge.
public struct IDEChannel<Storage: IDEStorage> {
    /// The largest string I/O run `readString`/`writeString` move in one call: KVM's port I/O
    /// data area is one page.
    public static var maximumStringBytes: Int { 4096 }

    /// The channel's ports and IRQ.
    public let location: IDEChannelLocation
    /// What IDENTIFY DEVICE reports and the power-on settings.
    public let configuration: IDEDiskConfiguration
    /// The disk behind device 0.
    public internal(set) var storage: Storage
    /// Sectors the device addresses: the storage's capacity, at most 2^48 - 1.
    public let sectors: UInt64
    /// The default CHS translation (IDENTIFY words 1, 3, 6); `nil` for an empty disk.
    public let defaultGeometry: CHSGeometry?

    var taskFile = TaskFile()
    var deviceControl: UInt8 = 0
    /// SRST is held: both devices are in reset, BSY.
    var resetAsserted = false
    /// ERR: the last command failed.
    var commandFailed = false
    /// The data phase of the command in progress (DRQ is set while there is one and it does not
    /// await its next block).
    var transfer: PIOTransfer?
    /// Whether taking the last word of a data-in block leaves the next block for
    /// `loadAwaitedBlock()` instead of reading it from storage inside the access: a host that
    /// must not block on storage in a register access reads it elsewhere, and the device is
    /// busy meanwhile (ATA: BSY between the DRQ blocks of a PIO data-in command).
    public var loadsBlocksLater = false
    /// Device 0's interrupt latch (INTRQ before nIEN and device selection).
    var interruptPending = false
    private var lineLevel = false

    /// READ/WRITE MULTIPLE block size; 0 when multiple mode is disabled.
    public internal(set) var multipleSectors: Int
    /// Whether the volatile write cache is enabled (writes are flushed before completion if not).
    public internal(set) var writeCacheEnabled: Bool
    /// The Sector Count value of the last SET FEATURES "set transfer mode" accepted (0: PIO default).
    public internal(set) var transferMode: UInt8 = 0
    /// The current CHS translation (IDENTIFY words 54-58); `nil` after a refused INITIALIZE
    /// DEVICE PARAMETERS, which leaves CHS commands failing with IDNF.
    public internal(set) var currentGeometry: CHSGeometry?
    /// Whether STANDBY or STANDBY IMMEDIATE put the device in Standby (CHECK POWER MODE reports it).
    public internal(set) var inStandby = false
    var storageFailure: Storage.Failure?

    /// Low-to-high transitions of `interruptLine` since power-on (wrapping).
    public private(set) var interruptRisingEdges: UInt64 = 0

    /// A channel at `location` with `storage` as device 0, in its power-on state: diagnostics
    /// passed, the ATA signature in the task file, DRDY.
    public init(storage: Storage, configuration: IDEDiskConfiguration = .standard, location: IDEChannelLocation = .primary) {
        self.storage = storage
        self.configuration = configuration
        self.location = location
        sectors = min(storage.sectorCount, (1 << 48) - 1)
        defaultGeometry = CHSGeometry.defaultTranslation(sectors: sectors)
        multipleSectors = configuration.initialMultipleSectors
        writeCacheEnabled = configuration.writeCacheEnabledAtPowerOn
        currentGeometry = defaultGeometry
        taskFile.loadSignature()
    }

    // MARK: Host side

    /// The level of the channel's IRQ line.
    public var interruptLine: Bool {
        interruptPending && deviceControl & ATADeviceControl.interruptDisable == 0 && !taskFile.selectsDevice1 && !resetAsserted
    }

    /// The most recent storage failure since the last call (the command that met it failed).
    public mutating func takeStorageFailure() -> Storage.Failure? {
        defer { storageFailure = nil }
        return storageFailure
    }

    /// Power-on (or hardware) reset: every setting back to its power-on value, the line low.
    /// The edge count and `loadsBlocksLater` (the host's, not the device's) carry on.
    public mutating func powerOnReset() {
        let edges = interruptRisingEdges
        let later = loadsBlocksLater
        self = IDEChannel(storage: storage, configuration: configuration, location: location)
        interruptRisingEdges = edges
        loadsBlocksLater = later
    }

    /// The IDENTIFY DEVICE data for the current settings.
    public var identifyData: IdentifyDeviceData {
        IdentifyDeviceData(configuration: configuration, settings: .init(
            sectors: sectors, defaultGeometry: defaultGeometry, currentGeometry: currentGeometry,
            multipleSectors: multipleSectors, writeCacheEnabled: writeCacheEnabled))
    }

    // MARK: Registers

    /// Reads command block register `offset` (0-7) as an 8-bit access. Offset 0 moves a whole
    /// word through the data register and returns its low byte. Other offsets read 0xFF.
    public mutating func readRegister(_ offset: UInt16) -> UInt8 {
        defer { updateLine() }
        switch offset {
        case ATARegister.data:
            return UInt8(truncatingIfNeeded: readData16())
        case ATARegister.statusCommand:
            let status = visibleStatus
            if !resetAsserted, !taskFile.selectsDevice1 { interruptPending = false }
            return status
        case ATARegister.errorFeatures...ATARegister.device:
            // While BSY, every command block register reads as Status (ATA-3, "BSY").
            if resetAsserted || awaitsBlockLoad { return ATAStatus.busy }
            let highOrder = deviceControl & ATADeviceControl.highOrderByte != 0
            switch offset {
            case ATARegister.errorFeatures: return taskFile.selectsDevice1 ? 0 : taskFile.error
            case ATARegister.sectorCount: return taskFile.sectorCount.read(highOrder: highOrder)
            case ATARegister.lbaLow: return taskFile.lbaLow.read(highOrder: highOrder)
            case ATARegister.lbaMid: return taskFile.lbaMid.read(highOrder: highOrder)
            case ATARegister.lbaHigh: return taskFile.lbaHigh.read(highOrder: highOrder)
            default: return taskFile.device
            }
        default:
            return 0xFF
        }
    }

    /// Writes command block register `offset` (0-7) as an 8-bit access (offset 0 moves one
    /// word with a zero high byte). Writes while BSY and to other offsets are ignored. Any
    /// command block write clears HOB.
    public mutating func writeRegister(_ offset: UInt16, _ value: UInt8) {
        defer { updateLine() }
        guard !resetAsserted, !awaitsBlockLoad, offset <= ATARegister.statusCommand else { return }
        deviceControl &= ~ATADeviceControl.highOrderByte
        switch offset {
        case ATARegister.data: writeData16(UInt16(value))
        case ATARegister.errorFeatures: taskFile.features.write(value)
        case ATARegister.sectorCount: taskFile.sectorCount.write(value)
        case ATARegister.lbaLow: taskFile.lbaLow.write(value)
        case ATARegister.lbaMid: taskFile.lbaMid.write(value)
        case ATARegister.lbaHigh: taskFile.lbaHigh.write(value)
        case ATARegister.device: taskFile.device = value
        default: execute(value)
        }
    }

    /// Alternate Status: Status without side effects.
    public func readAlternateStatus() -> UInt8 { visibleStatus }

    /// Writes Device Control. Setting SRST starts a software reset of both devices (BSY, the
    /// command in progress and any pending interrupt are dropped); clearing it completes the
    /// reset: signature, diagnostic code 01h, device 0 selected, DRDY, no interrupt.
    /// Settings (multiple mode, write cache, CHS translation) survive it.
    public mutating func writeDeviceControl(_ value: UInt8) {
        defer { updateLine() }
        deviceControl = value
        let reset = value & ATADeviceControl.softwareReset != 0
        if reset, !resetAsserted {
            transfer = nil
            commandFailed = false
            interruptPending = false
        } else if !reset, resetAsserted {
            taskFile.loadSignature()
            commandFailed = false
        }
        resetAsserted = reset
    }

    // MARK: Internals

    /// Status of device 0 itself.
    var deviceStatus: UInt8 {
        if resetAsserted { return ATAStatus.busy }
        if awaitsBlockLoad { return ATAStatus.busy }
        var status = ATAStatus.ready | ATAStatus.seekComplete
        if transfer != nil { status |= ATAStatus.dataRequest }
        if commandFailed { status |= ATAStatus.error }
        return status
    }

    /// Status as the host sees it: device 0 answers 00h for the absent device 1.
    var visibleStatus: UInt8 {
        taskFile.selectsDevice1 && !resetAsserted ? 0 : deviceStatus
    }

    mutating func raiseInterrupt() {
        interruptPending = true
        updateLine()
    }

    mutating func clearInterrupt() {
        interruptPending = false
        updateLine()
    }

    /// Follows the line's level and counts its rising edges.
    mutating func updateLine() {
        let level = interruptLine
        if level, !lineLevel { interruptRisingEdges &+= 1 }
        lineLevel = level
    }
}

extension IDEChannel: Sendable where Storage: Sendable, Storage.Failure: Sendable {}
