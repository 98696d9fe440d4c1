import LinuxSupport
import NetworkProtocol
import Synchronization

/// A virtual switch shared by the threads that serve its ports: the `SwitchCore` under a lock,
/// and one eventfd per port that is signalled when the port's queue goes from empty to
/// non-empty, so each port's owner (a channel worker, a host-port pump) sleeps until there is
/// something for it. No lock is held while signalling or doing I/O.
public final class VirtualSwitch: Sendable {
    private let core: Mutex<SwitchCore>
    private let notifiers = Mutex<[SwitchPortID: EventFD]>([:])
    /// Ports whose frames the switching thread writes itself (`setDirectSink`), and what it
    /// runs after writing to them.
    private let sinks = Mutex<[SwitchPortID: (write: DirectSink, pickup: DirectPickup?)]>([:])
    /// Each port's own eventfd, from `addPort`.
    private let ownEvents = Mutex<[SwitchPortID: EventFD]>([:])
    public let name: String
    public let kind: SwitchKind
    /// The largest IP packet a port takes without segmentation (frames add 14 bytes of
    /// Ethernet header and 4 of an in-line VLAN tag).
    public let mtu: Int

    /// MTUs a switch may have: IPv4's minimum to a 9000-byte jumbo frame.
    public static let mtuRange = 576...9000

    public init(name: String, kind: SwitchKind, mtu: Int = 1500, tableCapacity: Int = SwitchCore.defaultTableCapacity,
                agingNanoseconds: UInt64 = SwitchCore.defaultAgingNanoseconds) {
        self.name = name
        self.kind = kind
        self.mtu = min(max(mtu, Self.mtuRange.lowerBound), Self.mtuRange.upperBound)
        core = Mutex(SwitchCore(name: name, kind: kind, tableCapacity: tableCapacity, agingNanoseconds: agingNanoseconds))
    }

    /// Adds a port.
    /// - Returns: its ID and the eventfd signalled when frames wait for it.
    public func addPort(_ configuration: SwitchPortConfiguration) throws(SystemError) -> (id: SwitchPortID, ready: EventFD) {
        let event = try EventFD()
        let id = core.withLock { $0.addPort(configuration) }
        notifiers.withLock { $0[id] = event }
        ownEvents.withLock { $0[id] = event }
        return (id, event)
    }

    /// Signals `event` instead of the port's own eventfd when frames wait for the port (`nil`
    /// restores the port's own): a port's owner that sleeps on another descriptor (a channel
    /// worker on its guest's doorbell) is woken through that one.
    public func setReadyEvent(_ event: EventFD?, for id: SwitchPortID) {
        notifiers.withLock { table in
            guard table[id] != nil else { return }
            if let event {
                table[id] = event
            } else if let own = ownEvents.withLock({ $0[id] }) {
                table[id] = own
            }
        }
        // Frames may already wait: wake the new owner.
        if core.withLock({ $0.queuedFrames(for: id) }) > 0 { (event ?? ownEvents.withLock { $0[id] })?.signal() }
    }

    /// The frame size a port takes without a segmentation request: the MTU, an Ethernet header
    /// and an in-line 802.1Q tag.
    public var maximumFrameSize: Int { NetworkFrame.largestFrameSize(mtu: mtu) }

    public func removePort(_ id: SwitchPortID) {
        let held = core.withLock { $0.removePort(id) }
        sinks.withLock { $0[id] = nil }
        notifiers.withLock { $0[id] = nil }
        ownEvents.withLock { $0[id] = nil }
        for waiter in held { waiter.wake() }
    }

    /// Writes a run of frames to a port's endpoint, in order, and returns how many it took from
    /// the front (written, or dropped and counted); the rest, which the endpoint would not take
    /// without blocking, the switch queues for the port's owner.
    public typealias DirectSink = @Sendable (ArraySlice<NetworkFrame>) -> Int

    /// Runs on the switching thread after it wrote a batch of frames to a port directly: a host
    /// port takes what its endpoint has to read at once (`HostPortPump.pickup`). A host answers
    /// many frames while they are being written (an ARP or ICMP echo reply is queued on a TAP
    /// before the write returns), so the answer is switched without waiting for the port's
    /// owner to wake up.
    public typealias DirectPickup = @Sendable () -> Void

    /// Lets threads that switch frames for `id` write them to its endpoint themselves while
    /// nothing is queued for it (`nil`: queue everything for the port's owner again), then run
    /// `pickup` once per batch. For host ports: their writes are non-blocking and safe from any
    /// thread.
    public func setDirectSink(_ sink: DirectSink?, pickup: DirectPickup? = nil, for id: SwitchPortID) {
        sinks.withLock { $0[id] = sink.map { ($0, pickup) } }
        core.withLock { $0.setDeliversDirectly(sink != nil, for: id) }
    }

