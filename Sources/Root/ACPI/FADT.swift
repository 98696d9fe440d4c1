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

    /// An FADT whose DSDT is at `dsdtAddress`, which must be below 4 GiB.
    static func build(dsdtAddress: UInt64) -> [UInt8] {
        var table = [UInt8].zeros(size)
        table.storeLittleEndian(UInt32(truncatingIfNeeded: dsdtAddress), at: dsdtOffset)
        table.storeLittleEndian(vgaNotPresent | cmosRTCNotPresent, at: bootArchitectureOffset)
        table.storeLittleEndian(hardwareReducedACPI | resetRegisterSupported, at: flagsOffset)
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
