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
    public let name: String
    public let kind: SwitchKind

    public init(name: String, kind: SwitchKind, tableCapacity: Int = SwitchCore.defaultTableCapacity,
                agingNanoseconds: UInt64 = SwitchCore.defaultAgingNanoseconds) {
        self.name = name
        self.kind = kind
        core = Mutex(SwitchCore(name: name, kind: kind, tableCapacity: tableCapacity, agingNanoseconds: agingNanoseconds))
    }

    /// Adds a port.
    /// - Returns: its ID and the eventfd signalled when frames wait for it.
    public func addPort(_ configuration: SwitchPortConfiguration) throws(SystemError) -> (id: SwitchPortID, ready: EventFD) {
        let event = try EventFD()
        let id = core.withLock { $0.addPort(configuration) }
        notifiers.withLock { $0[id] = event }
        return (id, event)
    }

    public func removePort(_ id: SwitchPortID) {
        core.withLock { $0.removePort(id) }
        notifiers.withLock { $0[id] = nil }
    }

    /// Switches frames port `source` sent, in order.
    public func send(_ frames: [NetworkFrame], from source: SwitchPortID) {
        let now = MonotonicClock.nanoseconds()
        let woken = core.withLock { core -> Set<SwitchPortID> in
            var woken = Set<SwitchPortID>()
            for frame in frames { woken.formUnion(core.forward(frame, from: source, now: now)) }
            return woken
        }
        guard !woken.isEmpty else { return }
        let events = notifiers.withLock { table in woken.compactMap { table[$0] } }
        for event in events { event.signal() }
    }

    /// Takes up to `limit` frames waiting for `port`.
    public func receive(for port: SwitchPortID, limit: Int = 64) -> [NetworkFrame] {
        core.withLock { $0.dequeue(port, limit: limit) }
    }

    /// Gives frames back to the head of `port`'s queue (the port could not take them yet).
    public func requeue(_ frames: [NetworkFrame], for port: SwitchPortID) {
        core.withLock { $0.requeue(frames, for: port) }
    }

    public func setPacketFilter(_ filter: PacketFilter, for port: SwitchPortID) {
        core.withLock { $0.setPacketFilter(filter, for: port) }
    }

    public func setMACAddress(_ address: MACAddress, for port: SwitchPortID) {
        core.withLock { $0.setMACAddress(address, for: port) }
    }

    public func counters(of port: SwitchPortID) -> SwitchPortCounters? {
        core.withLock { $0.counters(of: port) }
    }

    public func queuedFrames(for port: SwitchPortID) -> Int {
        core.withLock { $0.queuedFrames(for: port) }
    }
}
