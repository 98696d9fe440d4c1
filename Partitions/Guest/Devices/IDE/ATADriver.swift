/// Port I/O as an ATA PIO driver needs it: byte registers and the 16-bit data register moved
/// with string instructions (REP INSW/OUTSW). The guest implements it with its own `in`/`out`
/// at CPL3; the host's tests with the emulated channel.
public protocol ATAPortIO {
    mutating func in8(_ port: UInt16) -> UInt8
    mutating func out8(_ port: UInt16, _ value: UInt8)
    /// REP INSW: `words` words from `port` into `buffer[offset...]`.
    mutating func inWords(_ port: UInt16, into buffer: inout [UInt8], offset: Int, words: Int)
    /// REP OUTSW: `words` words from `buffer[offset...]` to `port`.
    mutating func outWords(_ port: UInt16, from buffer: [UInt8], offset: Int, words: Int)
    /// A monotonic timestamp in clock ticks, and ticks per duration, for deadlines.
    func timestamp() -> UInt64
    func ticks(nanoseconds: UInt64) -> UInt64
}

/// A polled PIO driver for device 0 of a legacy IDE channel (ATA/ATAPI-7 volume 2, the PIO
/// data-in, PIO data-out and non-data protocols): IDENTIFY DEVICE, READ/WRITE (MULTIPLE) EXT in
/// LBA48 (LBA28 commands on a device without it) and FLUSH CACHE (EXT). Interrupts are disabled
/// (nIEN), so it polls Status; every access is a port I/O exit, which is the point: this is the
/// full-virtualization path the synthetic controller is measured against.
public struct ATADriver<Bus: ATAPortIO> {
    public var bus: Bus
    /// The command block's first port and the control port (0x1F0 and 0x3F6 on the primary channel).
    public let base: UInt16
    public let control: UInt16
    /// Sectors the device addresses, from IDENTIFY DEVICE.
    public private(set) var sectors: UInt64 = 0
    /// Whether the 48-bit commands are supported (word 83 bit 10).
    public private(set) var lba48 = false
    /// The READ/WRITE MULTIPLE block in sectors (word 59), 0 when multiple mode is off.
    public private(set) var multiple = 0
    /// IDENTIFY DEVICE words 27-46, in reading order.
    public private(set) var model: [UInt8] = []
    /// How long a command may keep the device busy.
    public var timeoutNanoseconds: UInt64 = 10_000_000_000
    /// Status and Error register of the last read or write command, if it failed with an error
    /// status (nil if it timed out or succeeded).
    public private(set) var lastError: (status: UInt8, error: UInt8)?

    static var sectorSize: Int { 512 }
    static var busy: UInt8 { 0x80 }
    static var dataRequest: UInt8 { 0x08 }
    static var error: UInt8 { 0x01 }
    static var deviceFault: UInt8 { 0x20 }

    public init(bus: Bus, base: UInt16 = 0x1F0, control: UInt16 = 0x3F6) {
        self.bus = bus
        self.base = base
        self.control = control
    }

    /// Selects device 0 with interrupts disabled and identifies it.
    /// - Returns: false if no ATA device answers.
    public mutating func probe() -> Bool {
        bus.out8(control, 0x02)               // nIEN
        bus.out8(base + 6, 0xE0)               // device 0, LBA
        // An empty bus floats high (0xFF, which would read as BSY forever).
        guard bus.in8(base + 7) != 0xFF, waitNotBusy() else { return false }
        bus.out8(base + 7, 0xEC)               // IDENTIFY DEVICE
        var data = [UInt8](repeating: 0, count: Self.sectorSize)
        guard waitForData(), transferIn(&data, offset: 0, sectors: 1), waitNotBusy() else { return false }
        func word(_ index: Int) -> UInt64 { UInt64(data[2 * index]) | UInt64(data[2 * index + 1]) << 8 }
        guard word(0) & 0x8000 == 0 else { return false }
        lba48 = word(83) & 0x0400 != 0
        sectors = lba48 ? word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48 : word(60) | word(61) << 16
        multiple = word(59) & 0x0100 != 0 ? Int(word(59) & 0xFF) : 0
        model = []
        for index in 27...46 {
            // ATA strings hold the first character of each pair in the high byte.
            model.append(data[2 * index + 1])
            model.append(data[2 * index])
        }
        return sectors > 0
    }

