/// A cylinder/head/sector translation of the disk's sectors, for commands issued with the
/// Device register's LBA bit clear (ATA/ATAPI-6 annex "Device determination of CHS
/// translation"; obsolete since ATA/ATAPI-6 but still honoured by drives).
public struct CHSGeometry: Equatable, Sendable {
    /// The most sectors any CHS translation covers: 16383 cylinders of 16 heads of 63 sectors.
    public static let addressableLimit: UInt64 = 16_383 * 16 * 63

    public let cylinders: Int
    public let heads: Int
    public let sectorsPerTrack: Int

    /// Sectors the translation addresses.
    public var capacity: UInt64 { UInt64(cylinders) * UInt64(heads) * UInt64(sectorsPerTrack) }

    /// The default translation (IDENTIFY words 1, 3 and 6): 16 heads of 63 sectors, with fewer
    /// heads and sectors for disks too small for one such cylinder; `nil` for an empty disk.
    public static func defaultTranslation(sectors: UInt64) -> CHSGeometry? {
        let limit = min(sectors, addressableLimit)
        if limit >= 16 * 63 { return CHSGeometry(cylinders: Int(limit / (16 * 63)), heads: 16, sectorsPerTrack: 63) }
        if limit >= 63 { return CHSGeometry(cylinders: 1, heads: Int(limit / 63), sectorsPerTrack: 63) }
        if limit >= 1 { return CHSGeometry(cylinders: 1, heads: 1, sectorsPerTrack: Int(limit)) }
        return nil
    }

    /// The translation INITIALIZE DEVICE PARAMETERS asks for: `heads` (1-16) of
    /// `sectorsPerTrack` (1-255), as many cylinders as fit (at most 65535); `nil` if not even
    /// one cylinder fits or a parameter is out of range.
    public static func requested(heads: Int, sectorsPerTrack: Int, sectors: UInt64) -> CHSGeometry? {
        guard (1...16).contains(heads), (1...255).contains(sectorsPerTrack) else { return nil }
        let cylinders = min(65_535, min(sectors, addressableLimit) / UInt64(heads * sectorsPerTrack))
        guard cylinders > 0 else { return nil }
        return CHSGeometry(cylinders: Int(cylinders), heads: heads, sectorsPerTrack: sectorsPerTrack)
    }

    /// The LBA of a CHS address, or `nil` if the address is outside the translation (sector
    /// numbers start at 1).
    public func lba(cylinder: Int, head: Int, sector: Int) -> UInt64? {
        guard cylinder < cylinders, head < heads, sector >= 1, sector <= sectorsPerTrack else { return nil }
        return (UInt64(cylinder) * UInt64(heads) + UInt64(head)) * UInt64(sectorsPerTrack) + UInt64(sector - 1)
    }

    /// The CHS address of `lba` (saturated at the translation's last sector).
    public func address(of lba: UInt64) -> (cylinder: Int, head: Int, sector: Int) {
        let clamped = min(lba, capacity == 0 ? 0 : capacity - 1)
        let track = clamped / UInt64(sectorsPerTrack)
        return (Int(track / UInt64(heads)), Int(track % UInt64(heads)), Int(clamped % UInt64(sectorsPerTrack)) + 1)
    }
}
