/// Command execution (ATA/ATAPI-7 volume 1, chapter 6, and volume 2's PIO data-in, PIO
/// data-out and non-data protocols).
extension IDEChannel {
    /// Runs `command` as written to the Command register.
    mutating func execute(_ command: UInt8) {
        if taskFile.selectsDevice1 {
            // Device 1 is absent; device 0 acts only on EXECUTE DEVICE DIAGNOSTIC, which
            // addresses both devices.
            if command == ATACommand.executeDeviceDiagnostic { executeDeviceDiagnostic() }
            return
        }
        // A Command write clears a pending interrupt and starts afresh.
        clearInterrupt()
        transfer = nil
        commandFailed = false
        taskFile.error = 0
        switch command {
        case ATACommand.identifyDevice:
            transfer = PIOTransfer(direction: .toHost, addressing: .identify, sectorsPerBlock: 1,
                                   block: identifyData.bytes, blockLBA: 0, sectorsAfterBlock: 0)
            raiseInterrupt()
        case ATACommand.readSectors: startRead(extended: false, multiple: false)
        case ATACommand.readSectorsExt: startRead(extended: true, multiple: false)
        case ATACommand.readMultiple: startRead(extended: false, multiple: true)
        case ATACommand.readMultipleExt: startRead(extended: true, multiple: true)
        case ATACommand.writeSectors: startWrite(extended: false, multiple: false)
        case ATACommand.writeSectorsExt: startWrite(extended: true, multiple: false)
        case ATACommand.writeMultiple: startWrite(extended: false, multiple: true)
        case ATACommand.writeMultipleExt: startWrite(extended: true, multiple: true)
        case ATACommand.readVerifySectors, ATACommand.readVerifySectorsExt:
            // The back end has no media defects to find: checking the range is the verify.
            guard mediaRequest(extended: command == ATACommand.readVerifySectorsExt) != nil else { return }
            inStandby = false
            complete()
        case ATACommand.flushCache, ATACommand.flushCacheExt:
            inStandby = false
            if flushStorage() { complete() } else { abort(ATAError.aborted) }
        case ATACommand.setFeatures: setFeatures()
        case ATACommand.setMultipleMode: setMultipleMode()
        case ATACommand.initializeDeviceParameters: initializeDeviceParameters()
        case ATACommand.executeDeviceDiagnostic: executeDeviceDiagnostic()
        case ATACommand.standbyImmediate, ATACommand.standby:
            inStandby = true
            complete()
        case ATACommand.idleImmediate, ATACommand.idle:
            inStandby = false
            complete()
        case ATACommand.checkPowerMode:
            taskFile.sectorCount.current = inStandby ? ATAPowerMode.standby : ATAPowerMode.activeOrIdle
            complete()
        default:
            abort(ATAError.aborted)
        }
    }

    // MARK: Completion

    /// Ends the command successfully and interrupts.
    mutating func complete() {
        transfer = nil
        commandFailed = false
        taskFile.error = 0
        raiseInterrupt()
    }

    /// Ends the command with ERR and `error` in the Error register, and interrupts.
    mutating func abort(_ error: UInt8) {
        transfer = nil
        commandFailed = true
        taskFile.error = error
        raiseInterrupt()
    }

    /// Ends a media command with `error` at `lba`, reported the way the command addressed it.
    mutating func fail(_ error: UInt8, at lba: UInt64, _ addressing: PIOTransfer.Addressing) {
        switch addressing {
        case .identify: break
        case .lba28: taskFile.setAddress28(lba)
        case .lba48: taskFile.setAddress48(lba)
        case .chs(let geometry):
            let address = geometry.address(of: lba)
            taskFile.setAddressCHS(cylinder: address.cylinder, head: address.head, sector: address.sector)
        }
        abort(error)
    }

    // MARK: Media access

