import SerialEmulator
import LinuxSupport
import Synchronization

/// The legacy PC devices a Linux partition expects beside VMBus: a 16550 UART at COM1
/// (0x3F8, IRQ 4) whose output becomes the partition's console log. The root forwards the
/// guest's port accesses here and the UART raises IRQ 4 through an irqfd on an IOAPIC route,
/// so the root stays free of device code.
final class LegacyDevicesService: PartitionService {
    let partition: ChildPartition
    private let uart = Mutex(UARTState())
    private let irq = Mutex<EventFD?>(nil)

    struct UARTState {
        var device = Serial16550()
        var edges: UInt64 = 0
    }

    var ports: Range<UInt16> { Serial16550.com1Port..<(Serial16550.com1Port + 8) }

    init(partition: ChildPartition) {
        self.partition = partition
        partition.root.requestInterruptLine(partitionID: partition.id, pin: UInt8(Serial16550.com1IRQ)) { [self] event in
            self.irq.withLock { $0 = event }
        }
        partition.root.send(.registerPorts(partitionID: partition.id, base: Serial16550.com1Port, count: 8))
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
        if !output.isEmpty { partition.root.send(.consoleOutput(partitionID: partition.id, bytes: output)) }
        if edge { irq.withLock { $0 }?.signal() }
        return result
    }

    func stop() {}
}
