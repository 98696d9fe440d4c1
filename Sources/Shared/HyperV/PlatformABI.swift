/// The guest-visible contract of this hypervisor beyond the TLFS: the I/O ports its
/// hypercall page and platform devices use, and the boot-information page it hands to
/// the Embedded Swift guests in Partitions/.
///
/// Port choices follow Docs/hyperv-interface.md §13.1: none of 0x7E (RIP quirk), 0x80/0xED
/// (io_delay), 0x60/0x64, 0x70/0x71, 0x92, 0xB2, 0xE9, 0xF0/0xF1, or in-kernel device ports.
public enum PlatformPorts {
    /// The hypercall page's slow path: `out 0xE2, al` with RCX/RDX/R8 holding the call.
    public static let hypercall: UInt16 = 0xE2
    /// The hypercall page's HvSignalEvent fast path: `out 0xE6, eax` with EAX = connection ID.
    /// Each event connection is an ioeventfd with DATAMATCH on this port, so a signal never
    /// leaves the kernel.
    public static let signalEvent: UInt16 = 0xE6
    /// Debug output: a 32-bit write of the GPA of a `DebugRecord` becomes a log line.
    public static let debug: UInt16 = 0x402
    /// A port that exits to the root and does nothing: guests time it to measure the raw
    /// cost of a PIO exit in the same run as their other figures.
    public static let nullExit: UInt16 = 0x404
    /// Power control shared with the ACPI FADT of Linux partitions: sleep control (SLP_EN|SLP_TYP)
    /// and reset. Writing `PowerCommand.powerOff` stops the partition cleanly.
    public static let power: UInt16 = 0x3C0
    /// The ACPI PM1a event block of the legacy-PC platform (status u16, then enable u16): reads
    /// 0, writes ignored (there are no fixed events, and no SCI is ever raised).
    public static let pm1Event: UInt16 = 0x3C4
    /// The ACPI PM1a control block of the legacy-PC platform (u16): reads SCI_EN; a write with
    /// SLP_EN and SLP_TYP 5 powers the partition off.
    public static let pm1Control: UInt16 = 0x3C8
    /// Every port the root handles itself.
    public static let rootOwned: [UInt16] = [hypercall, signalEvent, debug, nullExit, power]
        + Array(pm1Event..<(pm1Event + 4)) + Array(pm1Control..<(pm1Control + 2))

    /// What a guest's read of `count` elements of `size` bytes at `port` returns (`count` > 1
    /// for REP INS, whose every element is a read of the port): PM1 control reads SCI_EN, the
    /// null-exit, power and PM1 event ports read 0, and any other port floats high (0xFF, as on
    /// an empty ISA bus).
    public static func read(port: UInt16, size: Int, count: Int) -> [UInt8] {
        let element: [UInt8]
        switch port {
        case pm1Control..<(pm1Control + 2):
            let value = port == pm1Control ? PowerCommand.pm1SCIEnable : 0
            element = Array([UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8), 0, 0].prefix(size))
                + [UInt8](repeating: 0, count: max(0, size - 4))
        case nullExit, power, pm1Event..<(pm1Event + 4):
            element = [UInt8](repeating: 0, count: size)
        default:
            element = [UInt8](repeating: 0xFF, count: size)
        }
        return Array([[UInt8]](repeating: element, count: max(1, count)).joined())
    }
}

/// Values written to `PlatformPorts.power`.
public enum PowerCommand {
    /// SLP_EN (bit 5) with SLP_TYP 5 (S5) in bits 4:2, as ACPI sleep-control registers encode it.
    public static let powerOff: UInt8 = (1 << 5) | (5 << 2)
    /// The FADT RESET_VALUE.
    public static let reset: UInt8 = 0x01
    /// PM1 control (legacy-PC platform): SCI_EN, bit 0, which reads set (ACPI mode).
    public static let pm1SCIEnable: UInt16 = 1
    /// PM1 control: SLP_EN, bit 13.
    public static let pm1SleepEnable: UInt16 = 1 << 13
    /// PM1 control: SLP_TYP in bits 12:10; 5 is S5.
    public static func pm1SleepType(_ value: UInt16) -> UInt16 { (value >> 10) & 7 }
}

/// A debug line at a guest physical address: u32 length @0, then that many UTF-8 bytes.
public enum DebugRecord {
    public static let lengthOffset = 0
    public static let textOffset = 4
    /// Longer records are truncated by the root.
    public static let maximumLength = 512
}

/// The boot-information page the root writes for Embedded Swift guests; RSI holds its GPA at
/// entry (the register Linux's 64-bit boot protocol uses for the zero page) and RDI the VP index.
public enum GuestBootInfo {
    /// Where the root puts it.
    public static let address: UInt64 = 0x8000
    /// "HVBI" little-endian.
    public static let magic: UInt32 = 0x4942_5648
    public static let magicOffset = 0
    /// u32 number of virtual processors.
    public static let processorCountOffset = 4
    /// u64 bytes of guest RAM starting at GPA 0.
    public static let memorySizeOffset = 8
    /// u64 guest TSC frequency in Hz.
    public static let tscFrequencyOffset = 16
    /// u32 length and bytes of the partition's argument string ("key=value key=value").
    public static let argumentsLengthOffset = 24
    public static let argumentsOffset = 28
    public static let maximumArgumentsLength = 1024
    /// u64 first GPA the guest may use freely (above its image and the root's boot structures).
    public static let freeMemoryStartOffset = 1056
    /// u32 length and bytes of the partition's name.
    public static let nameLengthOffset = 1064
    public static let nameOffset = 1068
    public static let maximumNameLength = 64
}

/// The parent partition's diagnostic echo service, which the Embedded Swift probe guest uses
/// to time message and event round trips through the SynIC.
public enum DiagnosticEcho {
    /// HvPostMessage here is echoed back to the posting processor, on the SINT named in the
    /// payload's first byte, with the same type and payload.
    public static let messageConnection = ConnectionID(0x0F00)
    /// HvSignalEvent here sets `eventFlag` in SINT `eventSINT`'s flags on processor 0 and
    /// raises that SINT.
    public static let eventConnection = ConnectionID(0x0F01)
    /// The message type the probe uses (not hypervisor-reserved).
    public static let messageType = SynICMessageType(rawValue: 0x100)
    /// Offset of the reply SINT in an echo payload.
    public static let replySINTOffset = 0
    /// The SINT and flag events are echoed on.
    public static let eventSINT = 5
    public static let eventFlag = 1
}
