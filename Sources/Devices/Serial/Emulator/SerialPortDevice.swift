import DeviceHost
import DeviceModel
import LinuxSupport
import Synchronization
import VMBusProtocol

/// COM1 as a partition's device: a 16550 UART at 0x3F8 (IRQ 4) whose output becomes the
/// partition's console log. Linux partitions get one even when their configuration does not
/// name it, because their console is `ttyS0`.
public enum SerialPortDevice: ParentDevice {
    public typealias Settings = NoSettings
    public static let kind = "com1"
    public static let summary = "COM1 16550 UART (emulated; its output is the partition's console)"
    public static let bus = DeviceBus.emulated

    public static func make(_ settings: NoSettings, instance: GUID, resources: [OwnedDescriptor],
                            context: any DeviceContext) throws(DeviceError)
        -> DeviceInstance
    {
        .emulated(SerialPort(context: context))
    }
}

/// The UART wired to its partition: the root forwards the guest's port accesses here, and the
/// UART's interrupt becomes IRQ 4 edges through an irqfd on an IOAPIC route, so the root stays
/// free of device code.
final class SerialPort: EmulatedDevice {
    let context: any DeviceContext
    private let uart = Mutex(UARTState())
    private let irq = Mutex<EventFD?>(nil)

    struct UARTState {
        var device = Serial16550()
        var edges: UInt64 = 0
    }

    init(context: any DeviceContext) {
        self.context = context
    }

    var ports: [Range<UInt16>] { [Serial16550.com1Port..<(Serial16550.com1Port + 8)] }

    func attach() {
        context.requestInterruptLine(pin: UInt8(Serial16550.com1IRQ)) { [self] event in
            irq.withLock { $0 = event }
            // An interrupt the restored configuration raised before the line was there.
            if uart.withLock({ $0.device.interruptPending }) { event?.signal() }
        }
        for range in ports { context.interceptPorts(range) }
    }

    /// The configuration the guest programmed, kept across a parent restart.
    var savedState: [UInt8]? { uart.withLock { $0.device.configuration } }

    func restore(_ state: [UInt8]) {
        uart.withLock { uart in
            if uart.device.restore(configuration: state) { uart.edges = uart.device.interruptRisingEdges }
        }
    }

    func portWrite(port: UInt16, size: Int, value: UInt32) {
        access { $0.write(offset: port - Serial16550.com1Port, value: UInt8(truncatingIfNeeded: value)) }
    }

    func portRead(port: UInt16, size: Int) -> UInt32 {
        UInt32(access { $0.read(offset: port - Serial16550.com1Port) })
    }

    /// Runs one register access, then ships any transmitted bytes to the console log and turns
    /// new rising edges of the UART's interrupt into IRQ 4 edges.
    private func access<T>(_ body: (inout Serial16550) -> T) -> T {
        let (result, output, edge) = uart.withLock { state -> (T, [UInt8], Bool) in
            let result = body(&state.device)
            let edges = state.device.interruptRisingEdges
            defer { state.edges = edges }
            return (result, state.device.takeOutput(), edges != state.edges)
        }
        if !output.isEmpty { context.consoleOutput(output) }
        if edge { irq.withLock { $0 }?.signal() }
        return result
    }

    func stop() {}
}
