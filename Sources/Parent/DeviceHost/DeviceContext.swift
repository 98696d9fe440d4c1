import GuestMemory
import LinuxSupport
import Logging
import VMBusHost

/// What a device may ask of the partition it serves (the parent's `ChildPartition`
/// implements it), so device modules never depend on the parent partition's internals.
public protocol DeviceContext: VSPHost {
    /// For logs.
    var logger: Logger { get }
    /// The partition's RAM, for devices whose data moves through guest pages (GPA-direct
    /// ranges, GPADL buffers): every access is bounds-checked there.
    var memory: GuestMemory { get }
    /// Routes the guest's accesses to `ports` to this partition's emulated devices, at most
    /// `accessesPerSecond` of them (0: the root's default pace, a little faster than a
    /// 115200-baud UART; a device that moves data through its ports, such as a disk's data
    /// register, asks for more; the root caps it, Docs/security.md).
    func interceptPorts(_ ports: Range<UInt16>, accessesPerSecond: UInt32)
    /// Asks for an eventfd that raises IOAPIC pin `pin`; `completion` runs with it (or `nil`
    /// if the root refused) on the parent's control thread.
    func requestInterruptLine(pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void)
    /// Appends bytes to the partition's console log (what `hv partition console` shows).
    func consoleOutput(_ bytes: [UInt8])
    /// A back end the parent shares among its children (e.g. its `SwitchDirectory`), or `nil`.
    func sharedBackend<Backend: Sendable>(_ type: Backend.Type) -> Backend?
}

extension DeviceContext {
    /// Routes `ports` at the root's default pace.
    public func interceptPorts(_ ports: Range<UInt16>) { interceptPorts(ports, accessesPerSecond: 0) }

    public func sharedBackend<Backend: Sendable>(_ type: Backend.Type) -> Backend? { nil }
}
