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
    /// The I/O port ranges it decodes (an IDE channel has its command block and, apart, its
    /// control port).
    var ports: [Range<UInt16>] { get }
    /// Registers what it needs from the partition (port intercepts, interrupt lines).
    func attach()
    /// A guest write of `size` bytes.
    func portWrite(port: UInt16, size: Int, value: UInt32)
    /// A guest read of `size` bytes; the guest processor waits for the answer.
    func portRead(port: UInt16, size: Int) -> UInt32
    /// A string IN (REP INSB/INSW/INSD) of `count` elements of `size` bytes, as one exit delivers
    /// it; the guest processor waits for the bytes. By default one `portRead` per element.
    func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8]
    /// A string OUT (REP OUTSB/OUTSW/OUTSD) of `bytes`, whole elements of `size` bytes. By default
    /// one `portWrite` per element.
    func portWriteString(port: UInt16, size: Int, bytes: [UInt8])
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

extension EmulatedDevice {
    public func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(max(0, count) * size)
        for _ in 0..<max(0, count) {
            let value = portRead(port: port, size: size)
            for shift in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * shift))) }
        }
        return bytes
    }

    public func portWriteString(port: UInt16, size: Int, bytes: [UInt8]) {
        var offset = 0
        while size > 0, offset + size <= bytes.count {
            var value: UInt32 = 0
            for shift in 0..<size { value |= UInt32(bytes[offset + shift]) << (8 * shift) }
            portWrite(port: port, size: size, value: value)
            offset += size
        }
    }
}

/// A device that can ask the guest to shut down (`hv partition shutdown`).
public protocol GuestShutdownProvider: Sendable {
    /// Asks the guest for an orderly power-off.
    func requestGuestShutdown()
}
