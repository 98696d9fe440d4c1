/// The registers of one ATA channel and the bits this model implements (ATA/ATAPI-6 and
/// ATA/ATAPI-7, "Register descriptions"; Linux include/linux/ata.h spells the same bits).
///
/// The command block is eight ports at the channel's base; the control block is one port at
/// base + 0x206 (0x3F6 for the primary channel at 0x1F0).
public enum ATARegister {
    /// Data (16-bit; 32-bit accesses move two words).
    public static let data: UInt16 = 0
    /// Read: Error. Write: Features.
    public static let errorFeatures: UInt16 = 1
    /// Sector Count.
    public static let sectorCount: UInt16 = 2
    /// LBA Low (CHS: Sector Number).
    public static let lbaLow: UInt16 = 3
    /// LBA Mid (CHS: Cylinder Low).
    public static let lbaMid: UInt16 = 4
    /// LBA High (CHS: Cylinder High).
    public static let lbaHigh: UInt16 = 5
    /// Device (formerly Drive/Head).
    public static let device: UInt16 = 6
    /// Read: Status (clears a pending interrupt). Write: Command.
    public static let statusCommand: UInt16 = 7

    /// The control block's offset from the command block's base.
    public static let controlBlockOffset: UInt16 = 0x206
}

/// Status register bits.
public enum ATAStatus {
    /// BSY: the device owns the registers.
    public static let busy: UInt8 = 0x80
    /// DRDY: the device accepts commands.
    public static let ready: UInt8 = 0x40
    /// DF: device fault.
    public static let deviceFault: UInt8 = 0x20
    /// DSC: seek complete (ATA-3; command dependent in later standards, set as drives do).
    public static let seekComplete: UInt8 = 0x10
    /// DRQ: a data block is ready to move through the data register.
    public static let dataRequest: UInt8 = 0x08
    /// ERR: the last command failed; the Error register says why.
    public static let error: UInt8 = 0x01
}

/// Error register bits.
public enum ATAError {
    /// UNC: uncorrectable data error.
    public static let uncorrectable: UInt8 = 0x40
    /// IDNF: the address is outside the device.
    public static let idNotFound: UInt8 = 0x10
    /// ABRT: command aborted (unsupported command or parameter, or a failed write).
    public static let aborted: UInt8 = 0x04
    /// The diagnostic code a device reports after reset or EXECUTE DEVICE DIAGNOSTIC when it
    /// passed and device 1 is absent (or passed too).
    public static let diagnosticsPassed: UInt8 = 0x01
}

/// Device register bits.
public enum ATADevice {
    /// LBA: the address registers hold an LBA rather than cylinder/head/sector.
    public static let lba: UInt8 = 0x40
    /// DEV: device 1 is selected.
    public static let device1: UInt8 = 0x10
    /// Bits 7 and 5, obsolete; hosts still set them (libata's ATA_DEVICE_OBS).
    public static let obsolete: UInt8 = 0xA0
}

/// Device Control register bits (written at the control block; reads there give Alternate Status).
public enum ATADeviceControl {
    /// HOB: reads of the address registers return the previously written ("high order") bytes.
    public static let highOrderByte: UInt8 = 0x80
    /// SRST: software reset of both devices while set.
    public static let softwareReset: UInt8 = 0x04
    /// nIEN: the selected device does not drive INTRQ.
    public static let interruptDisable: UInt8 = 0x02
}
