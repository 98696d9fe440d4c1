import ACPI
import GuestMemory
import HyperV
import HypervisorInterface
import KVM
import LinuxBoot
import LinuxSupport
import Synchronization

/// A child partition: one KVM virtual machine, its memfd-backed RAM, one thread per virtual
/// processor, and the Hyper-V interface it sees.
///
/// Lifecycle: created → running ⇄ paused → stopped/crashed. A partition that stops (on
/// request, by guest power-off, or by crashing) releases its threads, its virtual machine and
/// its RAM; only the record of why remains.
public final class Partition: Sendable {
    /// The root-assigned identifier, unique for the root's lifetime.
    public let id: UInt32
    public let name: String
    public let processorCount: Int
    /// Bytes of guest RAM.
    public let memorySize: Int
    /// What the guest printed.
    public let console: ConsoleLog
    /// When the partition was created (CLOCK_MONOTONIC ns).
    public let createdAt: UInt64
    /// Each virtual processor's exits and processor time, by VP index; kept after it stops.
    public let accounting: [ProcessorAccounting]
    /// The SynIC traffic that passed through the root; kept after it stops.
    public let synicCounters: SynICCounters

    let observer: any PartitionObserver
    let lifecycle: ConditionLock<Lifecycle>
    let portIntercepts = PortInterceptTable()
    let interruptLines = Mutex<[UInt32: EventFD]>([:])
    private let live: Mutex<Resources?>
    private let environment: PartitionEnvironment

    /// What a running partition holds and a stopped one gives back.
    final class Resources: Sendable {
        let memory: GuestMemory
        let machine: KVMVirtualMachine
        let router: SynICInterruptRouter
        let hypervisor: HvPartition
        let processors: [VirtualProcessor]

        init(memory: GuestMemory, machine: KVMVirtualMachine, router: SynICInterruptRouter,
             hypervisor: HvPartition, processors: [VirtualProcessor]) {
            self.memory = memory
            self.machine = machine
            self.router = router
            self.hypervisor = hypervisor
            self.processors = processors
        }
    }

    /// The live resources, or `nil` once the partition has stopped.
    var resources: Resources? { live.withLock { $0 } }

    /// The partition's RAM, until it stops.
    public var memory: GuestMemory? { resources?.memory }
    /// The Hyper-V interface the guest sees, until the partition stops.
    public var hypervisor: HvPartition? { resources?.hypervisor }

    struct Lifecycle {
        var state: PartitionState = .created
        /// What the processors should do next.
        var request: Request = .run
        var parked = 0
        /// `start` was called: a partition starts once, however many ask at the same time.
        var started = false
        /// `start` is creating the processors' threads: `finishStopping` joins them only after.
        var starting = false
        /// The state to enter once every processor has exited.
        var finalState: PartitionState?
        /// A caller of `finishStopping` is joining the processors (the first; any other waits).
        var joining = false
        var released = false
        /// The partition is released and its observer told of its final state.
        var finished = false
    }

    enum Request: Equatable {
        case run
        case pause
        case exit
    }

    /// Builds a partition: RAM, virtual machine, interrupt controller, MSR filter, CPUID,
    /// processors in their entry state, and the loaded image. Nothing runs until `start()`.
    /// - Parameter cpuid: where KVM_GET_SUPPORTED_CPUID's answer is kept between partitions (it is
    ///   the same for every partition of a host); nil asks KVM each time.
    public static func create(
        id: UInt32, specification: PartitionSpecification, system: KVMSystem, observer: any PartitionObserver,
        cpuid: SupportedCPUIDCache? = nil
    ) throws(PartitionError) -> Partition {
        try validate(specification)
        do {
            return try Partition(id: id, specification: specification, system: system, observer: observer,
                                 cpuid: cpuid)
        } catch let error as PartitionError {
            throw error
        } catch let error as BootError {
            throw .boot(error)
        } catch let error as LinuxBootError {
            throw .boot(.invalidImage(error.description))
        } catch let error as ACPIError {
            throw .hypervisor("could not build the ACPI tables of \(specification.name): \(error)")
        } catch {
            throw .failed("could not create partition \(specification.name)", error)
        }
    }

    static func validate(_ specification: PartitionSpecification) throws(PartitionError) {
        guard PartitionSpecification.processorLimit.contains(specification.processorCount) else {
            throw .invalidSpecification("processors must be between 1 and 64, not \(specification.processorCount)")
        }
        guard specification.memorySize >= PartitionSpecification.minimumMemory,
              specification.memorySize <= PartitionSpecification.maximumMemory,
              specification.memorySize % (2 << 20) == 0 else {
            throw .invalidSpecification("memory must be a multiple of 2 MiB between 16 MiB and 3 GiB")
        }
    }

