import DeviceModel
import LinuxSupport
import VMBusHost
import VMBusProtocol

/// A device type the parent partition can build for a partition: its `DeviceType`
/// description plus the factory. Each device's folder declares one (or a few) of these, and
/// `DeviceRegistry` lists them.
public protocol ParentDevice: DeviceType {
    /// Builds the device for one partition, from settings the root already checked and the host
    /// resources it asked for (`resources(for:)`), which the root opened, in the same order.
    static func make(_ settings: Settings, instance: GUID, resources: [OwnedDescriptor],
                     context: any DeviceContext) throws(DeviceError) -> DeviceInstance

    /// Applies new settings to `device`, which `make` built, while the partition runs (only for
    /// types that are `changeableWhileRunning`), with the resources those settings need.
    static func change(_ device: DeviceInstance, to settings: Settings, resources: [OwnedDescriptor],
                       context: any DeviceContext) throws(DeviceError)
}

extension ParentDevice {
    public static func change(_ device: DeviceInstance, to settings: Settings, resources: [OwnedDescriptor],
                              context: any DeviceContext) throws(DeviceError) {
        throw .notWhileRunning(kind: kind, change: "changed")
    }
}

/// A device built for one partition.
public enum DeviceInstance: Sendable {
    /// A synthetic device: the parent offers a VMBus channel and serves it with this provider.
    case vmbus(any VirtualServiceProvider)
    /// An emulated legacy device on I/O ports.
    case emulated(any EmulatedDevice)
}

/// An emulated legacy device: the guest's accesses to `ports` reach it through the root's port
/// intercepts. Accesses arrive on the parent's control thread, one at a time.
public protocol EmulatedDevice: Sendable {
    /// The I/O ports it decodes.
    var ports: Range<UInt16> { get }
    /// Registers what it needs from the partition (port intercepts, interrupt lines).
    func attach()
    /// A guest write of `size` bytes.
    func portWrite(port: UInt16, size: Int, value: UInt32)
    /// A guest read of `size` bytes; the guest processor waits for the answer.
    func portRead(port: UInt16, size: Int) -> UInt32
    /// The partition stopped or the parent is detaching: release threads and registrations.
    func stop()
    /// What the device keeps across a parent restart, saved whenever it changes (`nil`, the
    /// default: nothing; it starts afresh under the next parent).
    var savedState: [UInt8]? { get }
    /// Takes back what `savedState` gave under an earlier parent, before `attach`.
    func restore(_ state: [UInt8])
}

extension EmulatedDevice {
    public var savedState: [UInt8]? { nil }
    public func restore(_ state: [UInt8]) {}
}

/// A device that can ask the guest to shut down (`hv partition shutdown`).
public protocol GuestShutdownProvider: Sendable {
    /// Asks the guest for an orderly power-off.
    func requestGuestShutdown()
}
