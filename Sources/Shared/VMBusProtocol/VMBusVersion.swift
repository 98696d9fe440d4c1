/// A VMBus protocol version as INITIATE_CONTACT carries it: `major << 16 | minor`
/// (Docs/hyperv-interface.md §6.3).
public struct VMBusVersion: RawRepresentable, Hashable, Comparable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The version `major.minor`.
    public init(major: UInt16, minor: UInt16) {
        rawValue = UInt32(major) << 16 | UInt32(minor)
    }

    /// The high 16 bits.
    public var major: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 16) }
    /// The low 16 bits.
    public var minor: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public static func < (a: VMBusVersion, b: VMBusVersion) -> Bool { a.rawValue < b.rawValue }

    /// Version 5.3 (0x50003), the newest Linux 6.1 asks for.
    public static let v5_3 = VMBusVersion(major: 5, minor: 3)
    /// Version 5.2.
    public static let v5_2 = VMBusVersion(major: 5, minor: 2)
    /// Version 5.1.
    public static let v5_1 = VMBusVersion(major: 5, minor: 1)
    /// Version 5.0, the first that posts INITIATE_CONTACT on connection ID 4.
    public static let v5_0 = VMBusVersion(major: 5, minor: 0)
    /// Version 4.1 (0x40001).
    public static let v4_1 = VMBusVersion(major: 4, minor: 1)
    /// Version 4.0 (Windows 10).
    public static let v4_0 = VMBusVersion(major: 4, minor: 0)
    /// Version 3.0 (Windows 8.1).
    public static let v3_0 = VMBusVersion(major: 3, minor: 0)
    /// Version 2.4 (0x20004, Windows 8), the oldest Linux 6.1 tries.
    public static let v2_4 = VMBusVersion(major: 2, minor: 4)

    /// The versions this implementation accepts, newest first, in the order Linux tries them
    /// (Docs/hyperv-interface.md §6.3).
    public static let supported: [VMBusVersion] = [.v5_3, .v5_2, .v5_1, .v5_0, .v4_1, .v4_0, .v3_0, .v2_4]

    /// Whether INITIATE_CONTACT for this version travels on connection ID 4 and carries the message
    /// SINT instead of an interrupt-page GPA (versions 5.0 and later,
    /// Docs/hyperv-interface.md §6.3).
    public var usesMessageConnectionID4: Bool { self >= .v5_0 }
}