    /// Switches frames port `source` sent, in order.
    public func send(_ frames: [NetworkFrame], from source: SwitchPortID) {
        var frames = frames
        _ = send(&frames, from: source, draining: false)
    }

    /// Switches frames port `source` sent, in order, and empties `frames` (keeping its capacity),
    /// letting go of each frame before the switch's lock is released: once a frame is queued,
    /// the sender no longer touches its reference count, so the sender's and the receiver's
    /// cores do not trade the frame's cache line while the receiver takes it.
    /// - Returns: whether the frames left the switch at once: every frame that went anywhere was
    ///   written by a port's direct sink (a host endpoint), none was put in (or turned away at) a
    ///   port's queue. Always `false` while no port has a direct sink.
    @discardableResult
    public func send(draining frames: inout [NetworkFrame], from source: SwitchPortID) -> Bool {
        send(&frames, from: source, draining: true).left
    }

    /// What `send(holding:from:waiter:)` did.
    public struct HoldingOutcome: Sendable {
        /// As `send(draining:from:)` returns: every frame switched left the switch at once.
        public var left: Bool
        /// The port whose full queue held the sender, with its frames from the one it would
        /// have turned away left in the list; `nil`: every frame was switched.
        public var heldBy: SwitchPortID?
    }

    /// Switches frames port `source` sent, in order, as `send(draining:from:)` does, but stops
    /// at the first frame a child port's full queue would turn away (`SwitchCore.holdingPort`):
    /// that frame and those after it stay in `frames`, and `waiter` is woken once the port has
    /// drained, or when the caller's hold runs out and it calls `endHolds(on:)`. Frames for a
    /// port that holds no sender are dropped at its full queue as always.
    public func send(holding frames: inout [NetworkFrame], from source: SwitchPortID,
                     waiter: SwitchHoldWaiter) -> HoldingOutcome {
        send(&frames, from: source, draining: true, waiter: waiter)
    }

    /// Takes a held sender off `port`'s list without waking it (its channel closed).
    public func cancelHold(_ waiter: ObjectIdentifier, on port: SwitchPortID) {
        core.withLock { $0.cancelHold(waiter, on: port) }
    }

    /// Ends every hold on `port`, whose queue a held sender waited for in vain, and wakes the
    /// senders held for it; with `sender` and its held frame, also every other hold that frame
    /// would meet on the sender's own full share (`SwitchCore.endHolds`).
    public func endHolds(on port: SwitchPortID, sender: SwitchPortID? = nil, frame: NetworkFrame? = nil) {
        let need = frame.map { SwitchCore.holdNeed(of: $0) } ?? (1, 0)
        let held = core.withLock { $0.endHolds(on: port, sender: sender, need: need) }
        for waiter in held { waiter.wake() }
    }

    /// Most frames switched in one hold of the switch's lock: a guest packet may carry
    /// thousands of tiny frames, and other ports' owners wait for the lock meanwhile.
    static let framesPerLock = 64
    /// Most frames asking for segmentation in one hold: each may be cut into up to
    /// `SoftwareOffload.maximumSegments` frames there, for a guest that cannot take it whole.
    static let segmentedFramesPerLock = 4

    private func send(_ frames: inout [NetworkFrame], from source: SwitchPortID, draining: Bool,
                      waiter: SwitchHoldWaiter? = nil) -> HoldingOutcome {
        let now = MonotonicClock.nanoseconds()
        let hasSinks = sinks.withLock { !$0.isEmpty }
        var direct: SwitchCore.DirectFrames? = hasSinks ? SwitchCore.DirectFrames() : nil
        var woken = Set<SwitchPortID>()
        var heldBy: SwitchPortID?
        var start = 0
        while start < frames.count, heldBy == nil {
            var end = Self.lockBatchEnd(frames, from: start)
            core.withLock { core in
                // A sender that sends again is held nowhere until this send holds it.
                if start == 0, let waiter { core.cancelHolds(of: waiter.id, sender: source) }
                for index in start..<end {
                    if let waiter, let port = core.holdingPort(for: frames.span[index], from: source, now: now) {
                        core.hold(waiter, on: port, for: source)
                        heldBy = port
                        end = index
                        break
                    }
                    let queued: [SwitchPortID]
                    if draining {
                        // Moved out of the sender's list rather than copied: the sender's
                        // reference goes without an atomic operation, nothing is allocated.
                        var frame = NetworkFrame.empty
                        swap(&frame, &frames[index])
                        queued = core.forward(frame, from: source, now: now, direct: &direct)
                    } else {
                        queued = core.forward(frames[index], from: source, now: now, direct: &direct)
                    }
                    if !queued.isEmpty { woken.formUnion(queued) }
                }
            }
            start = end
        }
        if draining {
            // What was switched was moved out; what a held sender keeps stays, in order.
            if heldBy == nil { frames.removeAll(keepingCapacity: true) } else { frames.removeSubrange(0..<start) }
        }
        var pickups: [DirectPickup] = []
        var left = heldBy == nil && direct?.queuedElsewhere == false
        if let direct, !direct.isEmpty {
            let outcome = writeDirectly(direct, from: source)
            woken.formUnion(outcome.woken)
            pickups = outcome.pickups
            left = left && outcome.allWritten
        }
        if !woken.isEmpty {
            let events = notifiers.withLock { table in woken.compactMap { table[$0] } }
            for event in events { event.signal() }
        }
        // After the wake-ups, which a pickup (a batch of reads) would otherwise delay; no lock
        // is held: a pickup switches what it reads with `send`, as any sender does.
        for pickup in pickups { pickup() }
        return HoldingOutcome(left: left, heldBy: heldBy)
    }