    /// Reads `count` sectors (1-65536; 1-256 without LBA48) at `lba` into `buffer[offset...]`.
    public mutating func read(lba: UInt64, count: Int, into buffer: inout [UInt8], offset: Int) -> Bool {
        guard valid(lba, count), offset >= 0, offset + count * Self.sectorSize <= buffer.count else { return false }
        let perBlock = multiple > 0 ? multiple : 1
        command(lba: lba, count: count, extended: lba48, opcode: lba48 ? (multiple > 0 ? 0x29 : 0x24) : (multiple > 0 ? 0xC4 : 0x20))
        var done = 0
        while done < count {
            let block = min(perBlock, count - done)
            guard waitForData(), transferIn(&buffer, offset: offset + done * Self.sectorSize, sectors: block) else { return false }
            done += block
        }
        return waitNotBusy() && bus.in8(base + 7) & (Self.error | Self.dataRequest) == 0
    }

    /// Writes `count` sectors at `lba` from `buffer[offset...]`.
    public mutating func write(lba: UInt64, count: Int, from buffer: [UInt8], offset: Int) -> Bool {
        guard valid(lba, count), offset >= 0, offset + count * Self.sectorSize <= buffer.count else { return false }
        let perBlock = multiple > 0 ? multiple : 1
        command(lba: lba, count: count, extended: lba48, opcode: lba48 ? (multiple > 0 ? 0x39 : 0x34) : (multiple > 0 ? 0xC5 : 0x30))
        var done = 0
        while done < count {
            let block = min(perBlock, count - done)
            guard waitForData() else { return false }
            bus.outWords(base, from: buffer, offset: offset + done * Self.sectorSize, words: block * Self.sectorSize / 2)
            done += block
        }
        return finish()
    }

    /// FLUSH CACHE (EXT): every completed write is durable when this returns true.
    public mutating func flush() -> Bool {
        bus.out8(base + 6, 0xE0)
        bus.out8(base + 7, lba48 ? 0xEA : 0xE7)
        return finish()
    }

    // MARK: Protocol steps

    private func valid(_ lba: UInt64, _ count: Int) -> Bool {
        let limit = lba48 ? 65536 : 256
        return count >= 1 && count <= limit && lba < sectors && UInt64(count) <= sectors - lba
    }

    /// Writes the task file and the command: for 48-bit commands the high-order bytes first.
    private mutating func command(lba: UInt64, count: Int, extended: Bool, opcode: UInt8) {
        lastError = nil
        let sectorCount = count == (extended ? 65536 : 256) ? 0 : count
        if extended {
            bus.out8(base + 2, UInt8(truncatingIfNeeded: sectorCount >> 8))
            bus.out8(base + 3, UInt8(truncatingIfNeeded: lba >> 24))
            bus.out8(base + 4, UInt8(truncatingIfNeeded: lba >> 32))
            bus.out8(base + 5, UInt8(truncatingIfNeeded: lba >> 40))
        }
        bus.out8(base + 2, UInt8(truncatingIfNeeded: sectorCount))
        bus.out8(base + 3, UInt8(truncatingIfNeeded: lba))
        bus.out8(base + 4, UInt8(truncatingIfNeeded: lba >> 8))
        bus.out8(base + 5, UInt8(truncatingIfNeeded: lba >> 16))
        bus.out8(base + 6, extended ? 0x40 : 0x40 | UInt8(truncatingIfNeeded: lba >> 24) & 0x0F)
        bus.out8(base + 7, opcode)
    }

    private mutating func transferIn(_ buffer: inout [UInt8], offset: Int, sectors: Int) -> Bool {
        bus.inWords(base, into: &buffer, offset: offset, words: sectors * Self.sectorSize / 2)
        return true
    }

    /// Waits for BSY to clear; false on a timeout.
    private mutating func waitNotBusy() -> Bool {
        let deadline = bus.timestamp() &+ bus.ticks(nanoseconds: timeoutNanoseconds)
        while bus.in8(base + 7) & Self.busy != 0 {
            guard bus.timestamp() < deadline else { return false }
        }
        return true
    }

    /// Waits for DRQ with BSY clear; false on an error or a timeout.
    private mutating func waitForData() -> Bool {
        let deadline = bus.timestamp() &+ bus.ticks(nanoseconds: timeoutNanoseconds)
        while true {
            let status = bus.in8(base + 7)
            if status & Self.busy == 0 {
                if status & (Self.error | Self.deviceFault) != 0 {
                    lastError = (status, bus.in8(base + 1))
                    return false
                }
                if status & Self.dataRequest != 0 { return true }
            }
            guard bus.timestamp() < deadline else { return false }
        }
    }

    /// Waits for the command to end; true if it ended without an error.
    private mutating func finish() -> Bool {
        guard waitNotBusy() else { return false }
        let status = bus.in8(base + 7)
        guard status & (Self.error | Self.deviceFault) == 0 else {
            lastError = (status, bus.in8(base + 1))
            return false
        }
        return true
    }
}
