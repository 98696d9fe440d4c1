import NetworkProtocol

/// The forwarding plane of one virtual switch, I/O-free: frames in from a port, frames queued to
/// ports out. MAC learning with aging in a bounded table; broadcast, multicast and unknown
/// unicast flooded to every other port; each child port's RNDIS packet filter applied; offloads
/// a destination cannot take done in software; one bounded queue per port, so a port that
/// floods or stops draining only fills its own queue.
///
/// Frames are arrays shared between destinations until one needs its own copy (an offload
/// fix-up or a VLAN tag): a frame from one child to another is copied out of the sender's
/// memory once and into the receiver's once, and never passes through the host kernel.
public struct SwitchCore: Sendable {
    public let name: String
    public let kind: SwitchKind

    fileprivate struct Port: Sendable {
        var configuration: SwitchPortConfiguration
        var counters = SwitchPortCounters()
        var queue = FrameRing<Queued>()
        var queuedBytes = 0
        /// Frames and bytes waiting, by the port that sent them (fair share, see `takes`): a few
        /// senders at a time, at most the switch's ports, so a list scanned in place rather than
        /// a dictionary that hashes on every frame.
        var queuedBySource: [(source: SwitchPortID, count: Int, bytes: Int)] = []
        var queuedFrames: Int { queue.count }
        /// Senders held until this port's queue has drained (`hold`), each once, with the port
        /// each sends from.
        var waiters: [(waiter: SwitchHoldWaiter, sender: SwitchPortID)] = []
        /// Whether a sender whose frame this port's full queue would turn away is held instead
        /// (`holdingPort`): a child port, until a hold on it runs out because its owner did not
        /// drain it (`endHolds`), and again once its owner has drained it to a quarter.
        var holdsSenders = true
        /// This port's own senders held by other ports. A held channel leaves its guest's ring
        /// unread, and with it the guest's receive completions, so while any is held the port
        /// may stop draining: it then holds no sender, and no two ports can hold each other.
        var sendersHeld = 0
        /// The owner of a port that takes direct writes is writing frames it took from the
        /// queue (`dequeue` to `finishedWriting`): until it is done, a direct write could pass
        /// them, so frames queue behind them instead.
        var ownerWriting = false
        /// Whether the port owns its address (`SwitchCore.pinned`): a child's that may not
        /// spoof. Kept beside the configuration so the switch reads a flag, not the
        /// configuration (a copy, its sets retained), for every frame.
        var ownsAddress = false

        /// Frames and bytes from `source` waiting in the queue.
        func queued(from source: SwitchPortID) -> (count: Int, bytes: Int) {
            for entry in queuedBySource where entry.source == source { return (entry.count, entry.bytes) }
            return (0, 0)
        }

        /// Adds `delta` frames of `bytes` (negative: removes) to those from `source` waiting; a
        /// sender with none left leaves the list.
        mutating func countQueued(from source: SwitchPortID, _ delta: Int, bytes: Int) {
            guard let index = queuedBySource.firstIndex(where: { $0.source == source }) else {
                if delta > 0 { queuedBySource.append((source, delta, bytes)) }
                return
            }
            queuedBySource[index].count += delta
            queuedBySource[index].bytes += bytes
            if queuedBySource[index].count <= 0 { queuedBySource.remove(at: index) }
        }

        /// Counts a frame this port sent into the switch, whose source address is
        /// `sourceAddress` (`nil` for a runt); the reason it must be dropped, if any.
        mutating func admit(_ frame: borrowing NetworkFrame, sourceAddress: MACAddress?, tagged: Bool) -> SwitchDropReason? {
            counters.framesIn += 1
            counters.bytesIn += UInt64(frame.bytes.count)
            let limit = frame.offload.segmentation == nil ? configuration.maximumFrameSize : NetworkFrame.largestSegmentedFrameSize
            guard frame.bytes.count >= NetworkFrame.ethernetHeaderSize, let sourceAddress else { return .malformed }
            if frame.bytes.count > limit { return .oversized }
            if sourceAddress.isGroup { return .malformed }
            if configuration.kind == .child, !configuration.allowsMACSpoofing, let own = configuration.macAddress,
               sourceAddress != own { return .spoofedSource }
            if tagged, !configuration.allowsVLANTags { return .vlanTagged }
            return nil
        }

        /// Queues frames from `source` within the port's limits. One sender may fill at most half
        /// of the queue, so a port flooding the switch leaves room for everyone else's frames to
        /// the same destination.
        mutating func enqueue(_ frames: [NetworkFrame], from source: SwitchPortID) {
            for item in frames { enqueue(item, from: source) }
        }

        /// Queues one frame from `source` within the port's limits (see `enqueue(_:from:)`).
        /// - Returns: whether the queue went from empty to non-empty.
        @discardableResult
        mutating func enqueue(_ item: consuming NetworkFrame, from source: SwitchPortID) -> Bool {
            let size = item.bytes.count
            guard takes(size: size, from: source) else {
                counters.countDrop(.queueFull)
                return false
            }
            let wasEmpty = queuedFrames == 0
            countOut(item)
            queue.append(Queued(frame: consume item, source: source))
            countQueued(from: source, 1, bytes: size)
            queuedBytes += size
            return wasEmpty
        }

        /// Whether the queue has room for a frame of `size` bytes from `source`: within the
        /// port's frame and byte limits, and within `source`'s share of them.
        func takes(size: Int, from source: SwitchPortID) -> Bool {
            queuedFrames < configuration.queueFrameLimit
                && queuedBytes + size <= configuration.queueByteLimit
                && fitsShare(count: 1, size: size, from: source)
        }

        /// Whether `count` more frames of `size` bytes in all from `source` stay within one
        /// sender's share: half the queue's frames and half its bytes (at least one frame), so
        /// a port flooding the switch, with small frames or jumbo ones, leaves room for
        /// everyone else's frames to the same destination.
        func fitsShare(count: Int, size: Int, from source: SwitchPortID) -> Bool {
            let own = queued(from: source)
            return own.count + count <= max(1, configuration.queueFrameLimit / 2)
                && (own.count == 0 || own.bytes + size <= configuration.queueByteLimit / 2)
        }

        /// Whether the queue has drained far enough for held senders to go on: to a quarter of
        /// its limits, so a woken sender has room for several batches and is not woken again
        /// for every frame taken.
        var isDrainedForHolds: Bool {
            queuedFrames <= configuration.queueFrameLimit / 4 && queuedBytes <= configuration.queueByteLimit / 4
        }

        /// Whether a sender of `count` frames of `size` bytes in all for `destination` from
        /// `source` is to be held rather than the frames dropped: only by its own full share, so
        /// a sender is never held by a queue other senders filled (mutating only to be called in
        /// place).
        mutating func holds(count: Int, size: Int, for destination: MACAddress, tagged: Bool, from source: SwitchPortID)
            -> Bool
        {
            configuration.kind == .child && holdsSenders && sendersHeld == 0 && accepts(destination)
                && (!tagged || configuration.allowsVLANTags) && !fitsShare(count: count, size: size, from: source)
        }

        /// Counts a frame handed to this port.
        mutating func countOut(_ frame: borrowing NetworkFrame) {
            counters.framesOut += 1
            counters.bytesOut += UInt64(frame.bytes.count)
        }

        /// Whether the port's filter lets a frame for `destination` through (RNDIS semantics,
        /// Linux `rndis_filter.c` sets the bits; a filter of 0 delivers nothing). Mutating only
        /// so that the switch calls it in place.
        mutating func accepts(_ destination: MACAddress) -> Bool {
            let filter = configuration.packetFilter
            if filter.contains(.promiscuous) { return true }
            if destination.isBroadcast { return filter.contains(.broadcast) }
            if destination.isMulticast {
                return filter.contains(.allMulticast)
                    || (filter.contains(.multicast) && configuration.multicastAddresses.contains(destination))
            }
            guard filter.contains(.directed) else { return false }
            return configuration.macAddress.map { $0 == destination } ?? true
        }

        /// Whether the switching thread may write to this port's endpoint now: it takes direct
        /// writes, nothing waits in its queue, and its owner is not writing what waited there
        /// (in place, like `accepts`).
        mutating func takesDirectly() -> Bool { configuration.deliversDirectly && queuedFrames == 0 && !ownerWriting }

        /// Whether the port carries VLAN-tagged frames (in place, like `accepts`).
        mutating func allowsVLANTags() -> Bool { configuration.allowsVLANTags }

        /// The offloads this port's endpoint completes itself (in place, like `accepts`).
        mutating func capabilities() -> SoftwareOffload.Capabilities { configuration.capabilities }
    }

