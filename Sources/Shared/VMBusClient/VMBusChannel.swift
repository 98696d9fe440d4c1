import HyperV
import VMBusProtocol

/// The guest end of an open channel as a VSC drives it: the guest→host ring it writes, the
/// host→guest ring it reads, the host's doorbell, and the few processor services a VSC needs
/// while it waits (a clock and a pause).
///
/// VSCs are generic over it, never existential (Embedded Swift): the guest implements it over
/// its own memory and hypercalls (`GuestChannel`), tests over in-process ring memory.
public protocol VMBusChannel {
    /// The channel's child relid.
    var relID: UInt32 { get }
    /// Bytes in the data area of the guest→host ring.
    var outgoingDataSize: Int { get }
    /// Bytes in the data area of the host→guest ring.
    var incomingDataSize: Int { get }

    /// Stages a packet in the guest→host ring; `false` if it does not fit now.
    mutating func stage(_ type: PacketType, flags: PacketFlags, transactionID: UInt64, payload: [UInt8]) -> Bool
    /// Publishes the staged packets, signalling the host if it asked to be told.
    mutating func publish()
    /// The next packet from the host, copied into `buffer` (`nil`: none, or a corrupt ring);
    /// signals the host if it was waiting for room.
    mutating func receive(into buffer: inout [UInt8]) -> PacketDescriptor?
    /// Masks the host's signals on the host→guest ring while the VSC polls it.
    mutating func beginPolling()
    /// Unmasks them; `true` if packets arrived meanwhile (poll again rather than wait).
    mutating func endPolling() -> Bool
    /// HvSignalEvent on the channel's connection.
    mutating func signalHost()
    /// HvSignalEvent on another connection (`connection` is the whole event connection ID).
    func signalEvent(connection: ConnectionID)
    /// Interrupts taken so far for the channel's SINT on its processor.
    var interruptCount: UInt64 { get }

    /// A monotonic timestamp in the channel's clock ticks (cheap to read).
    func timestamp() -> UInt64
    /// Nanoseconds between two timestamps.
    func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64
    /// Clock ticks in `nanoseconds`.
    func ticks(nanoseconds: UInt64) -> UInt64
    /// A pause while spinning on the rings.
    func relax()
    /// Waits for an interrupt, or at most about `nanoseconds`, without spinning where the
    /// transport can halt the processor (the default only pauses).
    func waitForInterrupt(nanoseconds: UInt64)
}

extension VMBusChannel {
    public func waitForInterrupt(nanoseconds: UInt64) { relax() }

    /// The largest message payload both rings take: a packet (descriptor, payload padded to 8
    /// bytes, trailer) must be smaller than the ring's data area (`RingWriter.write`), and its
    /// length must fit the descriptor's u16 len8.
    public var largestMessageSize: Int {
        // The data sizes are multiples of 8, so the largest padded payload below the limit is this.
        let fitsRing = min(outgoingDataSize, incomingDataSize) - RingLayout.alignment - PacketDescriptor.size
            - RingLayout.trailerSize
        let fitsDescriptor = RingLayout.maximumPacketLength - PacketDescriptor.size
        return max(0, min(fitsRing, fitsDescriptor))
    }

    /// Stages and publishes one packet, spinning while the ring is full for at most
    /// `timeoutNanoseconds`. Returns whether it was sent.
    @discardableResult
    public mutating func send(_ type: PacketType = .inband, flags: PacketFlags = [], transactionID: UInt64 = 0,
                              payload: [UInt8], timeoutNanoseconds: UInt64 = 10_000_000_000) -> Bool {
        var start: UInt64? = nil
        while !stage(type, flags: flags, transactionID: transactionID, payload: payload) {
            publish()
            let now = timestamp()
            let begin = start ?? now
            start = begin
            if nanoseconds(from: begin, to: now) >= timeoutNanoseconds { return false }
            relax()
        }
        publish()
        return true
    }
}
