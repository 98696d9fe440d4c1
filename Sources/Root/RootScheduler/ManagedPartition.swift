import DeviceModel
import LinuxSupport
import ManagementAPI
import Partition
import Synchronization

/// A partition as the root scheduler tracks it: the running object, its configuration, and
/// what the parent partition reports about it.
final class ManagedPartition: Sendable {
    let partition: Partition
    let configuration: PartitionConfiguration
    /// The devices resolved from the configuration, as the parent gets them.
    let devices: [DeviceSpec]
    /// The host resources of the devices, opened, in the devices' order; the parent gets them
    /// with the partition (again after each reconnection).
    let resources: [OwnedDescriptor]
    private let facts = Mutex<[String: String]>([:])
    /// Its control group's CPU usage when the group was removed (the partition stopped).
    private let finalUsage = Mutex<UInt64?>(nil)

    init(partition: Partition, configuration: PartitionConfiguration, devices: [DeviceSpec], resources: [OwnedDescriptor]) {
        self.partition = partition
        self.configuration = configuration
        self.devices = devices
        self.resources = resources
    }

    func merge(facts new: [String: String]) {
        facts.withLock { $0.merge(new) { _, latest in latest } }
    }

    func recordFinalUsage(_ nanoseconds: UInt64?) {
        finalUsage.withLock { $0 = nanoseconds }
    }

    /// Its control group's CPU usage as the group was removed, once it has stopped.
    var finalCPUUsage: UInt64? { finalUsage.withLock { $0 } }

    var info: PartitionInfo {
        let state = partition.state
        let uptime = Double(MonotonicClock.nanoseconds() - partition.createdAt) / 1e9
        return PartitionInfo(id: partition.id, name: partition.name, state: state.name, reason: state.reason,
                             processors: partition.processorCount, memoryMiB: partition.memorySize >> 20,
                             devices: devices.map { DeviceSummary(kind: $0.kind, instance: $0.instance.description) },
                             uptimeSeconds: uptime, status: facts.withLock { $0 })
    }
}
