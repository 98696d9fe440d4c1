/// SynIC page layouts and constants (TLFS "Synthetic Interrupt Controller";
/// Docs/hyperv-interface.md §4).
public enum SynIC {
    /// Sixteen synthetic interrupt sources per virtual processor.
    public static let sintCount = 16
    /// SVERSION reads as 1.
    public static let version: UInt64 = 1
    /// Pages are 4 KiB.
    public static let pageSize = 4096

    /// The message page holds one 256-byte slot per SINT, indexed by SINT number.
    public static let messageSlotSize = 256
    /// The event-flags page holds one 256-byte (2048-bit) bitmap per SINT.
    public static let eventFlagsBlockSize = 256
    /// The largest message payload.
    public static let maximumMessagePayload = 240

    /// Byte offset of SINT `sint`'s slot in the message page.
    public static func messageSlotOffset(sint: Int) -> Int { sint * messageSlotSize }
    /// Byte offset of SINT `sint`'s bitmap in the event-flags page.
    public static func eventFlagsOffset(sint: Int) -> Int { sint * eventFlagsBlockSize }
}

/// The layout of one 256-byte SynIC message slot (`struct hv_message`).
public enum MessageSlot {
    /// message_type u32 @0; 0 (HvMessageTypeNone) marks a free slot. Written last, with release.
    public static let messageTypeOffset = 0
    /// payload_size u8 @4.
    public static let payloadSizeOffset = 4
    /// flags u8 @5; bit 0 is msg_pending.
    public static let flagsOffset = 5
    /// sender / port u64 @8.
    public static let senderOffset = 8
    /// payload @16, up to 240 bytes.
    public static let payloadOffset = 16
    /// The msg_pending flag bit within the u32 at offset 4 (payload_size, flags, reserved).
    public static let messagePendingBitInWord: UInt32 = 1 << 8
}

/// A SynIC message type (u32). Types with the high bit set are reserved for the hypervisor.
public struct SynICMessageType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// HvMessageTypeNone: the slot is free.
    public static let none = SynICMessageType(rawValue: 0)
    /// The type VMBus uses for its channel messages.
    public static let vmbus = SynICMessageType(rawValue: 1)
    /// True for types a guest may not post (bit 31 set).
    public var isHypervisorReserved: Bool { rawValue & 0x8000_0000 != 0 }
}
