import LinuxSupport
import ManagementAPI
import Partition
import Synchronization

/// A partition as the root scheduler tracks it: the running object, its configuration, and
/// what the parent partition reports about it.
final class ManagedPartition: Sendable {
    let partition: Partition
    let configuration: PartitionConfiguration
    private let facts = Mutex<[String: String]>([:])

    init(partition: Partition, configuration: PartitionConfiguration) {
        self.partition = partition
        self.configuration = configuration
    }

    func merge(facts new: [String: String]) {
        facts.withLock { $0.merge(new) { _, latest in latest } }
    }

    var info: PartitionInfo {
        let state = partition.state
        let uptime = Double(MonotonicClock.nanoseconds() - partition.createdAt) / 1e9
        return PartitionInfo(id: partition.id, name: partition.name, state: state.name, reason: state.reason,
                             processors: partition.processorCount, memoryMiB: partition.memorySize >> 20,
                             devices: configuration.devices, uptimeSeconds: uptime, status: facts.withLock { $0 })
    }
}
