/// What the network VSP did and refused, for diagnostics and the RNDIS statistics OIDs.
/// Every hostile input that is answered with an error or dropped increments one of these.
public struct NetworkVSPCounters: Hashable, Sendable {
    /// Frames the guest sent that went to the switch.
    public var transmittedFrames: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    /// Of those, frames with a large-send (LSOv2) request, and with a checksum request.
    public var largeSendFrames: UInt64 = 0
    public var checksumOffloadFrames: UInt64 = 0
    /// Frames written into the guest's receive buffer.
    public var receivedFrames: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    /// Frames for the guest dropped (filter, size, no RNDIS), not counting "no buffer" retries.
    public var receiveDrops: UInt64 = 0
    /// Deliveries refused because every sub-allocation of the channel was in flight.
    public var receiveNoBuffer: UInt64 = 0
    /// Guest frames dropped: runts, oversized, or sent before RNDIS was initialized.
    public var transmitDrops: UInt64 = 0
    /// NVSP messages that did not parse, had the wrong type for the packet, or came in the wrong state.
    public var badNVSPMessages: UInt64 = 0
    /// RNDIS messages that did not parse or whose lengths and offsets did not add up.
    public var badRNDISMessages: UInt64 = 0
    /// Transmits naming a send-buffer section that does not exist or is too large.
    public var badSendSections: UInt64 = 0
    /// GPA ranges outside guest RAM, or not readable, or streams over the size limit.
    public var badGuestRanges: UInt64 = 0
    /// Receive-buffer or send-buffer handovers refused (unknown GPADL, too small, overlapping).
    public var refusedBuffers: UInt64 = 0
    /// Completions for transaction IDs the host never used, or on another channel.
    public var unknownCompletions: UInt64 = 0
    /// Completions the guest sent with FAIL status.
    public var failedCompletions: UInt64 = 0
    /// Packets of a VMBus type netvsc does not use.
    public var unexpectedPacketTypes: UInt64 = 0
    /// QUERY/SET of OIDs this adapter does not implement.
    public var unsupportedOIDs: UInt64 = 0
    /// Control responses dropped because the per-channel queue was full.
    public var controlResponsesDropped: UInt64 = 0

    public init() {}
}