    /// The ports by ID, IDs ascending (`addPort` hands them out in increasing order), found by
    /// binary search: a switched frame looks up two ports, and hashing each was a tenth of a
    /// NIC worker's time in a guest → guest profile. The same calls as a dictionary's.
    fileprivate struct PortTable: Sendable {
        private(set) var keys: [SwitchPortID] = []
        /// The ports, in the order of `keys`; mutate them in place through an index.
        var values: [Port] = []

        /// Where `id` is (or would go).
        private func position(of id: SwitchPortID) -> Int {
            var low = 0
            var high = keys.count
            while low < high {
                let middle = (low + high) / 2
                if keys[middle] < id { low = middle + 1 } else { high = middle }
            }
            return low
        }

        func index(forKey id: SwitchPortID) -> Int? {
            let index = position(of: id)
            return index < keys.count && keys[index] == id ? index : nil
        }

        subscript(id: SwitchPortID) -> Port? {
            get { index(forKey: id).map { values[$0] } }
            set {
                let index = position(of: id)
                let present = index < keys.count && keys[index] == id
                switch (present, newValue) {
                case (true, let port?): values[index] = port
                case (true, nil):
                    keys.remove(at: index)
                    values.remove(at: index)
                case (false, let port?):
                    keys.insert(id, at: index)
                    values.insert(port, at: index)
                case (false, nil): break
                }
            }
        }
    }