    /// Where the run of frames switched in one hold of the lock, from `start`, ends: after
    /// `framesPerLock` frames, or after `segmentedFramesPerLock` frames that ask for segmentation.
    static func lockBatchEnd(_ frames: [NetworkFrame], from start: Int) -> Int {
        let limit = min(start + framesPerLock, frames.count)
        // Through a span, which lends each frame: the array's subscript would copy it (a
        // reference count taken and dropped) to read one field.
        let span = frames.span
        var segmented = 0
        var end = start
        while end < limit {
            if span[end].offload.segmentation != nil {
                segmented += 1
                if segmented > segmentedFramesPerLock { break }
            }
            end += 1
        }
        return end
    }

    /// Writes frames to their ports' sinks, in order, each run of frames to one port in one
    /// call; what a sink does not take (and everything after it for that port) is queued for
    /// the port's owner.
    /// - Returns: ports whose queues went from empty to non-empty, the pickups of the ports that
    ///   took a frame (each once), for the caller to run, and whether the sinks took every frame.
    private func writeDirectly(_ direct: SwitchCore.DirectFrames, from source: SwitchPortID)
        -> (woken: Set<SwitchPortID>, pickups: [DirectPickup], allWritten: Bool)
    {
        let table = sinks.withLock { $0 }
        var refused: [SwitchPortID: [NetworkFrame]] = [:]
        var written: [SwitchPortID] = []
        var start = 0
        while start < direct.ports.count {
            let port = direct.ports[start]
            var end = start + 1
            while end < direct.ports.count, direct.ports[end] == port { end += 1 }
            var taken = start
            if refused.isEmpty || refused[port] == nil, let sink = table[port]?.write {
                taken = start + min(max(sink(direct.frames[start..<end]), 0), end - start)
                if taken > start && !written.contains(port) { written.append(port) }
            }
            if taken < end { refused[port, default: []].append(contentsOf: direct.frames[taken..<end]) }
            start = end
        }
        let woken = refused.isEmpty ? [] : core.withLock { core in
            Set(refused.compactMap { port, frames in core.enqueue(frames, for: port, from: source) ? port : nil })
        }
        return (woken, written.compactMap { table[$0]?.pickup }, refused.isEmpty)
    }

    /// The owner of a port that takes direct writes has written what it received: frames
    /// switched from now on may be written to the port directly again (until then they queue
    /// behind, so none passes a frame that waited).
    public func finishedWriting(for port: SwitchPortID) {
        core.withLock { $0.finishedWriting(port) }
    }

    /// Takes up to `limit` frames waiting for `port` (for a port that takes direct writes, call
    /// `finishedWriting(for:)` once they are written).
    public func receive(for port: SwitchPortID, limit: Int = 64) -> [NetworkFrame] {
        var drained: [SwitchHoldWaiter] = []
        let frames = core.withLock { $0.dequeue(port, limit: limit, waking: &drained) }
        // After the lock: a woken sender switches at once.
        for waiter in drained { waiter.wake() }
        return frames
    }

    /// Gives frames back to the head of `port`'s queue (the port could not take them yet).
    public func requeue(_ frames: [NetworkFrame], for port: SwitchPortID) {
        core.withLock { $0.requeue(frames, for: port) }
    }

    public func setPacketFilter(_ filter: PacketFilter, for port: SwitchPortID) {
        core.withLock { $0.setPacketFilter(filter, for: port) }
    }

    /// The groups a MULTICAST filter lets through to `port`.
    public func setMulticastAddresses(_ addresses: Set<MACAddress>, for port: SwitchPortID) {
        core.withLock { $0.setMulticastAddresses(addresses, for: port) }
    }

    /// See `SwitchCore.setMACAddress(_:for:)`.
    @discardableResult
    public func setMACAddress(_ address: MACAddress, for port: SwitchPortID) -> Bool {
        core.withLock { $0.setMACAddress(address, for: port) }
    }

    public func counters(of port: SwitchPortID) -> SwitchPortCounters? {
        core.withLock { $0.counters(of: port) }
    }

    public func queuedFrames(for port: SwitchPortID) -> Int {
        core.withLock { $0.queuedFrames(for: port) }
    }
}
