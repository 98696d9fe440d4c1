import HyperV

/// The Fixed ACPI Description Table, revision 6, for a hardware-reduced platform whose reset,
/// sleep control and sleep status are one 8-bit I/O port, `PlatformPorts.power`
/// (ACPI 6.4 §5.2.9; Docs/hyperv-interface.md §13.4).
///
/// Hardware-reduced ACPI means no PM1/GPE blocks, SCI, PM timer or FACS. Linux then also skips
/// the legacy PIC and PIT setup. Poweroff writes `PowerCommand.powerOff` (SLP_TYP 5 | SLP_EN)
/// to SLEEP_CONTROL_REG after writing 0x80 (WAK_STS, write-1-to-clear) to SLEEP_STATUS_REG, the
/// same port; reboot writes RESET_VALUE to RESET_REG.
public enum FADT {
    /// The table signature.
    public static let signature = "FACP"
    /// The table revision.
    public static let revision: UInt8 = 6
    /// ACPI 6.4.
    public static let minorVersion: UInt8 = 4
    /// Revision 6 is 276 bytes.
    public static let size = 276

    /// DSDT u32.
    public static let dsdtOffset = 40
    /// Preferred_PM_Profile u8.
    public static let preferredPMProfileOffset = 45
    /// IAPC_BOOT_ARCH u16.
    public static let bootArchitectureOffset = 109
    /// Flags u32.
    public static let flagsOffset = 112
    /// RESET_REG, a GenericAddress.
    public static let resetRegisterOffset = 116
    /// RESET_VALUE u8.
    public static let resetValueOffset = 128
    /// FADT Minor Version u8 (errata in the high nibble).
    public static let minorVersionOffset = 131
    /// X_DSDT u64.
    public static let extendedDSDTOffset = 140
    /// SLEEP_CONTROL_REG, a GenericAddress.
    public static let sleepControlRegisterOffset = 244
    /// SLEEP_STATUS_REG, a GenericAddress.
    public static let sleepStatusRegisterOffset = 256
    /// Hypervisor Vendor Identity, 8 bytes.
    public static let hypervisorVendorOffset = 268

    /// Flags bit 10, RESET_REG_SUP: RESET_REG is valid.
    public static let resetRegisterSupported: UInt32 = 1 << 10
    /// Flags bit 20, HW_REDUCED_ACPI.
    public static let hardwareReducedACPI: UInt32 = 1 << 20

    /// IAPC_BOOT_ARCH bit 1, 8042: clear, there is no keyboard controller.
    public static let has8042: UInt16 = 1 << 1
    /// IAPC_BOOT_ARCH bit 2: VGA not present.
    public static let vgaNotPresent: UInt16 = 1 << 2
    /// IAPC_BOOT_ARCH bit 5: CMOS RTC not present.
    public static let cmosRTCNotPresent: UInt16 = 1 << 5

    /// The hypervisor vendor identity written at offset 268.
    public static let hypervisorVendor = "HVSWFTVM"

    // The legacy-PC platform's fields (ACPI 6.4 §5.2.9, Table 5.9).
    /// SCI_INT u16: the SCI's ISA IRQ.
    public static let sciInterruptOffset = 46
    /// PM1a_EVT_BLK u32, PM1a_CNT_BLK u32.
    public static let pm1aEventBlockOffset = 56
    public static let pm1aControlBlockOffset = 64
    /// PM1_EVT_LEN u8, PM1_CNT_LEN u8.
    public static let pm1EventLengthOffset = 88
    public static let pm1ControlLengthOffset = 89
    /// X_PM1a_EVT_BLK and X_PM1a_CNT_BLK, GenericAddresses.
    public static let extendedPM1aEventBlockOffset = 148
    public static let extendedPM1aControlBlockOffset = 172
    /// The SCI's IRQ on the legacy-PC platform (it is never raised).
    public static let sciInterrupt: UInt16 = 9
    /// IAPC_BOOT_ARCH bit 0: legacy (ISA) devices may be present.
    public static let legacyDevices: UInt16 = 1 << 0

    /// An FADT whose DSDT is at `dsdtAddress`, which must be below 4 GiB.
    ///
    /// With `legacyPC`, the platform is not hardware-reduced: Linux then sets up the 8259 pair
    /// KVM emulates and numbers ISA IRQs 0-15 as on a PC (drivers such as `pata_legacy` ask for
    /// IRQ 14 by number), and powers off through a PM1a control block (`PlatformPorts.pm1Control`)
    /// beside a PM1a event block that never reports an event. There is no SMI command port
    /// (ACPI mode is always on), no PM timer, no GPE block and no FACS.
    static func build(dsdtAddress: UInt64, legacyPC: Bool = false) -> [UInt8] {
        var table = [UInt8].zeros(size)
        table.storeLittleEndian(UInt32(truncatingIfNeeded: dsdtAddress), at: dsdtOffset)
        table.storeLittleEndian(vgaNotPresent | cmosRTCNotPresent | (legacyPC ? legacyDevices : 0), at: bootArchitectureOffset)
        table.storeLittleEndian((legacyPC ? 0 : hardwareReducedACPI) | resetRegisterSupported, at: flagsOffset)
        if legacyPC {
            table.storeLittleEndian(sciInterrupt, at: sciInterruptOffset)
            table.storeLittleEndian(UInt32(PlatformPorts.pm1Event), at: pm1aEventBlockOffset)
            table.storeLittleEndian(UInt32(PlatformPorts.pm1Control), at: pm1aControlBlockOffset)
            table[pm1EventLengthOffset] = 4
            table[pm1ControlLengthOffset] = 2
            let event = GenericAddress(addressSpace: GenericAddress.systemIOSpace, bitWidth: 32, bitOffset: 0, accessSize: 2,
                                       address: UInt64(PlatformPorts.pm1Event))
            let control = GenericAddress(addressSpace: GenericAddress.systemIOSpace, bitWidth: 16, bitOffset: 0, accessSize: 2,
                                         address: UInt64(PlatformPorts.pm1Control))
            table.replaceSubrange(extendedPM1aEventBlockOffset..<(extendedPM1aEventBlockOffset + GenericAddress.size),
                                  with: event.encoded)
            table.replaceSubrange(extendedPM1aControlBlockOffset..<(extendedPM1aControlBlockOffset + GenericAddress.size),
                                  with: control.encoded)
        }
        let power = GenericAddress.ioPort8(PlatformPorts.power).encoded
        table.replaceSubrange(resetRegisterOffset..<(resetRegisterOffset + GenericAddress.size), with: power)
        table[resetValueOffset] = PowerCommand.reset
        table[minorVersionOffset] = minorVersion
        table.storeLittleEndian(dsdtAddress, at: extendedDSDTOffset)
        table.replaceSubrange(sleepControlRegisterOffset..<(sleepControlRegisterOffset + GenericAddress.size), with: power)
        table.replaceSubrange(sleepStatusRegisterOffset..<(sleepStatusRegisterOffset + GenericAddress.size), with: power)
        table.storeASCII(hypervisorVendor, at: hypervisorVendorOffset, width: 8)
        return TableHeader.assemble(signature: signature, revision: revision,
                                    body: Array(table[TableHeader.size...]))
    }
}
