import GuestMemory
import LinuxSupport
import NetworkProtocol
import Synchronization
import VMBusHost
import VMBusProtocol
import VirtualSwitch

/// One synthetic NIC of a partition, wired: the I/O-free `NetworkVSP` under a lock, shared by the
/// sessions of its channels (the primary and the sub-channels, each on its own worker thread),
/// and the NIC's port on its virtual switch.
///
/// - Guest packets: a channel's session hands each to the VSP and carries out what it asks —
///   packets for that channel's ring, frames for the switch, sub-channel offers, filter and MAC
///   changes — after releasing the lock.
/// - Frames for the guest: the switch wakes the primary channel's worker (the port's ready
///   event is the channel's wake event), whose session delivers them in batches on channel 0
///   while the ring has room and the receive buffer has free sub-allocations; what does not fit
///   goes back to the head of the port's queue.
/// - The receive and send buffers are GPADLs: the VSP touches them only while the adapter holds
///   a lease on each (`GPADLView.withLeases`); a buffer whose GPADL was torn down is dropped
///   before the access.
public final class NetworkAdapter: VirtualServiceProvider, DetachableProvider, Sendable {
    public let instance: GUID
    public let permanentAddress: MACAddress
    public let virtualSwitch: VirtualSwitch
    public let port: SwitchPortID
    let host: any VSPHost
    private let state: Mutex<State>
    /// The link state `setLinkConnected` set and the VSP was not given yet: set with no other
    /// lock held, consumed with the VSP's (`state`) held, never held while taking `state`.
    private let linkChange = Mutex<Bool?>(nil)

    struct State {
        var vsp: NetworkVSP<GuestMemory>
        /// The GPADLs the VSP took as buffers: handle → the serial it was looked up with.
        var buffers: [UInt32: UInt64] = [:] {
            didSet {
                leases = buffers.map { GPADLLeaseRequest(handle: $0.key, serial: $0.value) }
                leaseEpoch &+= 1
            }
        }
        /// Changes whenever `leases` or `view` does: leases a session kept are taken again.
        private(set) var leaseEpoch: UInt64 = 0
        /// `buffers` as the leases `withVSP` takes.
        private(set) var leases: [GPADLLeaseRequest] = []
        /// The table `withVSP` hands the VSP, kept between calls.
        let table = LeasedGPADLTable()
        /// The primary channel's GPADLs, while it is open.
        var view: GPADLView? {
            didSet { leaseEpoch &+= 1 }
        }
        /// Each open channel's wake event, by channel index.
        var wakers: [Int: EventFD] = [:]
        /// Packets for a channel produced on another channel's thread, by channel index.
        var outbox: [Int: [OutgoingPacket]] = [:]
        /// Facts last reported, so only changes are sent.
        var reported: [String: String] = [:]
    }

    /// Frames taken from the switch per delivery.
    static let deliveryBatch = 64
    /// The largest transfer-page packet a delivery sends: descriptor, header with one range per
    /// frame, NVSP message.
    static let deliveryPacketBytes = 24 + 8 * deliveryBatch + NetvscConstants.nvspMessageSize

    /// How long a channel's frames wait for another child port's full queue before they go on
    /// and are dropped there (Docs/network.md, "Holding senders"): longer than a receiving
    /// guest that halted between frames takes to be woken and drain its port, even when its
    /// threads wait a scheduler slice for a processor, and short enough that a guest that
    /// stopped taking frames, which costs each sender this once until its port has drained
    /// again, stalls no one for long.
    public static let defaultHoldNanoseconds: UInt64 = 10_000_000
    /// This adapter's hold time (`defaultHoldNanoseconds` but in tests).
    let holdNanoseconds: UInt64

