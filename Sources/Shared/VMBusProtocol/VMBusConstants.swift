import HyperV

/// Fixed numbers of the VMBus transport (Docs/hyperv-interface.md §3.6, §6, §7).
public enum VMBusConstants {
    /// The message connection the host returns in VERSION_RESPONSE and that versions below 5.0
    /// post to (VMBUS_MESSAGE_CONNECTION_ID).
    public static let messageConnectionID = ConnectionID(1)
    /// The connection INITIATE_CONTACT is posted to for versions 5.0 and later
    /// (Docs/hyperv-interface.md §6.3).
    public static let initiateContactConnectionID = ConnectionID(4)
    /// The SINT VMBus messages and channel events arrive on.
    public static let messageSINT = 2
    /// The largest channel message payload, including its 8-byte header.
    public static let maximumMessagePayload = SynIC.maximumMessagePayload
    /// The largest child relid Linux accepts; 0 is reserved (Docs/hyperv-interface.md §6.4).
    public static let maximumChildRelID: UInt32 = 2047
    /// PFNs that fit in one GPADL_HEADER after its single range header
    /// (Docs/hyperv-interface.md §7.1).
    public static let gpadlHeaderMaximumPFNs = 26
    /// PFNs that fit in one GPADL_BODY (Docs/hyperv-interface.md §7.1).
    public static let gpadlBodyMaximumPFNs = 28
    /// Bytes per page in GPADL and GPA-direct PFN lists.
    public static let pageSize = SynIC.pageSize

    /// The event connection this implementation offers for a channel: `relid | 0x2000`
    /// (Docs/hyperv-interface.md §3.6; the layout of openvmm's
    /// `vm/devices/vmbus/vmbus_core/src/protocol.rs: ConnectionId::new`). The guest passes it back
    /// in HvSignalEvent.
    public static func eventConnectionID(childRelID: UInt32) -> ConnectionID {
        ConnectionID(childRelID | 0x2000)
    }

    /// The number of 4 KiB pages a buffer of `byteCount` bytes starting `byteOffset` bytes into
    /// its first page spans: ⌈(byteOffset + byteCount) / 4096⌉. Never overflows.
    public static func pageCount(byteOffset: UInt32, byteCount: UInt32) -> Int {
        let end = UInt64(byteOffset) + UInt64(byteCount)
        return Int((end + UInt64(pageSize - 1)) / UInt64(pageSize))
    }
}
