import HyperV

/// The Multiple APIC Description Table (ACPI 6.4 §5.2.12; Docs/hyperv-interface.md §13.4),
/// the only description of processors and the IOAPIC a Debian kernel reads (MPPARSE is off).
///
/// Flags are 0, not PCAT_COMPAT: the platform offers no 8259 pair for the OS to program. The FADT
/// declares hardware-reduced ACPI, under which Linux installs no legacy PIC driver anyway and
/// takes every interrupt through the IOAPIC and local APICs.
public enum MADT {
    /// The table signature.
    public static let signature = "APIC"
    /// The table revision.
    public static let revision: UInt8 = 5
    /// Local Interrupt Controller Address u32.
    public static let localAPICAddressOffset = 36
    /// Flags u32.
    public static let flagsOffset = 40
    /// The first interrupt controller structure.
    public static let entriesOffset = 44
    /// Where every local APIC is.
    public static let localAPICAddress: UInt32 = 0xFEE0_0000

    /// Structure type 0, Processor Local APIC, 8 bytes.
    public static let processorLocalAPICType: UInt8 = 0
    /// Its length.
    public static let processorLocalAPICLength = 8
    /// Structure type 1, I/O APIC, 12 bytes.
    public static let ioAPICType: UInt8 = 1
    /// Its length.
    public static let ioAPICLength = 12
    /// Structure type 2, Interrupt Source Override, 10 bytes.
    public static let interruptSourceOverrideType: UInt8 = 2
    /// Its length.
    public static let interruptSourceOverrideLength = 10
    /// Local APIC flags bit 0: enabled.
    public static let processorEnabled: UInt32 = 1

    /// ISA IRQs that get an identity override besides IRQ 0's: the IDE channels' 14 and 15.
    ///
    /// Without PCAT_COMPAT Linux sets up no legacy IRQs of its own (`nr_legacy_irqs()` is 0), so
    /// an ISA IRQ exists only once something names it: an ACPI device's _CRS (COM1's IRQ 4) or an
    /// override here, for which `setup_IO_APIC_irqs` allocates the IRQ (arch/x86/kernel/acpi/boot.c:
    /// mp_override_legacy_irq). `pata_legacy` asks for IRQ 14 and 15 by number, with no ACPI device
    /// behind them.
    public static let identityOverrides: [UInt8] = [14, 15]

    /// The table's size for `processorCount` processors.
    static func size(processorCount: Int) -> Int {
        entriesOffset + processorCount * processorLocalAPICLength + ioAPICLength
            + (1 + identityOverrides.count) * interruptSourceOverrideLength
    }

    /// One local APIC per processor (ACPI UID and APIC ID both the index), the IOAPIC with ID
    /// `processorCount` and GSI base 0, ISA IRQ 0 routed to GSI 2 as on every PC, and IRQ 14 and
    /// 15 identity-mapped (`identityOverrides`). The other ISA IRQs, COM1's IRQ 4 among them,
    /// are identity-mapped and need no override.
    /// Flags bit 0, PCAT_COMPAT: the platform also has an 8259 pair (the legacy-PC platform).
    public static let pcatCompatible: UInt32 = 1

    static func build(processorCount: Int, ioapicAddress: UInt32, legacyPC: Bool = false) -> [UInt8] {
        var body: [UInt8] = []
        body.appendLittleEndian(localAPICAddress)
        body.appendLittleEndian(legacyPC ? pcatCompatible : 0)
        for index in 0..<processorCount {
            body += [processorLocalAPICType, UInt8(processorLocalAPICLength),
                     UInt8(truncatingIfNeeded: index), UInt8(truncatingIfNeeded: index)]
            body.appendLittleEndian(processorEnabled)
        }
        body += [ioAPICType, UInt8(ioAPICLength), UInt8(truncatingIfNeeded: processorCount), 0]
        body.appendLittleEndian(ioapicAddress)
        body.appendLittleEndian(UInt32(0))
        body += [interruptSourceOverrideType, UInt8(interruptSourceOverrideLength), 0, 0]  // bus ISA, IRQ 0
        body.appendLittleEndian(UInt32(2))  // GSI 2
        body.appendLittleEndian(UInt16(0))  // polarity and trigger mode conform to the ISA bus
        for irq in identityOverrides {
            body += [interruptSourceOverrideType, UInt8(interruptSourceOverrideLength), 0, irq]  // bus ISA
            body.appendLittleEndian(UInt32(irq))
            body.appendLittleEndian(UInt16(0))
        }
        return TableHeader.assemble(signature: signature, revision: revision, body: body)
    }
}