    /// Plugs a new adapter into `virtualSwitch`.
    /// - Parameters:
    ///   - queues: the most channels the guest may use (1 + sub-channels).
    ///   - vlanTrunk: the guest may send and receive VLAN-tagged frames (else its port drops them).
    ///   - memory: the partition's RAM.
    ///   - holdNanoseconds: how long the guest's frames wait for a full port (see `defaultHoldNanoseconds`).
    public init(instance: GUID, address: MACAddress, queues: Int, connected: Bool, vlanTrunk: Bool = false,
                switch virtualSwitch: VirtualSwitch,
                memory: GuestMemory, host: any VSPHost,
                holdNanoseconds: UInt64 = NetworkAdapter.defaultHoldNanoseconds) throws(SystemError) {
        self.instance = instance
        self.holdNanoseconds = holdNanoseconds
        permanentAddress = address
        self.virtualSwitch = virtualSwitch
        self.host = host
        var configuration = NetworkVSPConfiguration(macAddress: address)
        configuration.mtu = UInt32(virtualSwitch.mtu)
        configuration.receiveSubAllocationSize = Self.subAllocationSize(mtu: virtualSwitch.mtu)
        configuration.maximumSubchannels = max(0, queues - 1)
        configuration.linkConnected = connected
        var portConfiguration = SwitchPortConfiguration(name: "\(host.partitionName)/\(address.text)", kind: .child,
                                                        macAddress: address)
        portConfiguration.maximumFrameSize = virtualSwitch.maximumFrameSize
        portConfiguration.allowsVLANTags = vlanTrunk
        // As Hyper-V with MAC address spoofing off: the guest keeps the address it was given
        // (SET "NetworkAddress" fails), so it cannot take another port's, and its traffic.
        configuration.allowsMACAddressChange = portConfiguration.allowsMACSpoofing
        (port, _) = try virtualSwitch.addPort(portConfiguration)
        state = Mutex(State(vsp: NetworkVSP(configuration: configuration, memory: memory)))
    }

    /// A receive sub-allocation that holds a frame of `mtu` bytes of IP plus headers, the RNDIS
    /// PACKET header and its per-packet information (checksum, VLAN, hash): never below the
    /// 1728 bytes Linux's own MTU of 1500 needs, rounded to 64 bytes.
    static func subAllocationSize(mtu: Int) -> UInt32 {
        let needed = NetworkFrame.largestFrameSize(mtu: mtu) + RNDISPacketLayout.maximumReceiveHeaderSize
        return UInt32(max(1728, (needed + 63) / 64 * 64))
    }

