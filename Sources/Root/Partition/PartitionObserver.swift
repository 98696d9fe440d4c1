import HypervisorInterface

/// Receives what a partition reports. Calls come from virtual-processor threads and must
/// return quickly without calling back into the partition synchronously.
public protocol PartitionObserver: AnyObject, Sendable {
    /// The partition's state changed.
    func partition(_ partition: Partition, didChangeState state: PartitionState)
    /// A virtual processor stopped for good (crash or guest power-off); the observer must call
    /// `Partition.finishStopping()` from another thread to release the partition.
    func partitionNeedsTeardown(_ partition: Partition)
    /// The guest wrote a line to the debug port (or, for Linux, the console).
    func partition(_ partition: Partition, consoleLine line: String)
    /// Processor `vp`'s SynIC pages changed.
    func partition(_ partition: Partition, processor vp: UInt32, synicPagesChanged pages: SynICPages)
    /// Virtual processor `vp` is about to enter the guest for the first time, on its own thread.
    func partition(_ partition: Partition, processor vp: Int, startedOnThread threadID: Int32)
}

extension PartitionObserver {
    /// Virtual processor `vp` of `partition` is about to enter the guest for the first time, on
    /// the thread with kernel id `threadID` (the call is made on that thread, so whatever is
    /// done here, such as placing the thread in a control group, precedes the guest's code).
    public func partition(_ partition: Partition, processor vp: Int, startedOnThread threadID: Int32) {}
}
