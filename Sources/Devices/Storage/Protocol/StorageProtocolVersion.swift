import HyperV

/// A storage protocol version: major in the high byte, minor in the low byte
/// (`VMSTOR_PROTO_VERSION`, drivers/scsi/storvsc_drv.c).

public struct StorageProtocolVersion: RawRepresentable, Hashable, Comparable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The version `major.minor`.
    public init(major: UInt8, minor: UInt8) { rawValue = UInt16(major) << 8 | UInt16(minor) }

    public var major: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 8) }
    public var minor: UInt8 { UInt8(truncatingIfNeeded: rawValue) }

    public static func < (a: StorageProtocolVersion, b: StorageProtocolVersion) -> Bool { a.rawValue < b.rawValue }

    /// 2.0, Windows Server 2008.
    public static let win6 = StorageProtocolVersion(major: 2, minor: 0)
    /// 4.2, Windows 7.
    public static let win7 = StorageProtocolVersion(major: 4, minor: 2)
    /// 5.1, Windows 8: adds the 16-byte SRB extension and 20-byte sense buffers.
    public static let win8 = StorageProtocolVersion(major: 5, minor: 1)
    /// 6.0, Windows 8.1 ("Blue").
    public static let win8_1 = StorageProtocolVersion(major: 6, minor: 0)
    /// 6.2, Windows 10.
    public static let win10 = StorageProtocolVersion(major: 6, minor: 2)

    /// What Linux 6.1 proposes, newest first (`protocol_version[]`, drivers/scsi/storvsc_drv.c).
    public static let offeredByLinux: [StorageProtocolVersion] = [.win10, .win8_1, .win8]

    /// Size of the `vmscsi_request` at this version: 52 bytes from Windows 8 on (the Win8
    /// extension: reserve, queue_tag, queue_action, srb_flags, time_out_value,
    /// queue_sort_key), 36 before.
    public var srbSize: Int {
        self >= .win8 ? SCSIRequestBlock.size : SCSIRequestBlock.size - SCSIRequestBlock.win8ExtensionSize
    }

    /// Size of the sense buffer in the SRB's cdb/sense union: 20 bytes from Windows 8 on, 18
    /// before.
    public var senseBufferSize: Int { self >= .win8 ? 20 : 18 }
}