    /// A frame waiting in a port's queue, with the port it came from.
    fileprivate struct Queued: Sendable {
        var frame: NetworkFrame
        var source: SwitchPortID
    }

    /// Frames given back with `requeue` count against no sender's share.
    fileprivate static let requeuedSource = SwitchPortID(0)

    private var ports = PortTable()
    /// The ports in the order they were added (floods go to them in this order).
    private var portOrder: [SwitchPortID] = []
    private var nextPort = 1
    /// Child ports on the switch: with one, the only child is the sender, and no port can hold
    /// it (`holdingPort` then looks at nothing, which keeps a child → host stream's cost as it was).
    private var childPorts = 0
    private var table: MACTable
    /// The addresses child ports own: each one's configured address, where it may not spoof
    /// (so a frame from it always carries that address). No other port's frame may claim one,
    /// and a frame to one reaches its port even when the table has not learned or has evicted it.
    private var pinned = PinnedAddresses()

    /// Learned addresses at most (the table evicts the oldest beyond this).
    public static let defaultTableCapacity = 4096
    /// Hyper-V's and Linux's bridge default aging time: 300 s.
    public static let defaultAgingNanoseconds: UInt64 = 300_000_000_000

    public init(name: String, kind: SwitchKind, tableCapacity: Int = SwitchCore.defaultTableCapacity,
                agingNanoseconds: UInt64 = SwitchCore.defaultAgingNanoseconds) {
        self.name = name
        self.kind = kind
        table = MACTable(capacity: tableCapacity, agingNanoseconds: agingNanoseconds)
    }

    // MARK: Ports

    /// Adds a port.
    public mutating func addPort(_ configuration: SwitchPortConfiguration) -> SwitchPortID {
        let id = SwitchPortID(nextPort)
        nextPort += 1
        var port = Port(configuration: configuration)
        port.ownsAddress = Self.pinnedAddress(of: configuration) != nil
        ports[id] = port
        portOrder.append(id)
        if configuration.kind == .child { childPorts += 1 }
        if let address = Self.pinnedAddress(of: configuration), pinned.owner(of: address) == nil {
            pinned.set(address, owner: id)
            // Learned on another port before this one owned it (the uplink's LAN, say), it would
            // be delivered there until it aged out: from now on only its owner teaches the table.
            table.forget(address: address)
        }
        return id
    }

    /// Removes a port, its queue and what was learned on it.
    /// - Returns: the senders held for the port, to be woken.
    @discardableResult
    public mutating func removePort(_ id: SwitchPortID) -> [SwitchHoldWaiter] {
        let waiters = ports[id]?.waiters ?? []
        if ports[id]?.configuration.kind == .child { childPorts -= 1 }
        ports[id] = nil
        portOrder.removeAll { $0 == id }
        table.forget(port: id)
        // An address this port owned goes to another port that owns it too (a NIC added again
        // while the guest still held the one it replaces has the same address), else to none.
        for address in pinned.addresses(ownedBy: id) {
            pinned.set(address, owner: ports.keys.first { other in
                ports[other].map { $0.ownsAddress && $0.configuration.macAddress == address } ?? false
            })
        }
        return released(waiters)
    }

