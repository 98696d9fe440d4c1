import DeviceModel
import Foundation
import LinuxSupport
import Logging
import ManagementAPI
import Partition
import Synchronization

/// A partition as the root scheduler tracks it: the running object, its configuration, and
/// what the parent partition reports about it.
final class ManagedPartition: Sendable {
    let partition: Partition
    let configuration: PartitionConfiguration
    /// The partition's devices as the parent gets them, each with its host resources opened;
    /// devices come and go while it runs.
    let attached: Mutex<[AttachedDevice]>
    private let facts = Mutex<BoundedFacts>(BoundedFacts())
    /// Its control group's CPU usage when the group was removed (the partition stopped).
    private let finalUsage = Mutex<UInt64?>(nil)
    /// Which console lines reach the root's log.
    let consoleLog = ConsoleLogGate()
    private let logger: Logger

    /// A device of the partition: its resolved spec and its opened host resources, in order.
    struct AttachedDevice: Sendable {
        var spec: DeviceSpec
        var resources: [OwnedDescriptor]
    }

    init(partition: Partition, configuration: PartitionConfiguration, devices: [AttachedDevice], logger: Logger) {
        self.partition = partition
        self.configuration = configuration
        attached = Mutex(devices)
        self.logger = logger
    }

    /// The devices, in order.
    var devices: [DeviceSpec] { attached.withLock { $0.map(\.spec) } }

    /// Every device's host resources, device by device (what the parent receives with the partition).
    var resources: [OwnedDescriptor] { attached.withLock { $0.flatMap(\.resources) } }

    /// Both under one lock.
    var devicesAndResources: (devices: [DeviceSpec], resources: [OwnedDescriptor]) {
        attached.withLock { ($0.map(\.spec), $0.flatMap(\.resources)) }
    }

    /// Merges facts the parent reported, within `BoundedFacts`' limits; the first refusal is logged.
    func merge(facts new: [String: String]) {
        let (dropped, first) = facts.withLock { table -> (Int, Bool) in
            let before = table.dropped
            let dropped = table.merge(new)
            return (dropped, before == 0 && dropped > 0)
        }
        if first {
            logger.warning("""
                partition \(partition.name): the parent partition reported more than \(BoundedFacts.capacity) facts; \
                \(dropped) dropped (and later new ones)
                """)
        }
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
                             devices: devices.map { DeviceSummary(kind: $0.kind, instance: $0.instance.description,
                                                                  settings: try? JSONDecoder().decode(JSONValue.self, from: Data($0.settings))) },
                             uptimeSeconds: uptime, status: facts.withLock { $0.facts })
    }
}

/// A partition's `LogRateLimit`, shared by the threads that log its console lines.
final class ConsoleLogGate: Sendable {
    private let limit = Mutex(LogRateLimit())

    /// The lines of `lines` to log now (see `LogRateLimit.admit`).
    func admit(_ lines: [String]) -> [String] {
        limit.withLock { $0.admit(lines) }
    }
}
