import GuestMemory
import HyperV
import HypervisorInterface
import KVM
import LinuxSupport
import Synchronization

/// One virtual processor: its KVM vCPU and the thread that runs it.
final class VirtualProcessor: Sendable {
    /// The VP index (also its APIC ID).
    let index: Int
    let cpu: KVMVirtualCPU
    private let thread = Mutex<OSThread?>(nil)
    /// MSR accesses answered with #GP so far (only the first few are logged).
    let faultsNoted = Atomic<Int>(0)

    init(index: Int, cpu: KVMVirtualCPU) {
        self.index = index
        self.cpu = cpu
    }

    func start(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let started = try OSThread.spawn(name: "vp\(index)", body)
        thread.withLock { $0 = started }
    }

    /// Makes the processor leave KVM_RUN promptly.
    func kick() {
        cpu.requestExit()
        thread.withLock { $0?.interrupt() }
    }

    func join() {
        let current = thread.withLock { value -> OSThread? in
            let current = value
            value = nil
            return current
        }
        current?.join()
    }
}

extension Partition {
    /// The body of a virtual processor's thread.
    func runLoop(_ processor: VirtualProcessor, _ resources: Resources) {
        let exits = ExitHandler(partition: self, resources: resources, processor: processor)
        while true {
            let exit: VirtualCPUExit
            do {
                exit = try processor.cpu.run()
            } catch {
                exits.fail(.crashed(reason: "VP \(processor.index): \(error)"))
                return
            }
            if exit == .interrupted {
                if !waitWhilePaused() { return }
                continue
            }
            if let final = exits.handle(exit) {
                exits.fail(final)
                return
            }
        }
    }

    /// Parks the calling processor while a pause is requested.
    /// - Returns: `false` when the processor must exit.
    private func waitWhilePaused() -> Bool {
        let request = lifecycle.read { $0.request }
        switch request {
        case .run: return true
        case .exit: return false
        case .pause:
            lifecycle.update { $0.parked += 1 }
            let next = lifecycle.wait(until: { $0.request != .pause }) { state -> Request in
                state.parked -= 1
                return state.request
            }
            return next != .exit
        }
    }
}

/// Handles the exits of one virtual processor: synthetic MSRs, the hypercall page's ports,
/// and the platform ports (debug, null exit, power).
struct ExitHandler {
    let partition: Partition
    let resources: Partition.Resources
    let processor: VirtualProcessor

    var hypervisor: HvPartition { resources.hypervisor }

    /// The longest one string port read asks the parent for its elements (ns).
    static let stringReadBudget: UInt64 = 2_000_000_000

    /// Handles `exit`; returns the final state if the partition must stop.
    func handle(_ exit: VirtualCPUExit) -> PartitionState? {
        switch exit {
        case .readMSR(let index):
            let value = hypervisor.readMSR(vp: processor.index, index: index)
            if value == nil { noteFault("RDMSR 0x\(String(index, radix: 16))") }
            processor.cpu.completeMSRRead(value)
        case .writeMSR(let index, let value):
            let accepted = hypervisor.writeMSR(vp: processor.index, index: index, value: value)
            if !accepted { noteFault("WRMSR 0x\(String(index, radix: 16)) = 0x\(String(value, radix: 16))") }
            processor.cpu.completeMSRWrite(accepted: accepted)
        case .portIO(let access):
            return handlePort(access)
        case .mmio(let access):
            if !access.isWrite { processor.cpu.completeMMIORead([UInt8](repeating: 0xFF, count: access.length)) }
        case .shutdown:
            return .crashed(reason: "triple fault on VP \(processor.index)\(location)")
        case .failedEntry(let reason):
            return .crashed(reason: "VP \(processor.index) could not enter the guest (hardware reason 0x\(String(reason, radix: 16)))")
        case .internalError(let suberror):
            return .crashed(reason: "KVM internal error \(suberror) on VP \(processor.index)")
        case .systemEvent(let type):
            return .crashed(reason: "system event \(type) on VP \(processor.index)")
        case .halt:
            return .crashed(reason: "VP \(processor.index) halted with no interrupt controller")
        case .unknown(let reason):
            return .crashed(reason: "unhandled exit reason \(reason) on VP \(processor.index)")
        case .interrupted:
            break
        }
        return nil
    }

    /// Records an access answered with #GP on the console (the first few per processor).
    private func noteFault(_ access: String) {
        guard processor.faultsNoted.wrappingAdd(1, ordering: .relaxed).oldValue < 16 else { return }
        let line = "[root] VP \(processor.index): \(access) raised #GP"
        partition.console.append(line: line)
        partition.observer.partition(partition, consoleLine: line)
    }

