import GuestMemory
import LinuxSupport
import Synchronization
import VMBusProtocol

/// The host end of one open VMBus channel: the guest→host ring it reads, the host→guest ring
/// it writes, and the two doorbells (the guest's HvSignalEvent arrives on `guestSignal`, an
/// ioeventfd; the host signals the guest by setting the channel's event flag and raising SINT 2
/// on the channel's target processor).
///
/// A channel is created on the parent's control thread and then sent to its worker thread, the
/// only one that uses it (so it is not `Sendable`); the processor its events go to is the one
/// thing other threads change, through the shared `ChannelTarget`.
public final class VSPChannel {
    public let relID: UInt32
    var reader: RingReader<GuestRingMemory>
    var writer: RingWriter<GuestRingMemory>
    let guestSignal: EventFD
    private let signalGuest: @Sendable (UInt32) -> Void
    /// The processor that receives this channel's events; MODIFYCHANNEL changes it.
    public let target: ChannelTarget
    /// What the channel carried (packets, ring bytes and signals each way).
    public let counters = ChannelCounters()
    private var backlog: [Outgoing] = []
    /// The first entry of `backlog` not yet written; those before it wait to be removed.
    private var backlogHead = 0
    private var backlogBytes = 0
    /// Until when (CLOCK_MONOTONIC ns) the worker keeps polling instead of sleeping.
    var pollingDeadline: UInt64 = 0
    /// How long the worker polls an idle ring before sleeping on the guest's doorbell.
    public var idleSpinNanoseconds = ChannelWorker.spinNanoseconds

    /// The most the host queues for a guest that does not drain its ring, in bytes as
    /// `backlogCost` counts them.
    public static let backlogLimit = 64 << 20

    /// What a queued packet costs the parent beside its bytes: its entry and the headers of its
    /// arrays. A guest that leaves only 8-byte completions unread is charged for what keeping
    /// them takes, so the limit bounds the parent's memory, not only the guest's bytes.
    static let backlogEntryCost = 128

    /// What queueing a packet with `header` and `payload` counts against `backlogLimit`.
    static func backlogCost(header: [UInt8], payload: [UInt8]) -> Int {
        header.count + payload.count + backlogEntryCost
    }

    struct Outgoing {
        var type: PacketType
        var flags: PacketFlags
        var transactionID: UInt64
        var header: [UInt8]
        var payload: [UInt8]
    }

    /// - Parameters:
    ///   - incoming: the guest→host ring (the pages before the downstream offset).
    ///   - outgoing: the host→guest ring.
    ///   - guestSignal: the eventfd the guest's HvSignalEvent on this channel's connection signals.
    ///   - signalGuest: sets this channel's event flag on a processor and raises its SINT.
    ///   - subChannelIndex: 0 for a primary channel, else its index among its primary's sub-channels.
    ///   - subChannels: offers that many sub-channels of this primary channel (`nil`: the channel
    ///     cannot have sub-channels).
    ///   - gpadls: the GPADLs the guest created for the device's primary channel beside its
    ///     rings (`nil`: none are available to this device).
    public init(relID: UInt32, subChannelIndex: UInt16 = 0, incoming: GuestRingMemory, outgoing: GuestRingMemory,
                targetVP: UInt32, guestSignal: EventFD, signalGuest: @escaping @Sendable (UInt32) -> Void,
                subChannels: (@Sendable (Int) -> Void)? = nil, gpadls: GPADLView? = nil) throws(RingError) {
        self.gpadls = gpadls
        self.relID = relID
        self.subChannelIndex = subChannelIndex
        reader = try RingReader(memory: incoming)
        writer = try RingWriter(memory: outgoing)
        self.guestSignal = guestSignal
        self.signalGuest = signalGuest
        self.subChannels = subChannels
        target = ChannelTarget(vp: targetVP)
    }

    /// 0 for a primary channel, else its index among its primary's sub-channels.
    public let subChannelIndex: UInt16
    /// The buffers (GPADLs beside the rings) the guest shared with the device's primary channel:
    /// touch their pages only under a lease (`GPADLView.withLeases`).
    public let gpadls: GPADLView?

    /// An eventfd that wakes this channel's worker when signalled, as the guest's signal does:
    /// for producers outside the ring (a switch port with frames for the guest), so the worker
    /// calls the session's `work` soon instead of sleeping on.
    public var wakeEvent: EventFD { guestSignal }
    private let subChannels: (@Sendable (Int) -> Void)?

    /// Offers `count` sub-channels of this primary channel to the guest (up to 64; a sub-channel
    /// cannot have sub-channels). What the session staged so far is published first, so a
    /// completion announcing them reaches the guest before their offers do, as Linux's storvsc
    /// and netvsc expect; the offers follow asynchronously, in index order.
    public func offerSubChannels(_ count: Int) {
        guard count > 0, subChannelIndex == 0, let subChannels else { return }
        publish()
        subChannels(count)
    }

    /// The processor that receives this channel's events.
    public var targetVP: UInt32 { target.vp }

