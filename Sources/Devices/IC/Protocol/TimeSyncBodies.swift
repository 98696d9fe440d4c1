import HyperV

/// The flags byte of a time-sync sample (Docs/hyperv-interface.md §10.6).
public struct TimeSyncFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// ICTIMESYNCFLAG_SYNC: the guest sets its clock (settimeofday).
    public static let sync = TimeSyncFlags(rawValue: 1)
    /// ICTIMESYNCFLAG_SAMPLE: a hint that feeds the guest's PTP clock.
    public static let sample = TimeSyncFlags(rawValue: 2)
}

/// The time-sync body for message version 4.0 and later (`ictimesync_ref_data`;
/// Docs/hyperv-interface.md §10.6): u64 parenttime @0, u64 vmreferencetime @8, u8 flags @16,
/// s8 leapflags @17, s8 stratum @18, u8 reserved[3] @19; 22 bytes.
public struct TimeSyncReferenceBody: Hashable, Sendable {
    /// Size of the body.
    public static let size = 22

    /// Host UTC time when the sample was taken.
    public var parentTime: FileTime
    /// The partition reference time (100 ns, same clock as TIME_REF_COUNT) at that moment. The
    /// guest adds its own elapsed reference time, so this must be accurate.
    public var vmReferenceTime: UInt64
    /// Sync or sample.
    public var flags: TimeSyncFlags
    /// Leap-second indication.
    public var leapFlags: Int8
    /// Clock stratum.
    public var stratum: Int8

    /// Creates a body.
    public init(
        parentTime: FileTime, vmReferenceTime: UInt64, flags: TimeSyncFlags, leapFlags: Int8 = 0, stratum: Int8 = 0
    ) {
        self.parentTime = parentTime
        self.vmReferenceTime = vmReferenceTime
        self.flags = flags
        self.leapFlags = leapFlags
        self.stratum = stratum
    }

    /// Parses the body.
    /// - Throws: `ICError.truncated` if it is shorter than 22 bytes.
    public init(parsing body: [UInt8]) throws(ICError) {
        guard body.count >= TimeSyncReferenceBody.size,
            let parentTime = body.littleEndian(UInt64.self, at: 0),
            let vmReferenceTime = body.littleEndian(UInt64.self, at: 8),
            let flags = body.littleEndian(UInt8.self, at: 16),
            let leapFlags = body.littleEndian(Int8.self, at: 17),
            let stratum = body.littleEndian(Int8.self, at: 18)
        else { throw .truncated(needed: TimeSyncReferenceBody.size, available: body.count) }
        self.init(
            parentTime: FileTime(rawValue: parentTime), vmReferenceTime: vmReferenceTime,
            flags: TimeSyncFlags(rawValue: flags), leapFlags: leapFlags, stratum: stratum)
    }

    /// The 22-byte body.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(TimeSyncReferenceBody.size)
        bytes.storeLittleEndian(parentTime.rawValue, at: 0)
        bytes.storeLittleEndian(vmReferenceTime, at: 8)
        bytes.storeLittleEndian(flags.rawValue, at: 16)
        bytes.storeLittleEndian(leapFlags, at: 17)
        bytes.storeLittleEndian(stratum, at: 18)
        return bytes
    }
}

/// The time-sync body for message versions below 4.0 (`ictimesync_data`;
/// Docs/hyperv-interface.md §10.6): u64 parenttime @0, u64 childtime @8, u64 roundtriptime @16,
/// u8 flags @24; 25 bytes.
public struct TimeSyncBody: Hashable, Sendable {
    /// Size of the body.
    public static let size = 25

    /// Host UTC time when the sample was taken.
    public var parentTime: FileTime
    /// Guest time as the host last saw it.
    public var childTime: FileTime
    /// Round-trip time in 100 ns units.
    public var roundTripTime: UInt64
    /// Sync or sample.
    public var flags: TimeSyncFlags

    /// Creates a body.
    public init(
        parentTime: FileTime, childTime: FileTime = FileTime(rawValue: 0), roundTripTime: UInt64 = 0,
        flags: TimeSyncFlags
    ) {
        self.parentTime = parentTime
        self.childTime = childTime
        self.roundTripTime = roundTripTime
        self.flags = flags
    }

    /// Parses the body.
    /// - Throws: `ICError.truncated` if it is shorter than 25 bytes.
    public init(parsing body: [UInt8]) throws(ICError) {
        guard body.count >= TimeSyncBody.size,
            let parentTime = body.littleEndian(UInt64.self, at: 0),
            let childTime = body.littleEndian(UInt64.self, at: 8),
            let roundTripTime = body.littleEndian(UInt64.self, at: 16),
            let flags = body.littleEndian(UInt8.self, at: 24)
        else { throw .truncated(needed: TimeSyncBody.size, available: body.count) }
        self.init(
            parentTime: FileTime(rawValue: parentTime), childTime: FileTime(rawValue: childTime),
            roundTripTime: roundTripTime, flags: TimeSyncFlags(rawValue: flags))
    }

    /// The 25-byte body.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(TimeSyncBody.size)
        bytes.storeLittleEndian(parentTime.rawValue, at: 0)
        bytes.storeLittleEndian(childTime.rawValue, at: 8)
        bytes.storeLittleEndian(roundTripTime, at: 16)
        bytes.storeLittleEndian(flags.rawValue, at: 24)
        return bytes
    }
}
