import DeviceModel
import GuestMemory
import HyperV
import HypervisorInterface
import LinuxSupport
import Logging
import ManagementAPI
import Partition

/// What the parent link needs of the root's partition table. The root scheduler is the one
/// real directory; tests give the link one of partitions without KVM behind them.
protocol PartitionDirectory: AnyObject, Sendable {
    var logger: Logger { get }
    /// The partitions that are running or paused, oldest first: a parent that connects is handed each.
    var linkedPartitions: [any LinkedPartition] { get }
    /// The partition with the root-assigned `id`, while it is in the table.
    func linkedPartition(id: UInt32) -> (any LinkedPartition)?
    /// The virtual switches a parent that connects is handed, before the partitions.
    var linkedSwitches: [ManagedSwitch] { get }
    /// A parent partition (process `processID`) connected and said hello.
    func parentConnected(processID: Int32)
}

extension PartitionDirectory {
    var linkedSwitches: [ManagedSwitch] { [] }
    func parentConnected(processID: Int32) {}
}

/// What the parent link needs of one partition: what to hand the parent, and the registrations
/// the parent makes in it.
protocol LinkedPartition: Sendable {
    var id: UInt32 { get }
    var name: String { get }
    var processorCount: Int { get }
    /// The devices the parent builds for it.
    var devices: [DeviceSpec] { get }
    /// The devices' host resources, opened, in order (`DeviceSpec.resources`).
    var resources: [OwnedDescriptor] { get }
    /// The devices and their resources from one moment, so a device added or removed meanwhile
    /// cannot shift one device's files onto another.
    var devicesAndResources: (devices: [DeviceSpec], resources: [OwnedDescriptor]) { get }
    /// Its RAM, a memfd the parent maps; nil once it has stopped.
    var memory: GuestMemory? { get }
    /// Its Hyper-V interface (message connections, SynIC pages, reference time); nil once stopped.
    var hypervisor: HvPartition? { get }
    /// Makes HvSignalEvent on `connection` signal `event`, the parent's: a signal the root
    /// writes itself goes through `relay`.
    func registerEventConnection(_ connection: ConnectionID, event: EventFD, relay: any HvEventRelay) throws(PartitionError)
    func unregisterEventConnection(_ connection: ConnectionID, event: EventFD)
    /// The eventfd that raises `sint` on processor `vp`.
    func doorbell(vp: UInt32, sint: Int) throws(PartitionError) -> EventFD
    /// An eventfd that raises IOAPIC pin `pin`.
    func interruptLine(pin: UInt32) throws(PartitionError) -> EventFD
    /// Sends the guest's accesses to the ports in `range` to the parent.
    func interceptPorts(_ range: Range<UInt16>, with forwarder: ParentPortForwarder) throws(PartitionError)
    func removePortIntercepts()
    /// Appends what the guest wrote to its console; returns the lines completed that may go to
    /// the root's log (at a bounded rate).
    func appendConsole(_ bytes: [UInt8]) -> [String]
    /// Merges facts the parent reported about the partition.
    func merge(facts: [String: String])
}

extension RootScheduler: PartitionDirectory {
    var linkedPartitions: [any LinkedPartition] { livePartitions }

    func linkedPartition(id: UInt32) -> (any LinkedPartition)? { managed(id: id) }

    func parentConnected(processID: Int32) { processors.parentConnected(processID: processID) }
}

extension LinkedPartition {
    var devicesAndResources: (devices: [DeviceSpec], resources: [OwnedDescriptor]) { (devices, resources) }
}

extension ManagedPartition: LinkedPartition {
    var id: UInt32 { partition.id }
    var name: String { partition.name }
    var processorCount: Int { partition.processorCount }
    var memory: GuestMemory? { partition.memory }
    var hypervisor: HvPartition? { partition.hypervisor }

    func registerEventConnection(_ connection: ConnectionID, event: EventFD, relay: any HvEventRelay) throws(PartitionError) {
        try partition.registerEventConnection(connection, event: event, relay: relay)
    }

    func unregisterEventConnection(_ connection: ConnectionID, event: EventFD) {
        partition.unregisterEventConnection(connection, event: event)
    }

    func doorbell(vp: UInt32, sint: Int) throws(PartitionError) -> EventFD {
        try partition.doorbell(vp: vp, sint: sint)
    }

    func interruptLine(pin: UInt32) throws(PartitionError) -> EventFD {
        try partition.interruptLine(pin: pin)
    }

    func interceptPorts(_ range: Range<UInt16>, with forwarder: ParentPortForwarder) throws(PartitionError) {
        try partition.interceptPorts(range, with: forwarder)
    }

    func removePortIntercepts() {
        partition.removePortIntercepts()
    }

    func appendConsole(_ bytes: [UInt8]) -> [String] {
        consoleLog.admit(partition.console.append(bytes: bytes))
    }
}
