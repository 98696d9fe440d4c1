/// Why a disk configuration was refused.
public enum IDEConfigurationError: Error, Equatable, Sendable {
    /// An identity string is longer than its IDENTIFY DEVICE field.
    case stringTooLong(field: String, maximum: Int)
    /// An identity string holds a byte outside printable ASCII (0x20-0x7E).
    case stringNotPrintableASCII(field: String)
    /// The largest READ/WRITE MULTIPLE block must be a power of two from 1 to 128.
    case invalidMaximumMultiple(Int)
    /// The power-on multiple setting must be 0 (disabled) or a power of two up to the maximum.
    case invalidInitialMultiple(Int)
}

/// An ATA string field of IDENTIFY DEVICE data: printable ASCII, padded with spaces to the
/// field's width (ATA/ATAPI-7 volume 1, "ATA string convention").
public struct ATAString: Equatable, Sendable {
    /// The field's bytes, space padded, in reading order.
    public let bytes: [UInt8]

    /// `text` for a field of `width` bytes.
    public init(_ text: String, width: Int, field: String) throws(IDEConfigurationError) {
        let utf8 = Array(text.utf8)
        guard utf8.count <= width else { throw .stringTooLong(field: field, maximum: width) }
        guard utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else { throw .stringNotPrintableASCII(field: field) }
        bytes = utf8 + [UInt8](repeating: 0x20, count: width - utf8.count)
    }

    /// A field built from text this module wrote itself (printable, short enough).
    init(builtIn text: String, width: Int) {
        let utf8 = Array(text.utf8.prefix(width))
        bytes = utf8 + [UInt8](repeating: 0x20, count: width - utf8.count)
    }
}

/// What IDENTIFY DEVICE reports about the emulated disk, and its power-on settings.
public struct IDEDiskConfiguration: Equatable, Sendable {
    /// Words 27-46 (40 characters).
    public let model: ATAString
    /// Words 10-19 (20 characters).
    public let serialNumber: ATAString
    /// Words 23-26 (8 characters).
    public let firmwareRevision: ATAString
    /// The largest READ/WRITE MULTIPLE block (word 47).
    public let maximumMultipleSectors: Int
    /// The READ/WRITE MULTIPLE block after power-on; 0 means multiple mode is disabled. Linux
    /// takes the current setting from word 59 and never issues SET MULTIPLE MODE itself
    /// (drivers/ata/libata-core.c: ata_dev_configure).
    public let initialMultipleSectors: Int
    /// Whether the volatile write cache is enabled after power-on.
    public let writeCacheEnabledAtPowerOn: Bool

    /// The defaults: multiple mode enabled at 16 sectors (as PC BIOSes leave drives), write
    /// cache enabled.
    public static let standard = IDEDiskConfiguration()

    private init() {
        model = ATAString(builtIn: "hv virtual IDE disk", width: 40)
        serialNumber = ATAString(builtIn: "HV00000001", width: 20)
        firmwareRevision = ATAString(builtIn: "1.0", width: 8)
        maximumMultipleSectors = 16
        initialMultipleSectors = 16
        writeCacheEnabledAtPowerOn = true
    }

    /// Checks every field; strings must be printable ASCII and fit their fields.
    public init(
        model: String,
        serialNumber: String,
        firmwareRevision: String,
        maximumMultipleSectors: Int = 16,
        initialMultipleSectors: Int = 16,
        writeCacheEnabledAtPowerOn: Bool = true
    ) throws(IDEConfigurationError) {
        self.model = try ATAString(model, width: 40, field: "model")
        self.serialNumber = try ATAString(serialNumber, width: 20, field: "serial number")
        self.firmwareRevision = try ATAString(firmwareRevision, width: 8, field: "firmware revision")
        guard (1...128).contains(maximumMultipleSectors), maximumMultipleSectors.nonzeroBitCount == 1 else {
            throw .invalidMaximumMultiple(maximumMultipleSectors)
        }
        guard initialMultipleSectors == 0
            || (initialMultipleSectors.nonzeroBitCount == 1 && (1...maximumMultipleSectors).contains(initialMultipleSectors))
        else {
            throw .invalidInitialMultiple(initialMultipleSectors)
        }
        self.maximumMultipleSectors = maximumMultipleSectors
        self.initialMultipleSectors = initialMultipleSectors
        self.writeCacheEnabledAtPowerOn = writeCacheEnabledAtPowerOn
    }
}