    public func openSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        NetworkChannelSession(adapter: self, index: Int(opening.subChannelIndex))
    }

    /// A restarted parent's NIC: the guest's channels from before are rescinded (their buffers
    /// and RNDIS state died with the last parent) and served by `NetworkWithdrawalSession`
    /// until the guest closes them; the NIC is offered again once they are released.
    public func withdrawalSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        NetworkWithdrawalSession(host: host, fact: "nic.\(permanentAddress.text).withdrawn_sends.\(opening.relID)")
    }

    /// The device is gone (removed, its partition detached, or its primary channel broken by
    /// the guest and let go of): its port leaves the switch. Once, however often it is asked.
    public func detach() {
        guard !detached.exchange(true, ordering: .acquiringAndReleasing) else { return }
        virtualSwitch.removePort(port)
        host.report(["nic.\(permanentAddress.text).link": "removed"])
    }

    /// Whether `detach` ran.
    private let detached = Atomic<Bool>(false)

    // MARK: The VSP under the lock

    /// Runs `body` on the VSP with the lock held and a lease on every buffer GPADL the VSP uses;
    /// a buffer whose GPADL is gone is dropped first. GPADLs the VSP takes as buffers during
    /// `body` are recorded (the VSP writes nothing into a buffer in the call that hands it over).
    func withVSP<T: Sendable>(_ body: (inout NetworkVSP<GuestMemory>, LeasedGPADLTable) -> T) -> T {
        var leases: KeptLeases?
        defer { release(&leases) }
        return withVSP(keeping: &leases, body)
    }

    /// Leases a channel's session keeps from one guest packet to the next within a pass over
    /// its ring (`withVSP(keeping:_:)`), so a stream of packets does not take and return them
    /// for each: it gives them back (`release`) before it sleeps, when it closes, and after at
    /// most `maximumUses` packets, since a GPADL teardown waits for them.
    struct KeptLeases {
        fileprivate var view: GPADLView?
        fileprivate var leases: [GPADLLeaseRequest]
        fileprivate var epoch: UInt64
        fileprivate var uses = 0
        static let maximumUses = 64
    }

    /// `withVSP(_:)`, reusing the leases in `kept` while the VSP's buffers are those they were
    /// taken for; `kept` then holds the leases this call used, for the next.
    func withVSP<T: Sendable>(keeping kept: inout KeptLeases?,
                              _ body: (inout NetworkVSP<GuestMemory>, LeasedGPADLTable) -> T) -> T {
        state.withLock { state -> T in
            if let current = kept, current.epoch != state.leaseEpoch || current.uses >= KeptLeases.maximumUses {
                current.view?.release(current.leases)
                kept = nil
            }
            var leases = kept ?? Self.takeLeases(&state)
            leases.uses += 1
            kept = leases
            let table = state.table
            table.reset(view: state.view)
            let result = body(&state.vsp, table)
            for (handle, serial) in table.seen.values where state.vsp.isUsing(gpadl: handle) && state.buffers[handle] != serial {
                state.buffers[handle] = serial
            }
            for handle in state.buffers.keys where !state.vsp.isUsing(gpadl: handle) { state.buffers[handle] = nil }
            return result
        }
    }

    /// Takes a lease on every buffer GPADL; the common case, every buffer still in place, takes
    /// them without building a list. A buffer whose GPADL is gone is dropped.
    private static func takeLeases(_ state: inout State) -> KeptLeases {
        let view = state.view
        var held = state.leases
        if !held.isEmpty, view?.acquireAll(held) != true {
            held = view?.acquire(held) ?? []
            let heldHandles = Set(held.map(\.handle))
            for handle in state.buffers.keys where !heldHandles.contains(handle) {
                state.vsp.gpadlTornDown(handle)
                state.buffers[handle] = nil
            }
        }
        return KeptLeases(view: view, leases: view == nil ? [] : held, epoch: state.leaseEpoch)
    }

    /// Gives back leases a session kept.
    func release(_ kept: inout KeptLeases?) {
        if let kept { kept.view?.release(kept.leases) }
        kept = nil
    }

    /// Channel `index` opened on the calling worker.
    func opened(_ index: Int, channel: VSPChannel) {
        state.withLock { state in
            if index == 0 {
                state.view = channel.gpadls
                state.buffers = [:]
                state.outbox = [:]
            }
            state.wakers[index] = channel.wakeEvent
            state.vsp.channelOpened(index)
        }
        if index == 0 { virtualSwitch.setReadyEvent(channel.wakeEvent, for: port) }
    }

    /// Channel `index` closed.
    func closed(_ index: Int) {
        if index == 0 { virtualSwitch.setReadyEvent(nil, for: port) }
        state.withLock { state in
            state.vsp.channelClosed(index)
            state.wakers[index] = nil
            state.outbox[index] = nil
            if index == 0 {
                state.buffers = [:]
                state.view = nil
                state.table.reset(view: nil)
            }
        }
        if index == 0 {
            virtualSwitch.setPacketFilter([], for: port)
            // A change whose wake-up reached a worker already gone: the VSP takes it now (with
            // RNDIS reset by the close, nothing is sent).
            post(applyLinkChange(), to: 0)
        }
    }

    /// Packets produced for channel `index` on another channel's thread.
    func takeOutbox(_ index: Int) -> [OutgoingPacket] {
        state.withLock { $0.outbox.removeValue(forKey: index) ?? [] }
    }

    /// Queues `packets` for channel `index` and wakes its worker. Packets for a channel that is
    /// not open are dropped (the guest will initialize afresh when it opens it), and so are
    /// packets beyond `outboxLimit` waiting for one channel.
    func post(_ packets: [OutgoingPacket], to index: Int) {
        guard !packets.isEmpty else { return }
        let waker = state.withLock { state -> EventFD? in
            guard let waker = state.wakers[index] else { return nil }
            let room = max(0, Self.outboxLimit - state.outbox[index, default: []].count)
            state.outbox[index, default: []] += packets.prefix(room)
            return waker
        }
        waker?.signal()
    }

    /// Most packets waiting in one channel's outbox.
    static let outboxLimit = 64

    // MARK: Control

    /// Plugs the cable in or pulls it out: the guest hears RNDIS MEDIA_CONNECT / DISCONNECT.
    ///
    /// The primary channel's worker tells the guest (`applyLinkChange`), so changes faster than
    /// it runs end in at most one indication, and no indication is built here that the outbox
    /// could drop with the receive sub-allocation it took.
    public func setLinkConnected(_ connected: Bool) {
        linkChange.withLock { $0 = connected }
        if let waker = state.withLock({ $0.wakers[0] }) {
            waker.signal()
        } else {
            // No primary channel: the state changes for the guest's next RNDIS bring-up.
            post(applyLinkChange(), to: 0)
        }
    }

    /// Gives the VSP the link state last set, if it was not given yet: the indication for the guest.
    func applyLinkChange() -> [OutgoingPacket] {
        guard linkChange.withLock({ $0 != nil }) else { return [] }
        let actions = withVSP { vsp, _ -> [NetworkVSPAction] in
            // Taken with the VSP's lock held, so two threads cannot apply changes out of order.
            guard let connected = linkChange.withLock({ $0.take() }) else { return [] }
            return vsp.setLinkConnected(connected)
        }
        var packets: [OutgoingPacket] = []
        for case .send(0, let packet) in actions { packets.append(packet) }
        return packets
    }

    /// Reports the adapter's state to the root (`hv partition show`), when it changed.
    public func reportFacts() {
        let prefix = "nic.\(permanentAddress.text)."
        var facts = state.withLock { state -> [String: String] in
            let vsp = state.vsp
            let counters = vsp.counters
            var facts: [String: String] = [
                "switch": virtualSwitch.name,
                "mac": vsp.macAddress.text,
                "link": vsp.linkConnected ? "up" : "down",
                "nvsp_version": vsp.version.map { Self.describe($0) } ?? "none",
                "channels": "\(vsp.channelCount)",
                "tx_frames": "\(counters.transmittedFrames)",
                "rx_frames": "\(counters.receivedFrames)",
                "tx_drops": "\(counters.transmitDrops)",
                "rx_drops": "\(counters.receiveDrops)",
                "rx_no_buffer": "\(counters.receiveNoBuffer)",
                "tx_lso_frames": "\(counters.largeSendFrames)",
                "tx_checksum_frames": "\(counters.checksumOffloadFrames)",
                "guest_errors": "\(counters.badNVSPMessages + counters.badRNDISMessages + counters.badSendSections + counters.badGuestRanges + counters.refusedBuffers + counters.unknownCompletions + counters.unexpectedPacketTypes)",
                "packet_filter": "0x\(String(vsp.packetFilter.rawValue, radix: 16))",
            ]
            let offload = vsp.offloadParameters
            facts["offload"] = "tcp4=\(offload.tcpIPv4Checksum) udp4=\(offload.udpIPv4Checksum) tcp6=\(offload.tcpIPv6Checksum) "
                + "udp6=\(offload.udpIPv6Checksum) lso4=\(offload.largeSendV2IPv4) lso6=\(offload.largeSendV2IPv6)"
            return facts
        }
        if let port = virtualSwitch.counters(of: port) {
            facts["port_frames_in"] = "\(port.framesIn)"
            facts["port_frames_out"] = "\(port.framesOut)"
            facts["port_drops"] = "\(port.drops.values.reduce(0, +))"
            facts["port_queue_full"] = "\(port.dropped(.queueFull))"
            facts["port_vlan_tagged"] = "\(port.dropped(.vlanTagged))"
            facts["port_sends_held"] = "\(port.sendsHeld)"
            facts["port_holds_timed_out"] = "\(port.holdsTimedOut)"
        }
        let changed = state.withLock { state -> [String: String] in
            var changed: [String: String] = [:]
            for (key, value) in facts where state.reported[key] != value {
                changed[prefix + key] = value
                state.reported[key] = value
            }
            return changed
        }
        if !changed.isEmpty { host.report(changed) }
    }

    static func describe(_ version: NVSPVersion) -> String {
        switch version {
        case .v1: "1"
        case .v2: "2"
        case .v4: "4"
        case .v5: "5"
        case .v6: "6"
        case .v61: "6.1"
        default: "0x\(String(version.rawValue, radix: 16))"
        }
    }
}