    public var portIDs: [SwitchPortID] { ports.keys }

    public func configuration(of id: SwitchPortID) -> SwitchPortConfiguration? { ports[id]?.configuration }

    public func counters(of id: SwitchPortID) -> SwitchPortCounters? { ports[id]?.counters }

    /// Frames waiting for `id`.
    public func queuedFrames(for id: SwitchPortID) -> Int { ports[id]?.queuedFrames ?? 0 }

    /// Whether the port takes frames written by the switching thread (`VirtualSwitch.setDirectSink`).
    public mutating func setDeliversDirectly(_ enabled: Bool, for id: SwitchPortID) {
        ports[id]?.configuration.deliversDirectly = enabled
    }

    /// The child set its RNDIS packet filter.
    public mutating func setPacketFilter(_ filter: PacketFilter, for id: SwitchPortID) {
        ports[id]?.configuration.packetFilter = filter
    }

    /// The port's own address changes (a guest's MAC change), and what was learned on the port is
    /// forgotten. A child port that may not spoof keeps the address it was given: otherwise it
    /// could take another port's address, and with it that port's traffic.
    /// - Returns: whether the address changed.
    @discardableResult
    public mutating func setMACAddress(_ address: MACAddress, for id: SwitchPortID) -> Bool {
        guard let index = ports.index(forKey: id) else { return false }
        let configuration = ports.values[index].configuration
        guard configuration.kind != .child || configuration.allowsMACSpoofing else { return false }
        ports.values[index].configuration.macAddress = address
        table.forget(port: id)
        return true
    }

    /// The multicast list of a MULTICAST filter.
    public mutating func setMulticastAddresses(_ addresses: Set<MACAddress>, for id: SwitchPortID) {
        ports[id]?.configuration.multicastAddresses = addresses
    }

    /// The address a port with `configuration` owns: a child's that may not spoof.
    private static func pinnedAddress(of configuration: SwitchPortConfiguration) -> MACAddress? {
        configuration.kind == .child && !configuration.allowsMACSpoofing ? configuration.macAddress : nil
    }

    /// Whether a frame carries a VLAN tag: as metadata (a guest's per-packet information) or in
    /// line (802.1Q, 802.1ad, or the pre-standard 0x9100 some switches use for an outer tag).
    static func carriesVLANTag(_ frame: borrowing NetworkFrame) -> Bool {
        if frame.offload.vlan != nil { return true }
        let bytes = frame.bytes.span
        guard bytes.count >= NetworkFrame.ethernetHeaderSize else { return false }
        let type = UInt16(bytes[12]) << 8 | UInt16(bytes[13])
        return type == EthernetHeaders.etherTypeVLAN || type == EthernetHeaders.etherTypeQinQ || type == 0x9100
    }

    /// The port frames for `destination` go to: where it was learned, else the child port that
    /// owns it.
    private mutating func knownPort(of destination: MACAddress, now: UInt64) -> SwitchPortID? {
        table.port(of: destination, now: now) ?? (pinned.isEmpty ? nil : pinned.owner(of: destination))
    }

    /// The port `address` was learned on, if the entry has not aged out.
    public func learnedPort(of address: MACAddress, now: UInt64) -> SwitchPortID? { table.peekPort(of: address, now: now) }

    /// Learned addresses.
    public var learnedCount: Int { table.count }

    // MARK: Forwarding

    /// Switches one frame that port `source` sent.
    /// - Parameter now: monotonic time in nanoseconds, for learning and aging.
    /// - Returns: the ports whose queues went from empty to non-empty (their owners should be woken).
    public mutating func forward(_ frame: NetworkFrame, from source: SwitchPortID, now: UInt64) -> [SwitchPortID] {
        var unused: DirectFrames? = nil
        return forward(frame, from: source, now: now, direct: &unused)
    }