    /// Sends a packet to the guest. It is staged in the ring (or, if the ring is full, queued and
    /// written once the guest frees space); the worker publishes and signals after each batch.
    /// - Throws: `.protocolViolation` if the guest leaves more than `backlogLimit` bytes unread.
    public func send(_ type: PacketType, flags: PacketFlags = [], transactionID: UInt64, header: [UInt8] = [],
                     payload: [UInt8]) throws(VSPError) {
        if backlogHead == backlog.count {
            do throws(RingError) {
                try writer.write(type: type, flags: flags, transactionID: transactionID, header: header, payload: payload)
                countSent(header: header, payload: payload)
                return
            } catch {
                guard case .full(let needed) = error else { throw .ring("\(error)") }
                writer.requestSpaceNotification(bytes: needed)
            }
        }
        backlogBytes += Self.backlogCost(header: header, payload: payload)
        guard backlogBytes <= Self.backlogLimit else {
            throw .protocolViolation("the guest leaves more than \(Self.backlogLimit) bytes unread")
        }
        backlog.append(Outgoing(type: type, flags: flags, transactionID: transactionID, header: header, payload: payload))
    }

    /// Whether a packet of `payloadBytes` would be staged now rather than queued. When it would
    /// not, pending_send_sz asks the guest to signal once it has freed enough space, and the ring
    /// is checked again in case the guest freed it before seeing the request
    /// (Docs/hyperv-interface.md §8.6): a producer that stops on `false` is woken when it can go
    /// on.
    public func hasRoom(forPayload payloadBytes: Int) -> Bool {
        guard backlogHead == backlog.count,
              let needed = RingLayout.packetRingBytes(headerBytes: 0, payloadBytes: payloadBytes) else { return false }
        if Self.freeBytes(&writer) > needed {
            if spaceRequested {
                writer.clearSpaceNotification()
                spaceRequested = false
            }
            return true
        }
        writer.requestSpaceNotification(bytes: needed)
        spaceRequested = true
        return Self.freeBytes(&writer) > needed
    }

    /// The writer's free space, read in place: reading it from the property directly copies the
    /// writer, retaining everything its ring memory holds, on every packet.
    private static func freeBytes(_ writer: inout RingWriter<GuestRingMemory>) -> Int {
        writer.availableToWrite()
    }

    private var spaceRequested = false

    /// Keeps the worker polling (no sleeping, no guest signals needed) for `nanoseconds`.
    public func keepPolling(forNanoseconds nanoseconds: UInt64) {
        pollingDeadline = MonotonicClock.nanoseconds() &+ nanoseconds
    }

    /// Entries the backlog keeps, written or not (for tests).
    var backlogEntries: Int { backlog.count }

    /// Writes queued packets while they fit. Returns whether any was written.
    ///
    /// With nothing queued this still clears pending_send_sz, on every worker pass. That is
    /// deliberate: a device waiting in `hasRoom` asks again in its `work` call right after, before
    /// the worker can sleep, while a worker that keeps polling does not have the guest exit to
    /// signal it each time the ring drains (measured: source throughput falls 3-5x without it).
    func flushBacklog() throws(VSPError) -> Bool {
        var progressed = false
        while backlogHead < backlog.count {
            let packet = backlog[backlogHead]
            do throws(RingError) {
                try writer.write(type: packet.type, flags: packet.flags, transactionID: packet.transactionID,
                                 header: packet.header, payload: packet.payload)
            } catch {
                guard case .full(let needed) = error else { throw .ring("\(error)") }
                writer.requestSpaceNotification(bytes: needed)
                // Written entries leave the list once they are half of it: a guest that reads a
                // little at a time and never all cannot keep the list growing.
                if backlogHead > 0, backlogHead >= backlog.count / 2 {
                    backlog.removeFirst(backlogHead)
                    backlogHead = 0
                }
                return progressed
            }
            countSent(header: packet.header, payload: packet.payload)
            backlogBytes -= Self.backlogCost(header: packet.header, payload: packet.payload)
            // Its bytes go as soon as they are in the ring; the entry goes with the next removal.
            backlog[backlogHead].header = []
            backlog[backlogHead].payload = []
            backlogHead += 1
            progressed = true
        }
        backlog.removeAll(keepingCapacity: true)
        backlogHead = 0
        writer.clearSpaceNotification()
        return progressed
    }

    /// Publishes staged packets and signals the guest if the ring went from empty to non-empty
    /// while its interrupt_mask was clear. The worker does this after every batch; a session
    /// calls it only to order its packets before something it does outside the ring.
    public func publish() {
        if writer.commit() { signal() }
    }

    /// Sets the channel's event flag and raises SINT 2 on the target processor.
    func signal() {
        counters.signalledGuest()
        signalGuest(targetVP)
    }

    private func countSent(header: [UInt8], payload: [UInt8]) {
        counters.sent(bytes: RingLayout.packetRingBytes(headerBytes: header.count, payloadBytes: payload.count) ?? 0)
    }
}

/// The processor a channel's events go to, shared between the channel's worker (which signals
/// it) and the control thread (which moves it on MODIFYCHANNEL).
public final class ChannelTarget: Sendable {
    private let value: Atomic<UInt32>

    init(vp: UInt32) {
        value = Atomic(vp)
    }

    /// The processor that receives the channel's events.
    public var vp: UInt32 { value.load(ordering: .acquiring) }

    /// MODIFYCHANNEL: events now go to processor `vp`.
    public func retarget(to vp: UInt32) {
        value.store(vp, ordering: .releasing)
    }
}