/// The GPADLs a `NetworkVSP` may take as receive and send buffers: those of the adapter's primary
/// channel that share no page with another GPADL (a ring, another buffer). Records what it
/// handed out, with serials, so the adapter can lease them later.
final class LeasedGPADLTable: GPADLTable {
    private(set) var view: GPADLView?
    /// Handles looked up and found: handle → (handle, serial).
    private(set) var seen: [UInt32: (UInt32, UInt64)] = [:]

    init(view: GPADLView? = nil) { self.view = view }

    /// Starts a new call on `view`, forgetting what the last one looked up.
    func reset(view: GPADLView?) {
        self.view = view
        if !seen.isEmpty { seen.removeAll(keepingCapacity: true) }
    }

    func buffer(forGPADL handle: UInt32) -> GuestBufferDescriptor? {
        guard let view, let gpadl = view.gpadl(handle), !view.overlapsOthers(handle) else { return nil }
        seen[handle] = (handle, gpadl.serial)
        return GuestBufferDescriptor(byteOffset: gpadl.byteOffset, byteCount: gpadl.byteCount, pageNumbers: gpadl.pageNumbers)
    }
}

/// One open channel of a `NetworkAdapter`, confined to the channel's worker thread.
final class NetworkChannelSession: ChannelSession {
    let adapter: NetworkAdapter
    let index: Int
    /// Frames for the switch, gathered while handling one batch of packets.
    private var transmitted = TransmitBatch()
    /// What the VSP asked for the packet being handled.
    private var packetActions: [NetworkVSPAction] = []
    /// Buffer leases kept between the packets of one pass over the ring.
    private var leases: NetworkAdapter.KeptLeases?
    /// Whether the completions staged so far are to be published now (`answersAreDue`).
    private var completionsDue = false
    /// The port whose full queue holds this channel's frames, and when the hold runs out: until
    /// then the guest's ring is left unread (Docs/network.md, "Holding senders").
    private var held: (port: SwitchPortID, until: UInt64)?
    /// How this session is woken when the port that held it has drained (set in `start`).
    private var waiter: SwitchHoldWaiter?
    /// Set by `waiter`: the hold ended, so the next flush tries again (until then, the worker's
    /// turns leave the switch alone).
    private let holdEnded = HoldEndedFlag()

