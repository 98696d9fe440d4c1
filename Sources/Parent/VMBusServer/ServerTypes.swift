import HyperV
import VMBusProtocol

/// What a device offers on the bus: its class and instance GUIDs (Docs/hyperv-interface.md §6.4).
public struct ChannelOffer: Hashable, Sendable {
    public var interfaceType: GUID
    public var interfaceInstance: GUID
    /// The 120-byte user-defined area (zero for every device here).
    public var userDefined: [UInt8]
    /// A short name for logs ("heartbeat", "bench").
    public var name: String
    /// 0 for a device's primary channel; 1, 2, … for its sub-channels, which share its type
    /// and instance GUIDs (Linux's vmbus_process_offer matches them to the primary that way).
    public var subChannelIndex: UInt16

    public init(interfaceType: GUID, interfaceInstance: GUID, name: String, subChannelIndex: UInt16 = 0,
                userDefined: [UInt8] = [UInt8](repeating: 0, count: OfferChannel.userDefinedSize)) {
        self.interfaceType = interfaceType
        self.interfaceInstance = interfaceInstance
        self.name = name
        self.subChannelIndex = subChannelIndex
        self.userDefined = userDefined
    }
}

/// A complete guest physical address descriptor list: one range of pages the guest shared.
public struct GPADL: Hashable, Sendable {
    public var id: UInt32
    /// The channel (child relid) it was created for.
    public var channel: UInt32
    /// Offset of the buffer into its first page.
    public var byteOffset: UInt32
    /// Length of the buffer in bytes.
    public var byteCount: UInt32
    /// The guest page frame numbers, in buffer order.
    public var pageNumbers: [UInt64]
}

/// A channel the guest asked to open: the device maps the ring GPADL and starts serving.
public struct OpenRequest: Hashable, Sendable {
    public var channel: UInt32
    public var openID: UInt32
    public var ring: GPADL
    /// Pages before this index are the guest→host ring; the rest the host→guest ring.
    public var downstreamPageOffset: Int
    /// The processor whose SynIC receives this channel's events.
    public var targetVP: UInt32
    public var userData: [UInt8]

    /// The guest→host ring (the host reads it): its control page first.
    public var incomingRingPages: ArraySlice<UInt64> { ring.pageNumbers[..<downstreamPageOffset] }
    /// The host→guest ring (the host writes it).
    public var outgoingRingPages: ArraySlice<UInt64> { ring.pageNumbers[downstreamPageOffset...] }
}

/// What the server asks its surroundings to do. Actions are returned in order; carry them out
/// in that order.
public enum ServerAction: Hashable, Sendable {
    /// Post a channel message to SINT `sint` of processor `vp` (HvPostMessage from the host side).
    case post(vp: UInt32, sint: UInt8, ChannelMessage)
    /// Open a device channel; answer with `VMBusServer.completeOpen(channel:accepted:)`.
    case open(OpenRequest)
    /// Stop serving a channel (closed, rescinded, unloaded or reset). Its rings are gone.
    case close(channel: UInt32)
    /// The channel's events now go to processor `vp` (MODIFYCHANNEL).
    case retarget(channel: UInt32, vp: UInt32)
    /// A GPADL was torn down; nothing may touch its pages any more. (The `.post` of its
    /// GPADL_TORNDOWN follows: carry this out, and stop every use of the pages, first.)
    case releaseGPADL(GPADL)
    /// A GPADL is complete (GPADL_CREATED with status 0 follows): devices may use its pages
    /// from now on, until its `.releaseGPADL`.
    case gpadlCreated(GPADL)
    /// The channel is gone for good (rescinded and released by the guest, withdrawn before it
    /// was offered, or a sub-channel dropped when the guest reconnected): forget it.
    case released(channel: UInt32)
    /// The guest connected (or reconnected) with `version`.
    case connected(VMBusVersion)
    /// The guest disconnected (UNLOAD).
    case disconnected
    /// The guest broke the protocol; the message was answered negatively or dropped. For logs.
    case protocolViolation(String)
}

/// NTSTATUS values the server answers failed requests with.
public enum ServerStatus {
    public static let success: UInt32 = 0
    /// STATUS_UNSUCCESSFUL.
    public static let unsuccessful: UInt32 = 0xC000_0001
    /// STATUS_INVALID_PARAMETER.
    public static let invalidParameter: UInt32 = 0xC000_000D
}