    /// Frames for ports that take them directly, in the order they were switched, each with its
    /// port: two parallel lists, so a run of frames to one port is a slice of `frames`.
    public struct DirectFrames: Sendable {
        public var ports: [SwitchPortID] = []
        public var frames: [NetworkFrame] = []
        /// Whether a frame switched with this run went to a port's queue instead (or was turned
        /// away there, the queue full): a port that takes no direct writes (a guest's), or one
        /// with frames waiting already.
        public internal(set) var queuedElsewhere = false
        public init() {}
        public var isEmpty: Bool { frames.isEmpty }

        mutating func append(_ frame: consuming NetworkFrame, for port: SwitchPortID) {
            ports.append(port)
            frames.append(consume frame)
        }
    }

    /// Switches one frame that port `source` sent; frames for a port that `deliversDirectly` and
    /// has nothing queued are appended to `direct` (when it is not nil) for the caller to write
    /// to that port's endpoint itself, instead of being queued.
    ///
    /// The frame is consumed: a frame for one port moves into that port's queue or `direct`
    /// with no reference counting; a flood copies it (a reference) for every port but the last
    /// it reaches, which takes it.
    /// - Returns: the ports whose queues went from empty to non-empty (their owners should be woken).
    public mutating func forward(_ frame: consuming NetworkFrame, from source: SwitchPortID, now: UInt64,
                                 direct: inout DirectFrames?) -> [SwitchPortID] {
        guard let senderIndex = ports.index(forKey: source) else { return [] }
        let sourceAddress = MACAddress.source(of: frame.bytes)
        // Looked at once: the sender's port and every destination's ask.
        let tagged = Self.carriesVLANTag(frame)
        if let drop = ports.values[senderIndex].admit(frame, sourceAddress: sourceAddress, tagged: tagged) {
            ports.values[senderIndex].counters.countDrop(drop)
            return []
        }
        guard let destination = MACAddress.destination(of: frame.bytes), let sourceAddress else { return [] }
        // A port that owns its address sends only from it (`admit`); any other claiming a
        // child's (a host on an external switch's LAN, a port allowed to spoof) would take the
        // child's traffic once learned: dropped instead.
        if !pinned.isEmpty, !ports.values[senderIndex].ownsAddress, let owner = pinned.owner(of: sourceAddress), owner != source {
            ports.values[senderIndex].counters.countDrop(.spoofedSource)
            return []
        }
        table.learn(sourceAddress, on: source, now: now)

        var delivery = Delivery(frame, source: source, destination: destination, tagged: tagged)
        if !destination.isGroup, let known = knownPort(of: destination, now: now) {
            // A known unicast destination: one port, no list of targets to build.
            if known != source { deliver(consume frame, &delivery, to: known, direct: &direct) }
        } else if let last = portOrder.last(where: { $0 != source }) {
            // Flooded: a copy (a reference) for each port but the last, which takes the frame.
            for target in portOrder where target != source && target != last {
                deliver(copy frame, &delivery, to: target, direct: &direct)
            }
            deliver(consume frame, &delivery, to: last, direct: &direct)
        }
        return delivery.woken
    }

    /// What a frame on its way to the ports it goes to keeps between them (the frame itself is
    /// passed beside it, so a frame for one port is moved rather than copied).
    private struct Delivery {
        let source: SwitchPortID
        let destination: MACAddress
        /// A frame that asks for no offload work goes out as it came.
        let asIs: Bool
        /// It carries a VLAN tag: only ports that allow tags take it.
        let tagged: Bool
        /// Offload work is done once per kind of destination, not once per port.
        var resolved: [(SoftwareOffload.Capabilities, [NetworkFrame]?)] = []
        var woken: [SwitchPortID] = []

        init(_ frame: borrowing NetworkFrame, source: SwitchPortID, destination: MACAddress, tagged: Bool) {
            self.source = source
            self.destination = destination
            asIs = !frame.offload.needsCompletion && frame.offload.vlan == nil
            self.tagged = tagged
        }
    }