    init(adapter: NetworkAdapter, index: Int) {
        self.adapter = adapter
        self.index = index
    }

    var tickInterval: UInt64? { index == 0 ? 1_000_000_000 : nil }

    func start(on channel: VSPChannel) throws(VSPError) {
        adapter.opened(index, channel: channel)
        let event = channel.wakeEvent
        let ended = holdEnded
        // Named by the flag the closure keeps alive, so no later session can share the name
        // while a registration of this one is left on a port.
        waiter = SwitchHoldWaiter(id: ObjectIdentifier(ended)) {
            ended.value.store(true, ordering: .releasing)
            event.signal()
        }
    }

    func acceptsPacket(on channel: VSPChannel) -> Bool { held == nil }

    var wakeDeadline: UInt64? { held?.until }

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        // The list is kept between packets for its capacity.
        var actions: [NetworkVSPAction] = []
        swap(&actions, &packetActions)
        defer {
            actions.removeAll(keepingCapacity: true)
            swap(&actions, &packetActions)
        }
        adapter.withVSP(keeping: &leases) { vsp, table in
            vsp.handle(packet.bytes, descriptor: packet.descriptor, on: index, gpadls: table, into: &actions)
        }
        try carryOut(&actions, on: channel)
        // The actions let go of their frames before the frames reach the switch (see
        // `VirtualSwitch.send(draining:from:)`).
        actions.removeAll(keepingCapacity: true)
        // A full batch that left the parent at once (written to the host) makes the completions
        // staged so far due: a guest streaming to the host gets its sections back while it still
        // has some, instead of when the worker's pass ends. Frames queued for another guest's
        // port do not: there, sooner completions only let the sender outrun a receiver that
        // shares the host's processors (Docs/network.md, "Completions").
        if transmitted.isFull, flushTransmitted().left { completionsDue = true }
    }

    func answersAreDue(on channel: VSPChannel) -> Bool {
        defer { completionsDue = false }
        return completionsDue
    }

    func work(on channel: VSPChannel) throws(VSPError) -> Bool {
        // The end of a pass over the ring: the worker may sleep next.
        adapter.release(&leases)
        // Frames a full port held back that have now gone on are progress: the worker reads
        // the guest's ring again rather than sleeping with it masked.
        var progressed = flushTransmitted().moved && held == nil
        let posted = adapter.takeOutbox(index)
        for packet in posted { try send(packet, on: channel) }
        progressed = progressed || !posted.isEmpty
        guard index == 0 else { return progressed }
        let indications = adapter.applyLinkChange()
        for packet in indications { try send(packet, on: channel) }
        progressed = progressed || !indications.isEmpty
        // Deliver while the ring has room; when it has none, pending_send_sz asks the guest to
        // signal once it has read enough, which wakes this worker.
        while channel.hasRoom(forPayload: NetworkAdapter.deliveryPacketBytes) {
            let frames = adapter.virtualSwitch.receive(for: adapter.port, limit: NetworkAdapter.deliveryBatch)
            guard !frames.isEmpty else { break }
            let (consumed, delivered) = adapter.withVSP { vsp, _ in vsp.deliver(frames, on: 0) }
            var actions = delivered
            if consumed < frames.count {
                adapter.virtualSwitch.requeue(Array(frames[consumed...]), for: adapter.port)
            }
            try carryOut(&actions, on: channel)
            guard consumed > 0 else { break }
            progressed = true
            if consumed < frames.count { break }
        }
        return progressed
    }

    func tick(on channel: VSPChannel) throws(VSPError) {
        adapter.reportFacts()
    }

    func close() {
        adapter.release(&leases)
        // A closing channel waits for no one: what a full queue would turn away is dropped.
        if let held, let waiter { adapter.virtualSwitch.cancelHold(waiter.id, on: held.port) }
        waiter = nil
        flushTransmitted()
        adapter.closed(index)
    }

    private func send(_ packet: OutgoingPacket, on channel: VSPChannel) throws(VSPError) {
        try channel.send(packet.type, flags: packet.flags, transactionID: packet.transactionID, header: packet.header,
                         payload: packet.payload)
    }

    /// Carries out the VSP's actions, outside its lock, in order, emptying `actions` (its
    /// capacity kept). Each is moved out of the list, so a frame joins the switch's batch with
    /// its reference count untouched (iterating would copy every action, and the list release
    /// them all again).
    private func carryOut(_ actions: inout [NetworkVSPAction], on channel: VSPChannel) throws(VSPError) {
        actions.reverse()
        while let action = actions.popLast() {
            switch consume action {
            case .send(let target, let packet):
                if target == index {
                    try send(packet, on: channel)
                } else {
                    adapter.post([packet], to: target)
                }
            case .transmit(_, let frame):
                // Handed to the switch by `handle` once it holds a batch, or by the next `work`.
                transmitted.append(frame)
            case .offerSubchannels(let count):
                channel.offerSubChannels(count)
            case .packetFilterChanged(let filter):
                adapter.virtualSwitch.setPacketFilter(filter, for: adapter.port)
            case .macAddressChanged(let address):
                adapter.virtualSwitch.setMACAddress(address, for: adapter.port)
            case .multicastListChanged(let addresses):
                adapter.virtualSwitch.setMulticastAddresses(Set(addresses), for: adapter.port)
            }
        }
    }

    /// Hands the frames gathered so far to the switch in one batch. A child port's full queue
    /// may hold the rest back (`VirtualSwitch.send(holding:from:waiter:)`): they stay in the
    /// batch, and the guest's ring is left unread, until that port has drained or the hold has
    /// run out, when the port holds no one and they go on (dropped there if it is still full).
    /// - Returns: whether they all left the switch at once (`VirtualSwitch.send(draining:from:)`),
    ///   and whether any frame was switched.
    @discardableResult
    private func flushTransmitted() -> (left: Bool, moved: Bool) {
        guard !transmitted.isEmpty else {
            held = nil
            return (false, false)
        }
        let virtualSwitch = adapter.virtualSwitch
        let port = adapter.port
        let before = transmitted.frames.count
        guard let waiter else {
            var left = false
            transmitted.handOver { left = virtualSwitch.send(draining: &$0, from: port) }
            held = nil
            return (left, true)
        }
        if let held, !holdEnded.value.load(ordering: .acquiring) {
            // Not woken: the port has not drained yet.
            guard MonotonicClock.nanoseconds() >= held.until else { return (false, false) }
            // Nor in time: it holds no one until its owner has drained it to a quarter, and
            // neither does any other port this channel's full share would hold it on.
            virtualSwitch.endHolds(on: held.port, sender: port, frame: transmitted.frames.first)
        }
        // Cleared before the switch can hold this session again, so no wake is lost.
        holdEnded.value.store(false, ordering: .relaxed)
        var outcome: VirtualSwitch.HoldingOutcome?
        transmitted.handOver { outcome = virtualSwitch.send(holding: &$0, from: port, waiter: waiter) }
        held = outcome?.heldBy.map { ($0, MonotonicClock.nanoseconds() &+ adapter.holdNanoseconds) }
        return (outcome?.left ?? false, transmitted.frames.count < before)
    }
}

/// Whether a hold on a NIC channel's frames has ended (`NetworkChannelSession`), set by the
/// thread that drained the port, read by the channel's worker.
final class HoldEndedFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// A NIC channel being withdrawn after its state was lost: it completes every send the guest
/// still waits for (`NetworkVSP.withdrawalAnswer`) and drops the rest (receive completions,
/// buffer revocations), so the guest's driver can let the device go.
final class NetworkWithdrawalSession: ChannelSession {
    let host: any VSPHost
    /// The fact that reports how many sends it completed (`hv partition show`).
    let fact: String
    private var completed = 0

    init(host: any VSPHost, fact: String) {
        self.host = host
        self.fact = fact
    }

    func start(on channel: VSPChannel) throws(VSPError) {}

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        guard let answer = NetworkVSP<GuestMemory>.withdrawalAnswer(to: packet.bytes, descriptor: packet.descriptor) else { return }
        try channel.send(answer.type, flags: answer.flags, transactionID: answer.transactionID, payload: answer.payload)
        completed += 1
    }

    func close() {
        host.report([fact: "\(completed)"])
    }
}
