import HyperV

/// The u32 operation @0 of a `vstor_packet` (`enum vstor_packet_operation`,
/// drivers/scsi/storvsc_drv.c).
///
/// A struct rather than an enum so that any value a peer sends stays representable.

public struct StorageOperation: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 1: the answer to every request, and the host's completion of an SRB.
    public static let completeIO = StorageOperation(rawValue: 1)
    /// 2: host → guest, unsolicited: a device went away; the guest rescans.
    public static let removeDevice = StorageOperation(rawValue: 2)
    /// 3: guest → host: run the SCSI request block in the packet.
    public static let executeSRB = StorageOperation(rawValue: 3)
    /// 4: reset one logical unit (not sent by Linux 6.1).
    public static let resetLUN = StorageOperation(rawValue: 4)
    /// 5: reset the adapter (not sent by Linux 6.1).
    public static let resetAdapter = StorageOperation(rawValue: 5)
    /// 6: reset the bus; Linux's host reset handler (`storvsc_host_reset_handler`).
    public static let resetBus = StorageOperation(rawValue: 6)
    /// 7: the first initialization step.
    public static let beginInitialization = StorageOperation(rawValue: 7)
    /// 8: the last initialization step; the channel is ready for SRBs afterwards.
    public static let endInitialization = StorageOperation(rawValue: 8)
    /// 9: propose a protocol version (`vmstorage_protocol_version`).
    public static let queryProtocolVersion = StorageOperation(rawValue: 9)
    /// 10: ask for the channel properties (`vmstorage_channel_properties`).
    public static let queryProperties = StorageOperation(rawValue: 10)
    /// 11: host → guest, unsolicited: the bus changed; the guest rescans.
    public static let enumerateBus = StorageOperation(rawValue: 11)
    /// 12: Fibre Channel HBA data (WWNs); only for the FC device class.
    public static let fibreChannelHBAData = StorageOperation(rawValue: 12)
    /// 13: guest → host: create sub-channels (u16 count @12).
    public static let createSubChannels = StorageOperation(rawValue: 13)
}

/// The u32 flags @4 of a `vstor_packet`.
public struct VStorPacketFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// REQUEST_COMPLETION_FLAG (1): the sender wants an answer.
    public static let requestCompletion = VStorPacketFlags(rawValue: 1)
}

/// The NTSTATUS @8 of a `vstor_packet`: 0 on success. Linux checks it for initialization
/// steps and only logs it for I/O completions (`storvsc_on_io_completion`).
public struct StorageStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// STATUS_SUCCESS.
    public static let success = StorageStatus(rawValue: 0)
    /// STATUS_UNSUCCESSFUL.
    public static let unsuccessful = StorageStatus(rawValue: 0xC000_0001)
    /// STATUS_INVALID_PARAMETER: a malformed request.
    public static let invalidParameter = StorageStatus(rawValue: 0xC000_000D)
    /// STATUS_REVISION_MISMATCH: the proposed protocol version is not supported; the guest
    /// proposes the next one.
    public static let revisionMismatch = StorageStatus(rawValue: 0xC000_0059)
    /// STATUS_NOT_SUPPORTED: an operation this device does not implement.
    public static let notSupported = StorageStatus(rawValue: 0xC000_00BB)
    /// STATUS_INVALID_DEVICE_STATE: a request that is not allowed in the channel's state (for
    /// example an SRB before END_INITIALIZATION).
    public static let invalidDeviceState = StorageStatus(rawValue: 0xC000_0184)
}