    /// The validated address and length of a read, write or verify command, or `nil` after
    /// aborting it with IDNF (an address outside the device or the CHS translation).
    mutating func mediaRequest(extended: Bool) -> (lba: UInt64, count: Int, addressing: PIOTransfer.Addressing)? {
        let lba: UInt64
        let count: Int
        let limit: UInt64
        let addressing: PIOTransfer.Addressing
        if extended {
            (lba, count, limit, addressing) = (taskFile.lba48, taskFile.count48, sectors, .lba48)
        } else if taskFile.usesLBA {
            (lba, count, limit, addressing) = (taskFile.lba28, taskFile.count28, min(sectors, 0x0FFF_FFFF), .lba28)
        } else {
            let address = taskFile.chsAddress
            guard let geometry = currentGeometry,
                  let chsLBA = geometry.lba(cylinder: address.cylinder, head: address.head, sector: address.sector)
            else {
                abort(ATAError.idNotFound)
                return nil
            }
            (lba, count, limit, addressing) = (chsLBA, taskFile.count28, min(sectors, geometry.capacity), .chs(geometry))
        }
        guard lba < limit, UInt64(count) <= limit - lba else {
            abort(ATAError.idNotFound)
            return nil
        }
        return (lba, count, addressing)
    }

    /// Sectors per DRQ block, or `nil` after aborting a MULTIPLE command while multiple mode
    /// is disabled.
    mutating func blockSectors(multiple: Bool) -> Int? {
        guard multiple else { return 1 }
        guard multipleSectors > 0 else {
            abort(ATAError.aborted)
            return nil
        }
        return multipleSectors
    }

    /// PIO data-in: the first block is read, DRQ set and an interrupt raised.
    mutating func startRead(extended: Bool, multiple: Bool) {
        guard let perBlock = blockSectors(multiple: multiple), let request = mediaRequest(extended: extended) else { return }
        inStandby = false
        var read = PIOTransfer(direction: .toHost, addressing: request.addressing, sectorsPerBlock: perBlock,
                               block: [], blockLBA: request.lba, sectorsAfterBlock: request.count)
        guard loadNextBlock(&read) else { return }
        transfer = consume read
        raiseInterrupt()
    }

    /// PIO data-out: DRQ set for the first block, no interrupt until a block is written.
    mutating func startWrite(extended: Bool, multiple: Bool) {
        guard !storage.isReadOnly else {
            abort(ATAError.aborted)
            return
        }
        guard let perBlock = blockSectors(multiple: multiple), let request = mediaRequest(extended: extended) else { return }
        inStandby = false
        var write = PIOTransfer(direction: .fromHost, addressing: request.addressing, sectorsPerBlock: perBlock,
                                block: [], blockLBA: request.lba, sectorsAfterBlock: request.count)
        write.advance()
        transfer = consume write
    }

    /// Reads the block after `read`'s current one into it; false after failing the command
    /// with UNC at that block.
    mutating func loadNextBlock(_ read: inout PIOTransfer) -> Bool {
        read.advance()
        do {
            try storage.read(at: read.blockLBA * UInt64(ATASector.size), into: &read.block)
            return true
        } catch {
            storageFailure = error
            fail(ATAError.uncorrectable, at: read.blockLBA, read.addressing)
            return false
        }
    }

    /// The host took the whole current data-in block: the next one follows with an interrupt,
    /// or the command ends (DRQ falls, no interrupt after the last block). With
    /// `loadsBlocksLater` the next block is only marked as awaited (the device reads BSY).
    mutating func finishDataInBlock(_ read: consuming PIOTransfer) -> PIOTransfer? {
        guard read.sectorsAfterBlock > 0 else { return nil }
        if loadsBlocksLater {
            read.awaitsLoad = true
            return read
        }
        guard loadNextBlock(&read) else { return nil }
        raiseInterrupt()
        return read
    }

    /// Whether the next data-in block waits for `loadAwaitedBlock()` (only with `loadsBlocksLater`).
    public var awaitsBlockLoad: Bool { transfer?.awaitsLoad == true }

