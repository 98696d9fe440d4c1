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

    private struct Port: Sendable {
        var configuration: SwitchPortConfiguration
        var counters = SwitchPortCounters()
        var queue: [Queued] = []
        var queueHead = 0
        var queuedBytes = 0
        /// Frames waiting, by the port that sent them (fair share, see `forward`).
        var queuedBySource: [SwitchPortID: Int] = [:]
        var queuedFrames: Int { queue.count - queueHead }
    }

    /// A frame waiting in a port's queue, with the port it came from.
    private struct Queued: Sendable {
        var frame: NetworkFrame
        var source: SwitchPortID
    }

    /// Frames given back with `requeue` count against no sender's share.
    private static let requeuedSource = SwitchPortID(0)

    private var ports: [SwitchPortID: Port] = [:]
    private var nextPort = 1
    private var table: MACTable

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
        ports[id] = Port(configuration: configuration)
        return id
    }

    /// Removes a port, its queue and what was learned on it.
    public mutating func removePort(_ id: SwitchPortID) {
        ports[id] = nil
        table.forget(port: id)
    }

    public var portIDs: [SwitchPortID] { ports.keys.sorted() }

    public func configuration(of id: SwitchPortID) -> SwitchPortConfiguration? { ports[id]?.configuration }

    public func counters(of id: SwitchPortID) -> SwitchPortCounters? { ports[id]?.counters }

    /// Frames waiting for `id`.
    public func queuedFrames(for id: SwitchPortID) -> Int { ports[id]?.queuedFrames ?? 0 }

    /// The child set its RNDIS packet filter.
    public mutating func setPacketFilter(_ filter: PacketFilter, for id: SwitchPortID) {
        ports[id]?.configuration.packetFilter = filter
    }

    /// The child changed its MAC address; what was learned for the old one is forgotten.
    public mutating func setMACAddress(_ address: MACAddress, for id: SwitchPortID) {
        ports[id]?.configuration.macAddress = address
        table.forget(port: id)
    }

    /// The multicast list of a MULTICAST filter.
    public mutating func setMulticastAddresses(_ addresses: Set<MACAddress>, for id: SwitchPortID) {
        ports[id]?.configuration.multicastAddresses = addresses
    }

    /// The port `address` was learned on, if the entry has not aged out.
    public func learnedPort(of address: MACAddress, now: UInt64) -> SwitchPortID? { table.port(of: address, now: now) }

    /// Learned addresses.
    public var learnedCount: Int { table.count }

    // MARK: Forwarding

    /// Switches one frame that port `source` sent.
    /// - Parameter now: monotonic time in nanoseconds, for learning and aging.
    /// - Returns: the ports whose queues went from empty to non-empty (their owners should be woken).
    public mutating func forward(_ frame: NetworkFrame, from source: SwitchPortID, now: UInt64) -> [SwitchPortID] {
        guard var sender = ports[source] else { return [] }
        sender.counters.framesIn += 1
        sender.counters.bytesIn += UInt64(frame.bytes.count)
        let limit = frame.offload.segmentation == nil ? sender.configuration.maximumFrameSize : 65535 + 14 + 4 + 40
        let drop: SwitchDropReason?
        if frame.bytes.count < NetworkFrame.ethernetHeaderSize {
            drop = .malformed
        } else if frame.bytes.count > limit {
            drop = .oversized
        } else if let sourceAddress = MACAddress.source(of: frame.bytes), sourceAddress.isGroup {
            drop = .malformed
        } else if sender.configuration.kind == .child, !sender.configuration.allowsMACSpoofing,
                  let own = sender.configuration.macAddress, MACAddress.source(of: frame.bytes) != own {
            drop = .spoofedSource
        } else {
            drop = nil
        }
        if let drop {
            sender.counters.drops[drop, default: 0] += 1
            ports[source] = sender
            return []
        }
        ports[source] = sender
        guard let destination = MACAddress.destination(of: frame.bytes), let sourceAddress = MACAddress.source(of: frame.bytes)
        else { return [] }
        table.learn(sourceAddress, on: source, now: now)

        let targets: [SwitchPortID]
        if !destination.isGroup, let known = table.port(of: destination, now: now) {
            targets = known == source ? [] : [known]
        } else {
            targets = ports.keys.filter { $0 != source }.sorted()
        }
        var woken: [SwitchPortID] = []
        // Offload work is done once per kind of destination, not once per port.
        var resolved: [SoftwareOffload.Capabilities: [NetworkFrame]?] = [:]
        for target in targets {
            guard var port = ports[target] else { continue }
            guard accepts(port.configuration, destination) else {
                port.counters.drops[.filtered, default: 0] += 1
                ports[target] = port
                continue
            }
            let capabilities = port.configuration.capabilities
            let frames: [NetworkFrame]?
            if let cached = resolved[capabilities] {
                frames = cached
            } else {
                frames = SoftwareOffload.resolve(frame, for: capabilities)
                resolved[capabilities] = frames
            }
            guard let frames else {
                port.counters.drops[.offloadFailed, default: 0] += 1
                ports[target] = port
                continue
            }
            let wasEmpty = port.queuedFrames == 0
            // One sender may fill at most half of a port's queue, so a port flooding the switch
            // leaves room for everyone else's frames to the same destination.
            let share = max(1, port.configuration.queueFrameLimit / 2)
            for item in frames {
                guard port.queuedFrames < port.configuration.queueFrameLimit,
                    port.queuedBytes + item.bytes.count <= port.configuration.queueByteLimit,
                    port.queuedBySource[source, default: 0] < share
                else {
                    port.counters.drops[.queueFull, default: 0] += 1
                    continue
                }
                port.queue.append(Queued(frame: item, source: source))
                port.queuedBySource[source, default: 0] += 1
                port.queuedBytes += item.bytes.count
                port.counters.framesOut += 1
                port.counters.bytesOut += UInt64(item.bytes.count)
            }
            if wasEmpty && port.queuedFrames > 0 { woken.append(target) }
            ports[target] = port
        }
        return woken
    }

    /// Whether a port's filter lets a frame for `destination` through (RNDIS semantics, Linux
    /// `rndis_filter.c` sets the bits; a filter of 0 delivers nothing).
    private func accepts(_ configuration: SwitchPortConfiguration, _ destination: MACAddress) -> Bool {
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

    /// Takes up to `limit` frames queued for `id`, oldest first.
    public mutating func dequeue(_ id: SwitchPortID, limit: Int = .max) -> [NetworkFrame] {
        guard var port = ports[id], port.queuedFrames > 0 else { return [] }
        let end = port.queueHead + min(limit, port.queuedFrames)
        var frames: [NetworkFrame] = []
        frames.reserveCapacity(end - port.queueHead)
        for item in port.queue[port.queueHead..<end] {
            frames.append(item.frame)
            port.queuedBytes -= item.frame.bytes.count
            if let count = port.queuedBySource[item.source] {
                port.queuedBySource[item.source] = count > 1 ? count - 1 : nil
            }
        }
        port.queueHead = end
        if port.queueHead == port.queue.count {
            port.queue.removeAll(keepingCapacity: true)
            port.queueHead = 0
        } else if port.queueHead > 256 {
            port.queue.removeFirst(port.queueHead)
            port.queueHead = 0
        }
        ports[id] = port
        return frames
    }

    /// Puts frames a port could not take yet back at the head of its queue (a guest whose
    /// receive buffer is full), so order is kept.
    public mutating func requeue(_ frames: [NetworkFrame], for id: SwitchPortID) {
        guard var port = ports[id], !frames.isEmpty else { return }
        let rest = Array(port.queue[port.queueHead...])
        port.queue = frames.map { Queued(frame: $0, source: Self.requeuedSource) } + rest
        port.queueHead = 0
        port.queuedBytes += frames.reduce(0) { $0 + $1.bytes.count }
        port.queuedBySource[Self.requeuedSource, default: 0] += frames.count
        ports[id] = port
    }
}
