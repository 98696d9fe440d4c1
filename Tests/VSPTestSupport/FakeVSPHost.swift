import HyperV
import LinuxSupport
import Synchronization
import VMBusHost

/// The partition a VSP serves, as a test plays it: it records what the VSP asks of it (SINTs
/// raised, event connections registered, facts reported) instead of reaching a root.
public final class FakeVSPHost: VSPHost {
    public let partitionName: String
    public let processorCount: UInt32
    private let state = Mutex(State())

    struct State {
        var raised: [(vp: UInt32, sint: UInt8)] = []
        var eventConnections: [ConnectionID: EventFD] = [:]
        var facts: [String: String] = [:]
    }

    public init(partitionName: String = "fake", processorCount: UInt32 = 2) {
        self.partitionName = partitionName
        self.processorCount = processorCount
    }

    public func raise(vp: UInt32, sint: UInt8) {
        state.withLock { $0.raised.append((vp, sint)) }
    }

    public func registerEventConnection(_ connection: ConnectionID, event: EventFD) {
        state.withLock { $0.eventConnections[connection] = event }
    }

    public func unregisterEventConnection(_ connection: ConnectionID) {
        state.withLock { _ = $0.eventConnections.removeValue(forKey: connection) }
    }

    public func report(_ facts: [String: String]) {
        state.withLock { $0.facts.merge(facts) { _, new in new } }
    }

    /// The monotonic clock in 100 ns units (a partition's reference time counts from its creation;
    /// only differences matter to VSPs).
    public func referenceTime() -> UInt64 { MonotonicClock.nanoseconds() / 100 }

    // MARK: What the VSP did

    /// The SINTs raised so far, as (processor, SINT).
    public var raised: [(vp: UInt32, sint: UInt8)] { state.withLock { $0.raised } }
    /// The event connections registered now.
    public var eventConnections: [ConnectionID: EventFD] { state.withLock { $0.eventConnections } }
    /// Every fact reported so far (later reports of a key replace earlier ones).
    public var facts: [String: String] { state.withLock { $0.facts } }
}