    private init(id: UInt32, specification: PartitionSpecification, system: KVMSystem,
                 observer: any PartitionObserver, cpuid: SupportedCPUIDCache?) throws {
        self.id = id
        name = specification.name
        processorCount = specification.processorCount
        memorySize = specification.memorySize
        self.observer = observer
        console = ConsoleLog()
        createdAt = MonotonicClock.nanoseconds()
        lifecycle = ConditionLock(Lifecycle())
        let accounting = (0..<specification.processorCount).map { ProcessorAccounting(vp: $0) }
        self.accounting = accounting

        let memory = try GuestMemory.create(name: "hv-\(specification.name)", size: specification.memorySize)
        let machine = try system.createVirtualMachine()
        try machine.createInterruptController()
        try machine.filterMSRs(SyntheticMSR.range)
        try machine.mapMemory(slot: 0, guestAddress: 0, size: memory.size, hostAddress: memory.hostAddressForHypervisor)

        let apicIDs = (0..<UInt32(specification.processorCount)).map { $0 }
        let router = SynICInterruptRouter(machine: machine, apicIDs: apicIDs)
        let cpus = try apicIDs.map { apicID throws(KVMError) in try machine.createVirtualCPU(id: apicID) }

        let tscHz = try cpus[0].tscFrequencyKHz() * 1000
        // The guest TSC is the host TSC plus an offset KVM chose; read it between two host
        // readings and take the midpoint so the offset error is at most half the ioctl.
        let hostBefore = TimestampCounter.read()
        let guestTSC = try cpus[0].readMSR(0x10)
        let hostAfter = TimestampCounter.read()
        let hostTSC = hostBefore &+ (hostAfter &- hostBefore) / 2
        let time = ReferenceTimeParameters(tscFrequencyHz: tscHz, guestTSCAtCreation: guestTSC, hostTSCAtCreation: hostTSC)
        let environment = PartitionEnvironment()
        self.environment = environment
        let hypervisor = HvPartition(memory: memory, apicIDs: apicIDs, time: time, environment: environment)
        synicCounters = hypervisor.counters

        let host = try (cpuid?.entries(of: system) ?? system.supportedCPUID()).map {
            CPUIDLeaf(function: $0.function, index: $0.index, indexSignificant: $0.flags & CPUIDEntry.significantIndex != 0,
                      eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
        }
        let leaves = HvCPUID.partitionLeaves(host: host, processorCount: specification.processorCount)
        let processors = try cpus.enumerated().map { index, cpu in
            let own = HvCPUID.processorLeaves(leaves, apicID: cpu.id).map {
                CPUIDEntry(function: $0.function, index: $0.index,
                           flags: $0.indexSignificant ? CPUIDEntry.significantIndex : 0,
                           eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
            }
            try cpu.setCPUID(own)
            return VirtualProcessor(index: index, cpu: cpu, accounting: accounting[index])
        }

        try BootLayout.writeTables(into: memory)
        let resources = Resources(memory: memory, machine: machine, router: router, hypervisor: hypervisor,
                                  processors: processors)
        live = Mutex(resources)
        try boot(specification.image, resources: resources, tscFrequencyHz: tscHz, legacyPC: specification.legacyPC)
        environment.attach(self, resources: resources)
    }

    private func boot(_ image: BootImage, resources: Resources, tscFrequencyHz: UInt64, legacyPC: Bool) throws {
        let memory = resources.memory
        let processors = resources.processors
        switch image {
        case .embedded(let bytes, let arguments):
            let elf = try ELFImage(parsing: bytes)
            // The partition's RAM was created a moment ago: still all zeros.
            try BootLayout.load(elf, into: memory, memoryIsZero: true)
            let freeStart = (elf.end + 0x1F_FFFF) & ~UInt64(0x1F_FFFF)
            try BootLayout.writeGuestBootInfo(into: memory, name: name, processorCount: processorCount,
                                              tscFrequencyHz: tscFrequencyHz, arguments: arguments,
                                              freeMemoryStart: freeStart)
            for processor in processors {
                try processor.cpu.enterLongMode(BootLayout.entryState)
                var registers = GeneralRegisters()
                registers.rip = elf.entry
                registers.rsi = BootLayout.bootInfoAddress
                registers.rdi = UInt64(processor.index)
                try processor.cpu.setRegisters(registers)
                if processor.index > 0 { try processor.cpu.makeRunnable() }
            }
        case .linux(let kernelBytes, let initrd, let commandLine):
            // Application processors stay in KVM's wait-for-SIPI state: Linux starts them.
            let kernel = try BzImage(parsing: kernelBytes)
            let tables = try ACPITables.build(processorCount: processorCount, baseAddress: LinuxBootPlan.firmwareAreaStart,
                                              legacyPC: legacyPC)
            let plan = try LinuxBootPlan(
                memorySize: UInt64(memory.size), kernel: kernel, initrd: initrd, commandLine: commandLine,
                acpiTables: ACPITablePlacement(address: tables.address, bytes: tables.bytes, rsdpAddress: tables.rsdpAddress))
            for region in plan.regions {
                try memory.write(region.source, from: region.sourceRange.lowerBound, count: region.count,
                                 at: GuestPhysicalAddress(region.address))
            }
            let bootstrap = processors[0]
            try bootstrap.cpu.enterLongMode(BootLayout.entryState)
            var registers = GeneralRegisters()
            registers.rip = plan.entryPoint
            registers.rsi = plan.zeroPageAddress
            try bootstrap.cpu.setRegisters(registers)
        }
    }

    // MARK: Lifecycle

    /// The current state.
    public var state: PartitionState { lifecycle.read { $0.state } }

    /// Whether its processors have been asked to exit (a stop, a power-off, a crash): a
    /// processor waiting on something outside the partition gives up then.
    public var isExiting: Bool { lifecycle.read { $0.request == .exit } }

    /// Starts every virtual processor.
    public func start() throws(PartitionError) {
        try start(holdingBootstrapProcessorFor: .zero)
    }

    /// Starts every virtual processor, the bootstrap processor `delay` after the others: tests
    /// use it to prove a guest does not depend on which processor the host schedules first.
    ///
    /// Two starts at once (two API requests) start it once: the other is refused. A stop asked
    /// for meanwhile starts no more processors, and joins those started once `start` is done
    /// creating threads, so no processor thread is left unjoined. A partition that began to end
    /// while starting (stopped, crashed, powered off) started all the same: no error, and it is
    /// not shown running.
    func start(holdingBootstrapProcessorFor delay: Duration) throws(PartitionError) {
        let claim = lifecycle.update { state -> Result<Resources, PartitionError> in
            guard state.state == .created, !state.started, state.request != .exit, let resources = self.resources else {
                return .failure(.invalidTransition(from: state.state, operation: "start"))
            }
            state.started = true
            state.starting = true
            return .success(resources)
        }
        let resources: Resources
        switch claim {
        case .success(let claimed): resources = claimed
        case .failure(let refusal): throw refusal
        }
        var failure: SystemError?
        for processor in resources.processors where !isExiting {
            let hold = processor.index == 0 ? delay : .zero
            do throws(SystemError) {
                try processor.start { [self] in
                    if hold > .zero { MonotonicClock.sleep(hold) }
                    self.runLoop(processor, resources)
                }
            } catch {
                failure = error
                break
            }
        }
        // Running in the same step as done starting: a stop, a pause or a second start then
        // sees one or the other, never a partition between the two.
        let running = lifecycle.update { state -> Bool in
            state.starting = false
            guard failure == nil, state.request != .exit, state.state == .created else { return false }
            state.state = .running
            return true
        }
        if let failure {
            stop(reason: "failed to start processors: \(failure)")
            throw .system("could not start partition \(name)", failure)
        }
        if running { observer.partition(self, didChangeState: .running) }
    }

    /// How long `pause` waits for every virtual processor to park.
    public static let pauseTimeout: Duration = .seconds(10)

    /// Parks every virtual processor outside KVM_RUN, kicking them every 100 ms until they have
    /// (a kick sets immediate_exit, so one that lands while a processor handles an exit is seen
    /// at its next entry; the repeats cover whatever a kick raced with). A processor still busy
    /// in an exit after `timeout` (one waiting for the parent, say) fails the pause: the request
    /// is withdrawn, the processors that parked run again, and the partition stays running, so
    /// no caller waits without bound. A pause asked for meanwhile by another caller fails with it.
    ///
    /// A partition that is stopping (its processors asked to exit, the stop waiting for them) is
    /// not paused: the state is checked and the pause asked for in one step, so the request to
    /// exit is never overwritten, which would park the processors and leave the stop waiting.
    public func pause(timeout: Duration = Partition.pauseTimeout) throws(PartitionError) {
        if let refused = ask(.pause, from: .running) { throw .invalidTransition(from: refused, operation: "pause") }
        let deadline = MonotonicClock.nanoseconds() + MonotonicClock.nanoseconds(in: timeout)
        while true {
            kickProcessors()
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else { break }
            let settled = lifecycle.wait(until: { $0.parked == self.processorCount || $0.request != .pause },
                                         timeoutNanoseconds: min(deadline - now, 100_000_000)) { _ in true }
            if settled == true { break }
        }
        enum Outcome { case paused, exiting, withdrawn, timedOut(stuck: Int) }
        let outcome = lifecycle.update { state -> Outcome in
            switch state.request {
            case .exit: return .exiting
            case .run: return .withdrawn
            case .pause:
                if state.parked == self.processorCount { return .paused }
                state.request = .run
                return .timedOut(stuck: self.processorCount - state.parked)
            }
        }
        switch outcome {
        case .paused: setState(.paused)
        case .exiting: break
        case .withdrawn:
            throw .timedOut("another pause of \(name) gave up while this one waited; it keeps running")
        case .timedOut(let stuck):
            throw .timedOut("\(stuck) of the \(processorCount) virtual processors of \(name) did not stop within "
                            + "\(timeout) (each was busy in an exit, e.g. waiting for the parent partition); it keeps "
                            + "running, pause it again later")
        }
    }

    /// Lets parked virtual processors run again (not those of a partition that is stopping; see
    /// `pause`).
    public func resume() throws(PartitionError) {
        if let refused = ask(.run, from: .paused) { throw .invalidTransition(from: refused, operation: "resume") }
        setState(.running)
    }

    /// Asks the processors for `request` if the partition is `from` and not stopping, in one
    /// step under the lifecycle's lock.
    /// - Returns: `nil` if asked; else the state that refused it.
    private func ask(_ request: Request, from expected: PartitionState) -> PartitionState? {
        lifecycle.update { state -> PartitionState? in
            guard state.state == expected, state.request != .exit else { return state.state }
            state.request = request
            return nil
        }
    }

    /// Stops the partition and releases its processors, virtual machine and RAM. Idempotent;
    /// returns once everything is released. Must not be called from a processor thread.
    public func stop(reason: String = "stopped by request") {
        requestExit(final: .stopped(reason: reason))
        finishStopping()
    }

    /// Asks every processor to exit, remembering the first final state requested.
    func requestExit(final: PartitionState) {
        lifecycle.update { state in
            if state.finalState == nil { state.finalState = final }
            state.request = .exit
        }
        kickProcessors()
    }

    /// Joins the processor threads and releases the partition (after `partitionNeedsTeardown`).
    public func finishStopping() {
        guard let resources else { return }
        // One caller joins the processors and releases the partition. Another (a delete while a
        // crash's teardown still joins) waits until that is done: it would find the threads
        // taken and release everything while a processor still ran. The wait is the first
        // caller's, as long as the longest exit a processor is in (bounded by its deadline).
        let joins = lifecycle.update { state -> Bool in
            defer { state.joining = true }
            return !state.joining
        }
        guard joins else {
            lifecycle.wait(until: { $0.finished }) { _ in }
            return
        }
        // A `start` still creating threads creates no more once it sees the exit request; the
        // threads it did create are joined below, none missed. Each new one sees the request
        // before it first enters the guest.
        lifecycle.wait(until: { !$0.starting }) { _ in }
        for processor in resources.processors { processor.join() }
        let final = lifecycle.update { state -> PartitionState? in
            guard !state.released else { return nil }
            state.released = true
            return state.finalState ?? .stopped(reason: "stopped")
        }
        guard let final else { return }
        resources.router.unbindAll()
        environment.detach()
        portIntercepts.removeAll()
        interruptLines.withLock { $0.removeAll() }
        live.withLock { $0 = nil }
        setState(final)
        lifecycle.update { $0.finished = true }
    }

    private func kickProcessors() {
        for processor in resources?.processors ?? [] { processor.kick() }
    }

    private func setState(_ new: PartitionState) {
        let changed = lifecycle.update { state -> Bool in
            guard state.state != new, !state.state.isFinal else { return false }
            state.state = new
            return true
        }
        if changed { observer.partition(self, didChangeState: new) }
    }

    // MARK: Services for the parent partition

    /// Makes HvSignalEvent on `connection` signal `event` without leaving the kernel: an
    /// ioeventfd with DATAMATCH on the hypercall page's signal port. A signal that does exit (the
    /// slow hypercall, or a fast one in the moment of a re-registration) is written by `relay`
    /// when given (`HvConnectionTable.registerEventConnection`).
    public func registerEventConnection(_ connection: ConnectionID, event: EventFD,
                                        relay: (any HvEventRelay)? = nil) throws(PartitionError) {
        guard let resources else { throw .invalidTransition(from: state, operation: "register an event connection of") }
        do throws(KVMError) {
            try resources.machine.assignIOEventFD(event, port: PlatformPorts.signalEvent, value: connection.rawValue)
        } catch {
            throw .kvm("could not register event connection \(connection.rawValue)", error)
        }
        resources.hypervisor.connections.registerEventConnection(connection, event: event, relay: relay)
    }

    /// Removes an event connection registered with `registerEventConnection`.
    public func unregisterEventConnection(_ connection: ConnectionID, event: EventFD) {
        guard let resources else { return }
        resources.hypervisor.connections.unregisterEventConnection(connection)
        try? resources.machine.deassignIOEventFD(event, port: PlatformPorts.signalEvent, value: connection.rawValue)
    }

    /// The doorbell eventfd that raises `sint` on processor `vp`.
    public func doorbell(vp: UInt32, sint: Int) throws(PartitionError) -> EventFD {
        guard vp < UInt32(processorCount), (0..<SynIC.sintCount).contains(sint) else {
            throw .invalidSpecification("no SINT \(sint) on processor \(vp)")
        }
        guard let resources else { throw .invalidTransition(from: state, operation: "ring a doorbell of") }
        do {
            return try resources.router.doorbell(vp: vp, sint: sint)
        } catch {
            throw .failed("could not create doorbell for VP \(vp) SINT \(sint)", error)
        }
    }
}

/// The `HvEnvironment` of one partition: forwards to the interrupt router and the observer.
final class PartitionEnvironment: HvEnvironment {
    // Weak: the partition owns its HvPartition, which owns this environment.
    private let partition = Mutex<(owner: WeakPartition, router: SynICInterruptRouter, processors: [VirtualProcessor])?>(nil)

    struct WeakPartition: @unchecked Sendable {
        // SAFETY: only read under the enclosing Mutex; Partition itself is Sendable.
        weak var value: Partition?
    }

    func attach(_ partition: Partition, resources: Partition.Resources) {
        self.partition.withLock { $0 = (WeakPartition(value: partition), resources.router, resources.processors) }
    }

    func detach() {
        partition.withLock { $0 = nil }
    }

    private var current: Partition? { partition.withLock { $0?.owner.value } }
    private var router: SynICInterruptRouter? { partition.withLock { $0?.router } }

    func hostTimestampCounter() -> UInt64 { TimestampCounter.read() }

    /// IA32_TSC of processor `vp`. Called from that processor's own exit handling (TIME_REF_COUNT
    /// reads), so KVM_GET_MSRS does not wait for it to leave KVM_RUN.
    func guestTimestampCounter(vp: UInt32) -> UInt64? {
        guard let processors = partition.withLock({ $0?.processors }), processors.indices.contains(Int(vp)) else { return nil }
        return try? processors[Int(vp)].cpu.readMSR(0x10)
    }

    func sintChanged(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool) {
        guard let partition = current, let router else { return }
        do {
            try router.configure(vp: vp, sint: sint, vector: vector, interruptsEnabled: interruptsEnabled)
        } catch {
            partition.console.append(line: "[root] could not route SINT\(sint) of VP \(vp): \(error)")
        }
    }

    func raiseSINT(vp: UInt32, sint: Int) {
        router?.raise(vp: vp, sint: sint)
    }

    func synicPagesChanged(vp: UInt32, pages: SynICPages) {
        guard let partition = current else { return }
        partition.observer.partition(partition, processor: vp, synicPagesChanged: pages)
    }

    func guestCrashReported(parameters: [UInt64], message: String?) {
        guard let partition = current else { return }
        let values = parameters.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
        let line = partition.console.append(line: "[root] guest reported a crash: P0-P4 = \(values)" + (message.map { ": \($0)" } ?? ""))
        partition.observer.partition(partition, consoleLine: line)
    }
}

/// KVM_GET_SUPPORTED_CPUID's answer, asked once and kept: it is the same for every partition of
/// a host, so creating a partition need not ask again.
public final class SupportedCPUIDCache: Sendable {
    private let entries = Mutex<[CPUIDEntry]?>(nil)

    public init() {}

    func entries(of system: KVMSystem) throws(KVMError) -> [CPUIDEntry] {
        if let known = entries.withLock({ $0 }) { return known }
        let fresh = try system.supportedCPUID()
        entries.withLock { $0 = fresh }
        return fresh
    }
}
