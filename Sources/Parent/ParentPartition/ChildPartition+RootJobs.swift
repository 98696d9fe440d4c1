import Synchronization

/// The root's jobs for one partition on one connection: the messages that run on the
/// partition's control thread (guest messages, port accesses, shutdown and device requests).
/// The root sends at most a window of them ahead of the parent's acknowledgements, so the
/// control queue never fills from them and the reader thread never drops or waits.
struct RootJobs: Sendable {
    /// Jobs received (on the reader thread).
    var received: UInt64 = 0
    /// Jobs completed (on the control thread, or at once when refused).
    var completed: UInt64 = 0
    /// The highest guest message number among the completed jobs.
    var sequence: UInt64 = 0
}

extension ChildPartition {
    /// Runs `job`, one of the root's jobs, on the control thread and acknowledges it when done;
    /// `sequence` is the number of the guest message it handles (0: not a guest message).
    /// A job the control queue refuses is acknowledged at once, as dropped.
    /// - Returns: whether it was queued.
    @discardableResult
    func performRootJob(sequence: UInt64 = 0, _ job: @escaping @Sendable () -> Void) -> Bool {
        rootJobs.withLock { $0.received += 1 }
        let queued = perform { [self] in
            job()
            completeRootJob(sequence: sequence)
        }
        if !queued { completeRootJob(sequence: sequence) }
        return queued
    }

    /// Counts a root job done and tells the root (an acknowledgement not sent yet is replaced).
    func completeRootJob(sequence: UInt64) {
        let (jobs, highest) = rootJobs.withLock { jobs -> (UInt64, UInt64) in
            jobs.completed += 1
            jobs.sequence = max(jobs.sequence, sequence)
            return (jobs.completed, jobs.sequence)
        }
        root.acknowledge(partitionID: id, jobs: jobs, sequence: highest)
    }
}
