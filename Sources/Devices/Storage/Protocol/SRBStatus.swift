import HyperV

/// The u8 srb_status of a `vmscsi_request` (drivers/scsi/storvsc_drv.c, `SRB_STATUS_*`): a
/// 6-bit code with two flag bits on top.
///
/// How Linux reads it (`storvsc_handle_error`, `storvsc_command_completion`): SUCCESS and
/// DATA_OVERRUN keep data_transfer_length; ERROR/ABORTED/INVALID_REQUEST/INTERNAL_ERROR with
/// AUTOSENSE_VALID go to sense-driven error handling, without it to DID_ERROR; INVALID_LUN
/// removes the device at channel 0 with the request's target and LUN.

public struct SRBStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// 0x00: not yet completed.
    public static let pending = SRBStatus(rawValue: 0x00)
    /// 0x01: completed; data_transfer_length is the byte count moved.
    public static let success = SRBStatus(rawValue: 0x01)
    /// 0x02: aborted.
    public static let aborted = SRBStatus(rawValue: 0x02)
    /// 0x04: the command failed; with AUTOSENSE_VALID the sense data says why.
    public static let error = SRBStatus(rawValue: 0x04)
    /// 0x05: the adapter is busy; Linux retries (with SCSI status BUSY).
    public static let busy = SRBStatus(rawValue: 0x05)
    /// 0x06: the request block itself is invalid.
    public static let invalidRequest = SRBStatus(rawValue: 0x06)
    /// 0x12: the transfer length disagrees with the buffer; data_transfer_length is honoured.
    public static let dataOverrun = SRBStatus(rawValue: 0x12)
    /// 0x20: no such logical unit; Linux removes the device (see the type's note).
    public static let invalidLUN = SRBStatus(rawValue: 0x20)
    /// 0x30: internal adapter error.
    public static let internalError = SRBStatus(rawValue: 0x30)

    /// Flag 0x80: the sense data in the SRB is valid.
    public static let autosenseValidFlag: UInt8 = 0x80
    /// Flag 0x40: the queue is frozen.
    public static let queueFrozenFlag: UInt8 = 0x40

    /// The status without its flag bits (`SRB_STATUS()`).
    public var code: SRBStatus { SRBStatus(rawValue: rawValue & 0x3F) }
    /// Whether AUTOSENSE_VALID is set.
    public var hasValidSense: Bool { rawValue & Self.autosenseValidFlag != 0 }
    /// This status with AUTOSENSE_VALID set.
    public var withValidSense: SRBStatus { SRBStatus(rawValue: rawValue | Self.autosenseValidFlag) }
}

/// The SCSI status byte (SAM-5 §5.3).
public struct SCSIStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let good = SCSIStatus(rawValue: 0x00)
    public static let checkCondition = SCSIStatus(rawValue: 0x02)
    public static let conditionMet = SCSIStatus(rawValue: 0x04)
    public static let busy = SCSIStatus(rawValue: 0x08)
    public static let reservationConflict = SCSIStatus(rawValue: 0x18)
    public static let taskSetFull = SCSIStatus(rawValue: 0x28)
    public static let acaActive = SCSIStatus(rawValue: 0x30)
    public static let taskAborted = SCSIStatus(rawValue: 0x40)
}

/// The u8 data_in of a `vmscsi_request` (`enum storvsc_request_type`).
public struct SRBDataDirection: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// 0 (WRITE_TYPE): data flows from the guest to the device.
    public static let write = SRBDataDirection(rawValue: 0)
    /// 1 (READ_TYPE): data flows from the device to the guest.
    public static let read = SRBDataDirection(rawValue: 1)
    /// 2 (UNKNOWN_TYPE): no data.
    public static let noData = SRBDataDirection(rawValue: 2)
}

/// The u32 srb_flags of a `vmscsi_request` (`SRB_FLAGS_*`).
public struct SRBFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let queueActionEnable = SRBFlags(rawValue: 0x0000_0002)
    public static let disableDisconnect = SRBFlags(rawValue: 0x0000_0004)
    /// Linux sets it on every request.
    public static let disableSynchronousTransfer = SRBFlags(rawValue: 0x0000_0008)
    public static let bypassFrozenQueue = SRBFlags(rawValue: 0x0000_0010)
    public static let disableAutosense = SRBFlags(rawValue: 0x0000_0020)
    public static let dataIn = SRBFlags(rawValue: 0x0000_0040)
    public static let dataOut = SRBFlags(rawValue: 0x0000_0080)
    public static let noQueueFreeze = SRBFlags(rawValue: 0x0000_0100)
    public static let adapterCacheEnable = SRBFlags(rawValue: 0x0000_0200)
    public static let freeSenseBuffer = SRBFlags(rawValue: 0x0000_0400)
}
