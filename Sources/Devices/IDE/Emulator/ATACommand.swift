/// The command codes this model executes (ATA/ATAPI-7 volume 1, chapter 6). Any other code
/// written to the Command register aborts with ERR and ABRT.
public enum ATACommand {
    public static let readSectors: UInt8 = 0x20
    public static let readSectorsExt: UInt8 = 0x24
    public static let readMultipleExt: UInt8 = 0x29
    public static let writeSectors: UInt8 = 0x30
    public static let writeSectorsExt: UInt8 = 0x34
    public static let writeMultipleExt: UInt8 = 0x39
    public static let readVerifySectors: UInt8 = 0x40
    public static let readVerifySectorsExt: UInt8 = 0x42
    public static let executeDeviceDiagnostic: UInt8 = 0x90
    public static let initializeDeviceParameters: UInt8 = 0x91
    public static let readMultiple: UInt8 = 0xC4
    public static let writeMultiple: UInt8 = 0xC5
    public static let setMultipleMode: UInt8 = 0xC6
    public static let standbyImmediate: UInt8 = 0xE0
    public static let idleImmediate: UInt8 = 0xE1
    public static let standby: UInt8 = 0xE2
    public static let idle: UInt8 = 0xE3
    public static let checkPowerMode: UInt8 = 0xE5
    public static let flushCache: UInt8 = 0xE7
    public static let flushCacheExt: UInt8 = 0xEA
    public static let identifyDevice: UInt8 = 0xEC
    public static let setFeatures: UInt8 = 0xEF
}

/// SET FEATURES subcommands (Features register) this model accepts.
public enum ATASetFeatures {
    /// Enable the volatile write cache.
    public static let enableWriteCache: UInt8 = 0x02
    /// Set the transfer mode from the Sector Count register.
    public static let setTransferMode: UInt8 = 0x03
    /// Disable the volatile write cache (the cache is flushed first).
    public static let disableWriteCache: UInt8 = 0x82
}

/// CHECK POWER MODE results (Sector Count register).
public enum ATAPowerMode {
    public static let standby: UInt8 = 0x00
    public static let activeOrIdle: UInt8 = 0xFF
}
