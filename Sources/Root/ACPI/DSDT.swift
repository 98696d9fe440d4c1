import HyperV

/// The Differentiated System Description Table: the AML namespace of a Linux partition
/// (Docs/hyperv-interface.md §13.4).
///
///     Device (\_SB.VMOD) {                       // ACPI module device, VMBus's parent
///         Name (_HID, "ACPI0004")
///         Name (_UID, Zero)
///         Name (_CRS, ResourceTemplate () { QWordMemory (...) for each MMIO window })
///         Device (VMBS) {                        // hv_vmbus matches _HID "VMBus" exactly
///             Name (_HID, "VMBus")
///             Name (_DDN, "VMBUS")
///             Name (_UID, Zero)
///             Method (_STA, 0) { Return (0x0F) }
///             Name (_CRS, ResourceTemplate () {}) // no IRQ on x86: Linux uses vector 0xF3
///         }
///     }
///     Device (\_SB.COM1) {                       // the 16550 at 0x3F8, IRQ 4
///         Name (_HID, EisaId ("PNP0501"))
///         Name (_UID, One)
///         Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 1, 8)  IRQNoFlags () {4} })
///     }
///     Name (\_S5, Package () { 5, 0, 0, 0 })     // SLP_TYP 5, as PowerCommand.powerOff writes
public enum DSDT {
    /// The table signature.
    public static let signature = "DSDT"
    /// Revision 2: integers are 64-bit.
    public static let revision: UInt8 = 2

    /// The VMBus parent module device.
    public static let moduleDevicePath = "\\_SB.VMOD"
    /// The VMBus device itself.
    public static let vmbusDevicePath = "\\_SB.VMOD.VMBS"
    /// The first serial port.
    public static let com1DevicePath = "\\_SB.COM1"
    /// The S5 (soft off) sleep package.
    public static let s5Path = "\\_S5"

    /// The _HID hv_vmbus binds to.
    public static let vmbusHardwareID = "VMBus"
    /// COM1's base port.
    public static let com1Port: UInt16 = 0x3F8
    /// COM1's eight registers, 0x3F8-0x3FF.
    public static let com1PortCount: UInt8 = 8
    /// COM1's ISA IRQ, identity-mapped to IOAPIC pin 4.
    public static let com1IRQ = 4

    /// The S5 SLP_TYP value, bits 4:2 of `PowerCommand.powerOff`.
    public static let s5SleepType = UInt64((PowerCommand.powerOff >> 2) & 0x7)

    /// The DSDT, with `mmioWindows` (possibly none) in VMOD's _CRS for Linux's `vmbus_allocate_mmio`.
    /// - Throws: `.invalidConfiguration` for an empty window.
    static func build(mmioWindows: [Range<UInt64>]) throws(ACPIError) -> [UInt8] {
        guard mmioWindows.allSatisfy({ !$0.isEmpty }) else {
            throw .invalidConfiguration("an MMIO window is empty")
        }
        let aml = try AML.device(moduleDevicePath, [
            AML.name("_HID", AML.string("ACPI0004")),
            AML.name("_UID", AML.zero),
            AML.name("_CRS", AML.resourceTemplate(mmioWindows.map { .qwordMemory(.mmio($0)) })),
            AML.device("VMBS", [
                AML.name("_HID", AML.string(vmbusHardwareID)),
                AML.name("_DDN", AML.string("VMBUS")),
                AML.name("_UID", AML.zero),
                AML.method("_STA", [AML.return(AML.integer(0x0F))]),
                AML.name("_CRS", AML.resourceTemplate([])),
            ]),
        ])
        + AML.device(com1DevicePath, [
            AML.name("_HID", AML.eisaID("PNP0501")),
            AML.name("_UID", AML.one),
            AML.name("_CRS", AML.resourceTemplate([
                .io(.fixed(base: com1Port, length: com1PortCount)),
                .irq(mask: 1 << com1IRQ),
            ])),
        ])
        + AML.name(s5Path, AML.package([AML.integer(s5SleepType), AML.zero, AML.zero, AML.zero]))
        return TableHeader.assemble(signature: signature, revision: revision, body: aml)
    }
}
