@testable import IDEEmulator

// The primary channel's ports, spelled after libata's ata_ioports fields.
let dataPort: UInt16 = 0x1F0
let errorPort: UInt16 = 0x1F1
let featurePort: UInt16 = 0x1F1
let nsectPort: UInt16 = 0x1F2
let lbalPort: UInt16 = 0x1F3
let lbamPort: UInt16 = 0x1F4
let lbahPort: UInt16 = 0x1F5
let devicePort: UInt16 = 0x1F6
let statusPort: UInt16 = 0x1F7
let commandPort: UInt16 = 0x1F7
let ctlPort: UInt16 = 0x3F6
let altstatusPort: UInt16 = 0x3F6

/// Status values the tests expect: DRDY|DSC, with DRQ, with ERR.
let statusIdle: UInt8 = 0x50
let statusDataRequest: UInt8 = 0x58
let statusError: UInt8 = 0x51

/// A processor's view of the primary channel: the accesses a driver makes, by port.
struct ATAHost {
    var channel: IDEChannel<TestDisk>
    private var edgesTaken: UInt64 = 0

    init(disk: TestDisk = TestDisk(sectors: 1_000_000), configuration: IDEDiskConfiguration = .standard) {
        channel = IDEChannel(storage: disk, configuration: configuration)
    }

    var disk: TestDisk {
        get { channel.storage }
        set { channel.storage = newValue }
    }

    mutating func outb(_ value: UInt8, _ port: UInt16) { channel.write(port: port, size: 1, value: UInt32(value)) }
    mutating func inb(_ port: UInt16) -> UInt8 { UInt8(truncatingIfNeeded: channel.read(port: port, size: 1)) }
    mutating func outw(_ value: UInt16, _ port: UInt16) { channel.write(port: port, size: 2, value: UInt32(value)) }
    mutating func inw(_ port: UInt16) -> UInt16 { UInt16(truncatingIfNeeded: channel.read(port: port, size: 2)) }
    mutating func outl(_ value: UInt32, _ port: UInt16) { channel.write(port: port, size: 4, value: value) }
    mutating func inl(_ port: UInt16) -> UInt32 { channel.read(port: port, size: 4) }

    /// REP INSW of `count` words, as one exit.
    mutating func insw(_ port: UInt16, _ count: Int) -> [UInt8] { channel.readString(port: port, size: 2, count: count) }
    /// REP INSD of `count` doublewords, as one exit.
    mutating func insl(_ port: UInt16, _ count: Int) -> [UInt8] { channel.readString(port: port, size: 4, count: count) }
    /// REP OUTSW of `bytes`, as one exit.
    mutating func outsw(_ port: UInt16, _ bytes: [UInt8]) { channel.writeString(port: port, size: 2, bytes: bytes) }
    /// REP OUTSD of `bytes`, as one exit.
    mutating func outsl(_ port: UInt16, _ bytes: [UInt8]) { channel.writeString(port: port, size: 4, bytes: bytes) }

    /// Rising edges of the IRQ line since the last call (what the service turns into IRQ 14 pulses).
    mutating func newEdges() -> UInt64 {
        defer { edgesTaken = channel.interruptRisingEdges }
        return channel.interruptRisingEdges &- edgesTaken
    }

    /// Loads a 28-bit LBA task file and issues `command` (ata_sff_tf_load order, device 0).
    mutating func issue(_ command: UInt8, lba: UInt64 = 0, count: Int = 1, features: UInt8 = 0) {
        outb(features, featurePort)
        outb(UInt8(truncatingIfNeeded: count), nsectPort)
        outb(UInt8(truncatingIfNeeded: lba), lbalPort)
        outb(UInt8(truncatingIfNeeded: lba >> 8), lbamPort)
        outb(UInt8(truncatingIfNeeded: lba >> 16), lbahPort)
        outb(0xE0 | UInt8(truncatingIfNeeded: lba >> 24) & 0x0F, devicePort)
        outb(command, commandPort)
    }

    /// Loads a 48-bit task file (HOB bytes first, as ata_sff_tf_load does) and issues `command`.
    mutating func issueExt(_ command: UInt8, lba: UInt64, count: Int) {
        outb(0, featurePort)
        outb(UInt8(truncatingIfNeeded: count >> 8), nsectPort)
        outb(UInt8(truncatingIfNeeded: lba >> 24), lbalPort)
        outb(UInt8(truncatingIfNeeded: lba >> 32), lbamPort)
        outb(UInt8(truncatingIfNeeded: lba >> 40), lbahPort)
        outb(0, featurePort)
        outb(UInt8(truncatingIfNeeded: count), nsectPort)
        outb(UInt8(truncatingIfNeeded: lba), lbalPort)
        outb(UInt8(truncatingIfNeeded: lba >> 8), lbamPort)
        outb(UInt8(truncatingIfNeeded: lba >> 16), lbahPort)
        outb(0x40, devicePort)
        outb(command, commandPort)
    }

    /// The 48-bit LBA in the task file (low bytes, then HOB bytes), as ata_tf_read_block does.
    mutating func readLBA48() -> UInt64 {
        let low = UInt64(inb(lbalPort)) | UInt64(inb(lbamPort)) << 8 | UInt64(inb(lbahPort)) << 16
        outb(0x80, ctlPort)
        let high = UInt64(inb(lbalPort)) | UInt64(inb(lbamPort)) << 8 | UInt64(inb(lbahPort)) << 16
        outb(0x00, ctlPort)
        return high << 24 | low
    }

    /// The 28-bit LBA in the task file.
    mutating func readLBA28() -> UInt64 {
        UInt64(inb(lbalPort)) | UInt64(inb(lbamPort)) << 8 | UInt64(inb(lbahPort)) << 16
            | UInt64(inb(devicePort) & 0x0F) << 24
    }
}