    private mutating func deliver(_ frame: consuming NetworkFrame, _ delivery: inout Delivery, to target: SwitchPortID,
                                  direct: inout DirectFrames?) {
        // Every port access below goes through a mutating method, in place: reading a port
        // out of the dictionary would copy it, queue and tables included, for each frame.
        guard let index = ports.index(forKey: target) else { return }
        guard ports.values[index].accepts(delivery.destination) else {
            ports.values[index].counters.countDrop(.filtered)
            return
        }
        if delivery.tagged, !ports.values[index].allowsVLANTags() {
            ports.values[index].counters.countDrop(.vlanTagged)
            return
        }
        let takesDirectly = direct != nil && ports.values[index].takesDirectly()
        if delivery.asIs {
            if takesDirectly {
                ports.values[index].countOut(frame)
                direct?.append(consume frame, for: target)
                return
            }
            direct?.queuedElsewhere = true
            if ports.values[index].enqueue(consume frame, from: delivery.source) {
                delivery.woken.append(target)
            }
            return
        }
        let capabilities = ports.values[index].capabilities()
        let frames: [NetworkFrame]?
        if let cached = delivery.resolved.first(where: { $0.0 == capabilities }) {
            frames = cached.1
        } else {
            frames = SoftwareOffload.resolve(frame, for: capabilities)
            delivery.resolved.append((capabilities, frames))
        }
        guard let frames else {
            ports.values[index].counters.countDrop(.offloadFailed)
            return
        }
        if takesDirectly {
            for item in frames {
                ports.values[index].countOut(item)
                direct?.append(item, for: target)
            }
            return
        }
        direct?.queuedElsewhere = true
        var wasWoken = false
        for item in frames where ports.values[index].enqueue(item, from: delivery.source) { wasWoken = true }
        if wasWoken { delivery.woken.append(target) }
    }

    /// Queues frames a direct write could not take (the endpoint would block) on `target`, behind
    /// what is queued already.
    /// - Returns: whether the queue went from empty to non-empty.
    public mutating func enqueue(_ frames: [NetworkFrame], for target: SwitchPortID, from source: SwitchPortID) -> Bool {
        guard let index = ports.index(forKey: target) else { return false }
        let wasEmpty = ports.values[index].queuedFrames == 0
        // Already counted as sent when they were handed out for the direct write.
        for frame in frames {
            ports.values[index].counters.framesOut -= 1
            ports.values[index].counters.bytesOut -= UInt64(frame.bytes.count)
        }
        ports.values[index].enqueue(frames, from: source)
        return wasEmpty && ports.values[index].queuedFrames > 0
    }

    /// The owner of `id` has written (or dropped) what it took from the queue: direct writes
    /// may go to the port again.
    public mutating func finishedWriting(_ id: SwitchPortID) {
        guard let index = ports.index(forKey: id) else { return }
        ports.values[index].ownerWriting = false
    }

    /// Takes up to `limit` frames queued for `id`, oldest first. For a port that takes direct
    /// writes, its owner then writes them and says so (`finishedWriting`).
    public mutating func dequeue(_ id: SwitchPortID, limit: Int = .max) -> [NetworkFrame] {
        var woken: [SwitchHoldWaiter] = []
        return dequeue(id, limit: limit, waking: &woken)
    }

    /// Takes up to `limit` frames queued for `id`, oldest first, and appends to `woken` the
    /// senders held for the port once its queue has drained to a quarter of its limits.
    public mutating func dequeue(_ id: SwitchPortID, limit: Int = .max, waking woken: inout [SwitchHoldWaiter]) -> [NetworkFrame] {
        guard let index = ports.index(forKey: id), ports.values[index].queuedFrames > 0 else { return [] }
        let frames = ports.values[index].dequeue(limit: limit)
        if ports.values[index].configuration.deliversDirectly { ports.values[index].ownerWriting = true }
        if ports.values[index].isDrainedForHolds {
            // Drained this far, the port's owner is taking frames: it holds senders again.
            ports.values[index].holdsSenders = true
            if !ports.values[index].waiters.isEmpty {
                let waiters = ports.values[index].waiters
                ports.values[index].waiters.removeAll()
                woken.append(contentsOf: released(waiters))
            }
        }
        return frames
    }

    // MARK: Holding senders