    /// Reads the data-in block the host is waiting for from storage: DRQ and an interrupt
    /// follow, or the command fails (UNC) if the read does. Nothing happens if no block is
    /// awaited (a reset or a new command ended the transfer meanwhile).
    public mutating func loadAwaitedBlock() {
        guard awaitsBlockLoad, var read = transfer.take() else { return }
        defer { updateLine() }
        read.awaitsLoad = false
        guard loadNextBlock(&read) else { return }
        transfer = consume read
        raiseInterrupt()
    }

    /// The host filled the current data-out block: it is written, then the next block is
    /// requested with an interrupt, or the command completes (after a flush when the write
    /// cache is off).
    mutating func finishDataOutBlock(_ write: consuming PIOTransfer) -> PIOTransfer? {
        do {
            try storage.write(at: write.blockLBA * UInt64(ATASector.size), from: write.block)
        } catch {
            storageFailure = error
            fail(ATAError.aborted, at: write.blockLBA, write.addressing)
            return nil
        }
        guard write.sectorsAfterBlock == 0 else {
            write.advance()
            raiseInterrupt()
            return write
        }
        if !writeCacheEnabled, !flushStorage() {
            fail(ATAError.aborted, at: write.blockLBA, write.addressing)
            return nil
        }
        complete()
        return nil
    }

    /// Flushes the storage; false (with the failure kept) if it failed.
    mutating func flushStorage() -> Bool {
        do {
            try storage.flush()
            return true
        } catch {
            storageFailure = error
            return false
        }
    }

    // MARK: Settings

    mutating func setFeatures() {
        switch taskFile.features.current {
        case ATASetFeatures.enableWriteCache:
            writeCacheEnabled = true
            complete()
        case ATASetFeatures.disableWriteCache:
            // Data the cache held must not be lost by turning it off.
            guard flushStorage() else {
                abort(ATAError.aborted)
                return
            }
            writeCacheEnabled = false
            complete()
        case ATASetFeatures.setTransferMode:
            // PIO default (00h), PIO default without IORDY (01h) or PIO flow control mode
            // 0-4 (08h-0Ch); no DMA modes (words 49, 63 and 88 offer none).
            let mode = taskFile.sectorCount.current
            guard mode <= 0x01 || (0x08...0x0C).contains(mode) else {
                abort(ATAError.aborted)
                return
            }
            transferMode = mode
            complete()
        default:
            abort(ATAError.aborted)
        }
    }

    /// SET MULTIPLE MODE: a power of two up to word 47's maximum, or 0 to disable.
    mutating func setMultipleMode() {
        let count = Int(taskFile.sectorCount.current)
        guard count == 0 || (count.nonzeroBitCount == 1 && count <= configuration.maximumMultipleSectors) else {
            abort(ATAError.aborted)
            return
        }
        multipleSectors = count
        complete()
    }

    /// INITIALIZE DEVICE PARAMETERS: heads from the Device register (bits 3:0, plus one),
    /// sectors per track from Sector Count. A translation that fits no cylinder is refused
    /// and leaves none current.
    mutating func initializeDeviceParameters() {
        let heads = Int(taskFile.device & 0x0F) + 1
        let sectorsPerTrack = Int(taskFile.sectorCount.current)
        currentGeometry = CHSGeometry.requested(heads: heads, sectorsPerTrack: sectorsPerTrack, sectors: sectors)
        if currentGeometry == nil { abort(ATAError.aborted) } else { complete() }
    }

    /// EXECUTE DEVICE DIAGNOSTIC: device 0 passed and device 1 is absent (01h), signature
    /// loaded, device 0 selected, interrupt.
    mutating func executeDeviceDiagnostic() {
        clearInterrupt()
        transfer = nil
        commandFailed = false
        taskFile.loadSignature()
        raiseInterrupt()
    }
}
