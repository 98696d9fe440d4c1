import HyperV
import LinuxSupport

/// What a VSP may ask of the partition it serves, so device modules never depend on the
/// parent partition's internals.
public protocol VSPHost: Sendable {
    /// The partition's name, for logs and facts.
    var partitionName: String { get }
    var processorCount: UInt32 { get }
    /// Raises `sint` on processor `vp` (its doorbell) without touching event flags.
    func raise(vp: UInt32, sint: UInt8)
    /// Makes HvSignalEvent on `connection` signal `event` (an ioeventfd in the root's VM).
    func registerEventConnection(_ connection: ConnectionID, event: EventFD)
    func unregisterEventConnection(_ connection: ConnectionID)
    /// Publishes facts the root shows users (`hv partition show`).
    func report(_ facts: [String: String])
    /// Partition reference time now (100 ns units), the clock behind TIME_REF_COUNT.
    func referenceTime() -> UInt64
}