    /// The port whose queue would turn away `frame` from `source`, its share there full, and
    /// holds its senders instead, if any: the frame's one known destination, or any port it
    /// would be flooded to. A port holds senders while it is a child's, its owner drains it
    /// (`endHolds`), and none of its own senders is held; a sender with senders held for its
    /// own port is not held. So no two ports hold each other, and a hold never waits on a
    /// port whose owner is itself held.
    ///
    /// A sender that can wait (a NIC's channel worker, which then leaves its guest's ring
    /// unread) stops there rather than have the frame dropped: on a host whose processors the
    /// sending and the receiving guests share, frames switched only to be dropped took the
    /// processor time the receiver needed to take them (Docs/network.md, "Holding senders").
    public mutating func holdingPort(for frame: borrowing NetworkFrame, from source: SwitchPortID, now: UInt64) -> SwitchPortID? {
        guard childPorts > 1, let destination = MACAddress.destination(of: frame.bytes),
              let senderIndex = ports.index(forKey: source), ports.values[senderIndex].waiters.isEmpty else { return nil }
        // A tagged frame goes only where tags may: not from an untagged port (it is dropped
        // there), and not into one.
        let tagged = Self.carriesVLANTag(frame)
        if tagged, !ports.values[senderIndex].allowsVLANTags() { return nil }
        let (count, size) = Self.holdNeed(of: frame)
        if !destination.isGroup, let known = knownPort(of: destination, now: now) {
            guard known != source, let index = ports.index(forKey: known) else { return nil }
            return ports.values[index].holds(count: count, size: size, for: destination, tagged: tagged, from: source) ? known : nil
        }
        for target in portOrder where target != source {
            if let index = ports.index(forKey: target),
               ports.values[index].holds(count: count, size: size, for: destination, tagged: tagged, from: source) {
                return target
            }
        }
        return nil
    }

    /// The room a frame needs in a port's queue to go in without a hold: its bytes, and as many
    /// frames as a guest's port takes it cut into (segments need room for all of them). A frame
    /// `SoftwareOffload` would not cut (an MSS below its smallest, more than its most segments)
    /// is dropped there, so it needs no more than that: a guest's MSS of 1 would otherwise ask
    /// for more room than any sender's share and be held on an empty queue.
    public static func holdNeed(of frame: borrowing NetworkFrame) -> (count: Int, size: Int) {
        let size = frame.bytes.count
        guard let request = frame.offload.segmentation, request.maximumSegmentSize >= SoftwareOffload.minimumSegmentSize
        else { return (1, size) }
        return (min(size / request.maximumSegmentSize + 1, SoftwareOffload.maximumSegments), size)
    }

    /// Holds `waiter`, a sender on port `sender`, until port `id` has drained (`dequeue`), its
    /// hold runs out (`endHolds`) or it is removed. A waiter is held once however often it
    /// asks; each new hold is counted on the sender's port (`sendsHeld`).
    public mutating func hold(_ waiter: SwitchHoldWaiter, on id: SwitchPortID, for sender: SwitchPortID) {
        guard let index = ports.index(forKey: id),
              !ports.values[index].waiters.contains(where: { $0.waiter.id == waiter.id }) else { return }
        ports.values[index].waiters.append((waiter, sender))
        if let senderIndex = ports.index(forKey: sender) {
            ports.values[senderIndex].counters.sendsHeld += 1
            ports.values[senderIndex].sendersHeld += 1
        }
    }

    /// Takes `waiter`, a sender on port `sender`, off every port's list without waking it: it
    /// sends again, so whatever hold it had has ended for it (a wake that came late, after it
    /// had been held elsewhere, must not leave it registered there). Costs nothing for a sender
    /// that is held nowhere.
    public mutating func cancelHolds(of waiter: ObjectIdentifier, sender: SwitchPortID) {
        guard let senderIndex = ports.index(forKey: sender), ports.values[senderIndex].sendersHeld > 0 else { return }
        for index in ports.values.indices {
            guard let position = ports.values[index].waiters.firstIndex(where: { $0.waiter.id == waiter }) else { continue }
            let entry = ports.values[index].waiters.remove(at: position)
            _ = released([entry])
        }
    }

    /// Takes `waiter` off port `id`'s list without waking it: its channel closed while held.
    public mutating func cancelHold(_ waiter: ObjectIdentifier, on id: SwitchPortID) {
        guard let index = ports.index(forKey: id),
              let position = ports.values[index].waiters.firstIndex(where: { $0.waiter.id == waiter }) else { return }
        let entry = ports.values[index].waiters.remove(at: position)
        _ = released([entry])
    }

    /// Waiters whose holds end, each counted off its sender's port.
    private mutating func released(_ entries: [(waiter: SwitchHoldWaiter, sender: SwitchPortID)]) -> [SwitchHoldWaiter] {
        for entry in entries {
            if let index = ports.index(forKey: entry.sender) { ports.values[index].sendersHeld -= 1 }
        }
        return entries.map(\.waiter)
    }

