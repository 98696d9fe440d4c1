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
    /// Exits and processor time.
    let accounting: ProcessorAccounting
    var exits: ExitCounters { accounting.exits }

    init(index: Int, cpu: KVMVirtualCPU, accounting: ProcessorAccounting) {
        self.index = index
        self.cpu = cpu
        self.accounting = accounting
    }

    /// Runs `body` on the processor's thread. The thread is recorded before it can run, so a
    /// kick or a join that comes at once finds it; a processor has one thread at a time.
    func start(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
        try thread.withLock { (current: inout OSThread?) throws(SystemError) in
            guard current == nil else { throw SystemError("start vp\(index): it has a thread", errno: .resourceBusy) }
            current = try OSThread.spawn(name: "vp\(index)", body)
        }
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
        processor.accounting.threadStarted()
        observer.partition(self, processor: processor.index, startedOnThread: OSThread.currentKernelThreadID)
        defer { processor.accounting.threadEnding() }
        let exits = ExitHandler(partition: self, resources: resources, processor: processor)
        while true {
            let exit: VirtualCPUExit
            do {
                exit = try processor.cpu.run()
            } catch {
                processor.exits.count(.fatal)
                exits.fail(.crashed(reason: "VP \(processor.index): \(error)"))
                return
            }
            if exit == .interrupted {
                processor.exits.count(.interrupted)
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

    /// The reason `exit` is counted under; ports the parent intercepts are told apart in `handlePort`.
    static func reason(of exit: VirtualCPUExit) -> ExitReason {
        switch exit {
        case .readMSR: return .msrRead
        case .writeMSR: return .msrWrite
        case .portIO(let access):
            switch access.port {
            case PlatformPorts.hypercall: return .hypercall
            case PlatformPorts.signalEvent: return .signalEvent
            case PlatformPorts.debug: return .debugPort
            default: return .port
            }
        case .mmio: return .mmio
        case .interrupted: return .interrupted
        case .shutdown, .failedEntry, .internalError, .systemEvent, .halt, .unknown: return .fatal
        }
    }

    /// Handles `exit`; returns the final state if the partition must stop.
    func handle(_ exit: VirtualCPUExit) -> PartitionState? {
        if case .portIO = exit {} else { processor.exits.count(Self.reason(of: exit)) }
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
        let interceptor = partition.portIntercepts.interceptor(for: access.port)
        processor.exits.count(interceptor == nil ? Self.reason(of: .portIO(access)) : .parentPort)
        if let interceptor {
            if access.count > 1, access.size > 0 {
                // String I/O: the whole run of this exit in one call.
                if access.isWrite {
                    interceptor.writeString(partition: partition, vp: processor.index, port: access.port, size: access.size,
                                            bytes: Array(access.data.prefix(access.size * access.count)))
                } else {
                    processor.cpu.completePortRead(interceptor.readString(partition: partition, vp: processor.index,
                                                                          port: access.port, size: access.size,
                                                                          count: access.count))
                }
                return nil
            }
            if access.isWrite {
                for index in 0..<max(1, access.count) {
                    let bytes = access.data.dropFirst(index * access.size).prefix(access.size)
                    var value: UInt32 = 0
                    for (shift, byte) in bytes.enumerated() { value |= UInt32(byte) << (8 * shift) }
                    interceptor.write(partition: partition, vp: processor.index, port: access.port, size: access.size, value: value)
                }
            } else {
                let value = interceptor.read(partition: partition, vp: processor.index, port: access.port, size: access.size)
                processor.cpu.completePortRead((0..<access.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) })
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
        case (PlatformPorts.nullExit, true):
            break
        case (PlatformPorts.power, true):
            // Sleep control and sleep status share the port: Linux first writes WAK_STS (0x80),
            // which is ignored, then SLP_EN | SLP_TYP.
            let command = access.data.first ?? 0
            if command == PowerCommand.powerOff { return .stopped(reason: "guest powered off") }
            if command == PowerCommand.reset { return .stopped(reason: "guest requested a reset") }
        case (PlatformPorts.pm1Control..<(PlatformPorts.pm1Control + 2), true):
            // The legacy-PC platform's PM1 control (ACPI 6.4 §4.8.3.2.1): S5 is a write with
            // SLP_EN and SLP_TYP 5 (a 16-bit write, or its high byte alone at the second port).
            let value = access.port == PlatformPorts.pm1Control
                ? UInt16(truncatingIfNeeded: access.value) : UInt16(truncatingIfNeeded: access.value) << 8
            if value & PowerCommand.pm1SleepEnable != 0, PowerCommand.pm1SleepType(value) == 5 {
                return .stopped(reason: "guest powered off")
            }
        case (PlatformPorts.pm1Event..<(PlatformPorts.pm1Event + 4), true):
            break
        case (_, false):
            // Every element of a REP INS is answered, not just the first.
            processor.cpu.completePortRead(PlatformPorts.read(port: access.port, size: access.size, count: access.count))
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
        let line = partition.console.append(line: processorTag + String(decoding: bytes, as: UTF8.self))
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