    /// " at RIP 0x…" when the registers can be read.
    private var location: String {
        guard let registers = try? processor.cpu.registers() else { return "" }
        return " at RIP 0x\(String(registers.rip, radix: 16)) (RSP 0x\(String(registers.rsp, radix: 16)))"
    }

    private func handlePort(_ access: PortAccess) -> PartitionState? {
        if let interceptor = partition.portIntercepts.interceptor(for: access.port) {
            if access.isWrite {
                for index in 0..<max(1, access.count) {
                    let bytes = access.data.dropFirst(index * access.size).prefix(access.size)
                    var value: UInt32 = 0
                    for (shift, byte) in bytes.enumerated() { value |= UInt32(byte) << (8 * shift) }
                    interceptor.write(partition: partition, vp: processor.index, port: access.port, size: access.size, value: value)
                }
            } else {
                // A string read (`rep ins`) asks once per element, and each answer may take up to
                // the parent link's timeout: past `stringReadBudget` in all, or once the partition
                // is asked to pause or stop, the remaining elements float high without asking, so
                // one exit never holds the processor (and a stop that joins it) for long.
                var bytes: [UInt8] = []
                let started = MonotonicClock.nanoseconds()
                for _ in 0..<max(1, access.count) {
                    let asking = MonotonicClock.nanoseconds() - started < Self.stringReadBudget
                        && partition.lifecycle.read({ $0.request }) == .run
                    let value = asking ? interceptor.read(partition: partition, vp: processor.index, port: access.port,
                                                          size: access.size) : 0xFFFF_FFFF
                    for shift in 0..<access.size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * shift))) }
                }
                processor.cpu.completePortRead(bytes)
            }
            return nil
        }
        switch (access.port, access.isWrite) {
        case (PlatformPorts.hypercall, true):
            hypercall()
        case (PlatformPorts.signalEvent, true) where access.size == 4:
            setRAX(hypervisor.signalEventFastPathExit(connectionID: access.value))
        case (PlatformPorts.debug, true) where access.size == 4:
            debugLine(at: UInt64(access.value))
        case (PlatformPorts.nullExit, _):
            if !access.isWrite { processor.cpu.completePortRead([UInt8](repeating: 0, count: access.size)) }
        case (PlatformPorts.power, true):
            // Sleep control and sleep status share the port: Linux first writes WAK_STS (0x80),
            // which is ignored, then SLP_EN | SLP_TYP.
            let command = access.data.first ?? 0
            if command == PowerCommand.powerOff { return .stopped(reason: "guest powered off") }
            if command == PowerCommand.reset { return .stopped(reason: "guest requested a reset") }
        case (PlatformPorts.power, false):
            processor.cpu.completePortRead([UInt8](repeating: 0, count: access.size * access.count))
        case (_, false):
            // No device: reads float high, as on an empty ISA bus.
            processor.cpu.completePortRead([UInt8](repeating: 0xFF, count: access.size * access.count))
        default:
            break
        }
        return nil
    }

    /// The slow path of the hypercall page: RCX/RDX/R8 in, RAX out, RIP unchanged (KVM then
    /// completes the OUT and the page returns).
    private func hypercall() {
        guard var registers = try? processor.cpu.registers() else { return }
        registers.rax = hypervisor.hypercall(
            vp: processor.index, HypercallRegisters(control: registers.rcx, input: registers.rdx, output: registers.r8))
        try? processor.cpu.setRegisters(registers)
    }

    private func setRAX(_ value: UInt64) {
        guard var registers = try? processor.cpu.registers() else { return }
        registers.rax = value
        try? processor.cpu.setRegisters(registers)
    }

    /// A `DebugRecord` at `address`: u32 length then text, validated against guest RAM.
    private func debugLine(at address: UInt64) {
        let memory = resources.memory
        let base = GuestPhysicalAddress(address)
        guard let length = try? memory.load(UInt32.self, at: base),
              let textAddress = base.advanced(by: UInt64(DebugRecord.textOffset)) else { return }
        let count = Int(min(length, UInt32(DebugRecord.maximumLength)))
        guard let bytes = try? memory.read(at: textAddress, count: count) else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        let line = processorTag + text
        partition.console.append(line: line)
        partition.observer.partition(partition, consoleLine: line)
    }

    private var processorTag: String {
        partition.processorCount > 1 ? "[vp\(processor.index)] " : ""
    }

    /// Stops the whole partition with `final` (the first final state wins) and asks the
    /// observer to tear it down from another thread.
    func fail(_ final: PartitionState) {
        partition.requestExit(final: final)
        partition.observer.partitionNeedsTeardown(partition)
    }
}
