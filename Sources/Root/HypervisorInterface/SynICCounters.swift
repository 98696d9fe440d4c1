import Synchronization

/// The SynIC traffic of one partition that passes through the root: what the guest posts and
/// signals through exits, and what is written into its message slots. It outlives the
/// partition's `HvPartition`, so a stopped partition still reports it.
public final class SynICCounters: Sendable {
    let messagesPosted = Atomic<UInt64>(0)
    let eventsSignalled = Atomic<UInt64>(0)
    let hypercalls = Atomic<UInt64>(0)
    let messagesDelivered = Atomic<UInt64>(0)

    init() {}

    /// HvPostMessage calls accepted for delivery.
    public var postedMessages: UInt64 { messagesPosted.load(ordering: .relaxed) }
    /// HvSignalEvent calls that reached the root and signalled a connection.
    public var signalledEvents: UInt64 { eventsSignalled.load(ordering: .relaxed) }
    /// Messages written into the guest's message slots, over every processor.
    public var deliveredMessages: UInt64 { messagesDelivered.load(ordering: .relaxed) }
    /// Slow-path hypercalls of every kind.
    public var slowHypercalls: UInt64 { hypercalls.load(ordering: .relaxed) }
}
