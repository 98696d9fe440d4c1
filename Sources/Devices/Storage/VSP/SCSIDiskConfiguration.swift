/// What a virtual disk looks like to the guest: its identity strings, geometry and the
/// features it claims. Configuration is untrusted input, so `validated()` checks every field.
public struct SCSIDiskConfiguration: Hashable, Sendable {
    /// T10 vendor identification, at most 8 printable ASCII characters. storvsc applies its
    /// quirks to vendor "Msft" (case-sensitive, `storvsc_device_configure`).
    public var vendor: String
    /// Product identification, at most 16 printable ASCII characters.
    public var product: String
    /// Product revision level, at most 4 printable ASCII characters.
    public var revision: String
    /// The unit serial number (VPD page 0x80), 1 to 64 printable ASCII characters.
    public var serialNumber: String
    /// The logical block size: 512 or 4096 bytes.
    public var blockSize: UInt32
    /// The physical block size reported by READ CAPACITY(16): a power of two, at least the
    /// logical block size and at most 2^15 of them.
    public var physicalBlockSize: UInt32
    /// The capacity in logical blocks.
    public var blockCount: UInt64
    /// WP: every write and UNMAP fails with DATA PROTECT.
    public var readOnly: Bool
    /// WCE: writes may complete before they are durable, and the guest sends SYNCHRONIZE
    /// CACHE. When false, every write is carried out with FUA semantics.
    public var writeCacheEnabled: Bool
    /// Whether reads may be served from a cache (RCD = 0).
    public var readCacheEnabled: Bool
    /// Logical block provisioning: UNMAP, LBPME in READ CAPACITY(16), the unmap fields of the
    /// BLOCK LIMITS page and LBPU in the LOGICAL BLOCK PROVISIONING page.
    public var discardSupported: Bool
    /// Medium rotation rate 1 (non-rotating) in the BLOCK DEVICE CHARACTERISTICS page.
    public var nonRotational: Bool

    public init(serialNumber: String, blockSize: UInt32 = 512, blockCount: UInt64, readOnly: Bool = false,
                writeCacheEnabled: Bool = true, discardSupported: Bool = false, vendor: String = "Msft",
                product: String = "Virtual Disk", revision: String = "1.0", physicalBlockSize: UInt32 = 4096,
                readCacheEnabled: Bool = true, nonRotational: Bool = true) {
        self.vendor = vendor
        self.product = product
        self.revision = revision
        self.serialNumber = serialNumber
        self.blockSize = blockSize
        self.physicalBlockSize = physicalBlockSize
        self.blockCount = blockCount
        self.readOnly = readOnly
        self.writeCacheEnabled = writeCacheEnabled
        self.readCacheEnabled = readCacheEnabled
        self.discardSupported = discardSupported
        self.nonRotational = nonRotational
    }

    /// The capacity in bytes.
    public var capacityBytes: UInt64 { blockCount &* UInt64(blockSize) }

    /// log2(physical / logical), the READ CAPACITY(16) exponent.
    public var physicalBlockExponent: UInt8 {
        UInt8((physicalBlockSize / blockSize).trailingZeroBitCount)
    }

    /// This configuration after checking every field.
    /// - Throws: `SCSIDiskConfigurationError` naming the first bad field.
    public func validated() throws(SCSIDiskConfigurationError) -> SCSIDiskConfiguration {
        try Self.checkASCII(vendor, field: "vendor", range: 1...8)
        try Self.checkASCII(product, field: "product", range: 1...16)
        try Self.checkASCII(revision, field: "revision", range: 1...4)
        try Self.checkASCII(serialNumber, field: "serialNumber", range: 1...64)
        // scsi_devinfo.c lists vendor "MSFT" with product "Virtual HD"; that entry replaces
        // the flags storvsc's LUN scan relies on (BLIST_REPORTLUN2).
        if vendor == "MSFT", product.hasPrefix("Virtual HD") {
            throw .invalid(field: "product", reason: "vendor MSFT with product Virtual HD disables Linux's LUN scan")
        }
        guard blockSize == 512 || blockSize == 4096 else {
            throw .invalid(field: "blockSize", reason: "must be 512 or 4096, not \(blockSize)")
        }
        guard physicalBlockSize.nonzeroBitCount == 1, physicalBlockSize >= blockSize,
              physicalBlockSize / blockSize <= 1 << 15 else {
            throw .invalid(field: "physicalBlockSize", reason: "must be a power of two from \(blockSize) to \(blockSize) << 15")
        }
        guard blockCount >= 1 else { throw .invalid(field: "blockCount", reason: "the disk is empty") }
        let (bytes, overflow) = blockCount.multipliedReportingOverflow(by: UInt64(blockSize))
        guard !overflow, bytes <= UInt64(Int64.max) else {
            throw .invalid(field: "blockCount", reason: "\(blockCount) blocks of \(blockSize) bytes do not fit a file")
        }
        return self
    }

    private static func checkASCII(_ text: String, field: String, range: ClosedRange<Int>) throws(SCSIDiskConfigurationError) {
        let bytes = Array(text.utf8)
        guard range.contains(bytes.count) else {
            throw .invalid(field: field, reason: "must be \(range.lowerBound) to \(range.upperBound) characters")
        }
        guard bytes.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw .invalid(field: field, reason: "must be printable ASCII")
        }
    }
}

/// A disk configuration field that cannot be honoured.
public enum SCSIDiskConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalid(field: String, reason: String)

    public var description: String {
        switch self {
        case .invalid(let field, let reason): "disk \(field): \(reason)"
        }
    }
}
