/// One address register of the 48-bit feature set: a two-deep FIFO. Each write pushes the
/// current byte to `previous`; reads with HOB set return `previous` (ATA/ATAPI-6, 48-bit
/// Address feature set).
struct HOBRegister: Equatable {
    var current: UInt8 = 0
    var previous: UInt8 = 0

    mutating func write(_ value: UInt8) {
        previous = current
        current = value
    }

    func read(highOrder: Bool) -> UInt8 { highOrder ? previous : current }

    /// A device output: both bytes at once.
    mutating func set(low: UInt8, high: UInt8) {
        current = low
        previous = high
    }
}

/// The command block's registers as the device holds them. Writes reach both devices of the
/// channel, so device 0 keeps them whichever device is selected.
struct TaskFile: Equatable {
    var features = HOBRegister()
    var sectorCount = HOBRegister()
    var lbaLow = HOBRegister()
    var lbaMid = HOBRegister()
    var lbaHigh = HOBRegister()
    var device: UInt8 = 0
    var error: UInt8 = ATAError.diagnosticsPassed

    /// The device signature after reset or diagnostics: an ATA device (LBA Mid and High 0),
    /// Sector Count and LBA Low 1, device 0 selected (ATA/ATAPI-6, "Signature and persistence").
    mutating func loadSignature() {
        sectorCount.set(low: 1, high: 0)
        lbaLow.set(low: 1, high: 0)
        lbaMid.set(low: 0, high: 0)
        lbaHigh.set(low: 0, high: 0)
        device = 0
        error = ATAError.diagnosticsPassed
    }

    var selectsDevice1: Bool { device & ATADevice.device1 != 0 }
    var usesLBA: Bool { device & ATADevice.lba != 0 }

    /// The 28-bit LBA of a command issued in LBA mode.
    var lba28: UInt64 {
        UInt64(device & 0x0F) << 24 | UInt64(lbaHigh.current) << 16 | UInt64(lbaMid.current) << 8 | UInt64(lbaLow.current)
    }

    /// The 48-bit LBA of an EXT command.
    var lba48: UInt64 {
        UInt64(lbaHigh.previous) << 40 | UInt64(lbaMid.previous) << 32 | UInt64(lbaLow.previous) << 24
            | UInt64(lbaHigh.current) << 16 | UInt64(lbaMid.current) << 8 | UInt64(lbaLow.current)
    }

    /// Sectors of a 28-bit command: 0 means 256.
    var count28: Int { sectorCount.current == 0 ? 256 : Int(sectorCount.current) }

    /// Sectors of an EXT command: 0 means 65536.
    var count48: Int {
        let count = Int(sectorCount.previous) << 8 | Int(sectorCount.current)
        return count == 0 ? 65_536 : count
    }

    /// The CHS address of a command issued with the LBA bit clear.
    var chsAddress: (cylinder: Int, head: Int, sector: Int) {
        (Int(lbaHigh.current) << 8 | Int(lbaMid.current), Int(device & 0x0F), Int(lbaLow.current))
    }

    /// Reports `lba` as a 28-bit command's error address.
    mutating func setAddress28(_ lba: UInt64) {
        lbaLow.current = UInt8(truncatingIfNeeded: lba)
        lbaMid.current = UInt8(truncatingIfNeeded: lba >> 8)
        lbaHigh.current = UInt8(truncatingIfNeeded: lba >> 16)
        device = device & 0xF0 | UInt8(truncatingIfNeeded: lba >> 24) & 0x0F
    }

    /// Reports `lba` as an EXT command's error address (low bytes current, high bytes HOB).
    mutating func setAddress48(_ lba: UInt64) {
        lbaLow.set(low: UInt8(truncatingIfNeeded: lba), high: UInt8(truncatingIfNeeded: lba >> 24))
        lbaMid.set(low: UInt8(truncatingIfNeeded: lba >> 8), high: UInt8(truncatingIfNeeded: lba >> 32))
        lbaHigh.set(low: UInt8(truncatingIfNeeded: lba >> 16), high: UInt8(truncatingIfNeeded: lba >> 40))
    }

    /// Reports a CHS error address.
    mutating func setAddressCHS(cylinder: Int, head: Int, sector: Int) {
        lbaLow.current = UInt8(truncatingIfNeeded: sector)
        lbaMid.current = UInt8(truncatingIfNeeded: cylinder)
        lbaHigh.current = UInt8(truncatingIfNeeded: cylinder >> 8)
        device = device & 0xF0 | UInt8(truncatingIfNeeded: head) & 0x0F
    }
}