    /// A hold on port `id` ran out: its owner did not drain its queue in time (a guest that
    /// stopped taking frames). The port holds no sender again until its owner has drained its
    /// queue to a quarter of its limits, so a port costs each sender at most one hold in vain
    /// for every three quarters of a queue it takes, and meanwhile frames for it are dropped at
    /// its full queue as before.
    ///
    /// With `sender`, the sender whose hold ran out, and `need`, the room its held frame needs
    /// (`holdNeed`), every other port on which the sender's own share has not that room stops
    /// holding too: a guest with several NICs on the switch (up to a partition's limit) that
    /// drains none of them would otherwise cost the sender one hold in vain for each, in turn.
    /// - Returns: the senders held for the port, to be woken (they go on, dropping).
    public mutating func endHolds(on id: SwitchPortID, sender: SwitchPortID? = nil,
                                  need: (count: Int, size: Int) = (1, 0)) -> [SwitchHoldWaiter] {
        guard let index = ports.index(forKey: id) else { return [] }
        if ports.values[index].holdsSenders {
            ports.values[index].holdsSenders = false
            ports.values[index].counters.holdsTimedOut += 1
        }
        if let sender {
            for other in ports.values.indices where other != index && ports.values[other].holdsSenders
                && ports.values[other].configuration.kind == .child
                && !ports.values[other].fitsShare(count: need.count, size: need.size, from: sender) {
                ports.values[other].holdsSenders = false
                ports.values[other].counters.holdsTimedOut += 1
            }
        }
        let waiters = ports.values[index].waiters
        ports.values[index].waiters.removeAll()
        return released(waiters)
    }

    /// Puts frames a port could not take yet back at the head of its queue (a guest whose
    /// receive buffer is full), so order is kept.
    public mutating func requeue(_ frames: [NetworkFrame], for id: SwitchPortID) {
        guard let index = ports.index(forKey: id), !frames.isEmpty else { return }
        ports.values[index].requeue(frames)
    }
}

extension SwitchCore.Port {
    mutating func dequeue(limit: Int) -> [NetworkFrame] {
        var frames: [NetworkFrame] = []
        frames.reserveCapacity(min(limit, queuedFrames))
        while frames.count < limit, let item = queue.removeFirst() {
            queuedBytes -= item.frame.bytes.count
            countQueued(from: item.source, -1, bytes: -item.frame.bytes.count)
            frames.append(item.frame)
        }
        return frames
    }

    mutating func requeue(_ frames: [NetworkFrame]) {
        for frame in frames.reversed() { queue.prepend(SwitchCore.Queued(frame: frame, source: SwitchCore.requeuedSource)) }
        let bytes = frames.reduce(0) { $0 + $1.bytes.count }
        queuedBytes += bytes
        countQueued(from: SwitchCore.requeuedSource, frames.count, bytes: bytes)
    }
}

/// The addresses child ports own, each with its port, and the last two addresses looked up
/// with what was found. A stream to a child that only receives (the table never learns its
/// address) looks its destination up here twice a frame, and a stream from the host or uplink
/// its source and its destination; the remembered answers spare hashing them each time (about a
/// sixteenth of the sending worker's time guest → guest at 64-byte frames).
struct PinnedAddresses {
    private var owners: [MACAddress: SwitchPortID] = [:]
    private var last: (address: MACAddress, owner: SwitchPortID?)?
    private var previous: (address: MACAddress, owner: SwitchPortID?)?

    var isEmpty: Bool { owners.isEmpty }

    /// The port that owns `address`, if any.
    mutating func owner(of address: MACAddress) -> SwitchPortID? {
        if let last, last.address == address { return last.owner }
        if let previous, previous.address == address { return previous.owner }
        let owner = owners[address]
        previous = last
        last = (address, owner)
        return owner
    }

    /// Gives `address` to `owner`, or to no port.
    mutating func set(_ address: MACAddress, owner: SwitchPortID?) {
        owners[address] = owner
        last = nil
        previous = nil
    }

    func addresses(ownedBy port: SwitchPortID) -> [MACAddress] {
        owners.compactMap { $0.value == port ? $0.key : nil }
    }
}
