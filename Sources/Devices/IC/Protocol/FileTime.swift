/// A Windows FILETIME: 100 ns intervals since 1601-01-01 UTC, the clock of time-sync samples
/// (Docs/hyperv-interface.md §10.6). FILETIME = Unix time in 100 ns + 116444736000000000.
public struct FileTime: RawRepresentable, Hashable, Comparable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (a: FileTime, b: FileTime) -> Bool { a.rawValue < b.rawValue }

    /// 100 ns intervals between 1601-01-01 and 1970-01-01.
    public static let unixEpochOffset: UInt64 = 116_444_736_000_000_000
    /// 100 ns intervals per second.
    public static let ticksPerSecond: Int64 = 10_000_000

    /// The Unix epoch, 1970-01-01 00:00:00 UTC.
    public static let unixEpoch = FileTime(rawValue: unixEpochOffset)

    /// The FILETIME of a Unix time in 100 ns units, or `nil` if it lies before 1601.
    public init?(unix100Nanoseconds: Int64) {
        if unix100Nanoseconds >= 0 {
            // At most Int64.max + offset, which fits in a UInt64.
            rawValue = FileTime.unixEpochOffset + UInt64(unix100Nanoseconds)
        } else {
            let before = unix100Nanoseconds.magnitude
            guard before <= FileTime.unixEpochOffset else { return nil }
            rawValue = FileTime.unixEpochOffset - before
        }
    }

    /// The FILETIME of a Unix time given as seconds and nanoseconds (truncated to 100 ns), or
    /// `nil` if it lies before 1601 or overflows.
    public init?(unixSeconds: Int64, nanoseconds: Int64 = 0) {
        let (ticks, overflow) = unixSeconds.multipliedReportingOverflow(by: FileTime.ticksPerSecond)
        guard !overflow else { return nil }
        let (total, overflow2) = ticks.addingReportingOverflow(nanoseconds / 100)
        guard !overflow2 else { return nil }
        self.init(unix100Nanoseconds: total)
    }

    /// This time as Unix time in 100 ns units, or `nil` if that does not fit in an Int64.
    public var unix100Nanoseconds: Int64? {
        if rawValue >= FileTime.unixEpochOffset {
            return Int64(exactly: rawValue - FileTime.unixEpochOffset)
        }
        return -Int64(FileTime.unixEpochOffset - rawValue)
    }
}
