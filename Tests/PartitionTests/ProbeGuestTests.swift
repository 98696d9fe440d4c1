import Glibc
import GuestBuilder
import GuestMemory
import HyperV
import HypervisorInterface
import KVM
import LinuxSupport
@testable import Partition
import Synchronization
import SystemPackage
import Testing

/// Holds the first read of a COM1 port until released (30 s at most); then answers LSR with
/// THRE set, so the guest's `mode=serial` writes its line and finishes: a processor held in an
/// exit, as one waiting for a stalled parent is.
final class HeldPort: PortInterceptor {
    struct State { var entered = false; var released = false }
    let state = ConditionLock(State())
    func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32) {}
    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 {
        state.update { $0.entered = true }
        _ = state.wait(until: { $0.released }, timeoutNanoseconds: 30_000_000_000) { _ in }
        return 0x20
    }
}

/// Boots the Embedded Swift probe guest on real KVM, with the parent's diagnostic echo
/// service played in-process, and checks what the guest reports on its debug port.
@Suite("Probe guest on KVM", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct ProbeGuestTests {
    /// A partition running the Embedded Swift guest with `arguments`, and what it prints.
    static func guest(id: UInt32, name: String, processors: Int, memoryMiB: Int, arguments: String) async throws
        -> (Partition, RecordingObserver)
    {
        let image = try await GuestBuilder.forCurrentPackage().build()
        let observer = RecordingObserver()
        let partition = try Partition.create(
            id: id,
            specification: PartitionSpecification(name: name, processorCount: processors, memorySize: memoryMiB << 20,
                                                  image: .embedded(elf: try readFile(image), arguments: arguments)),
            system: try KVMSystem(), observer: observer)
        return (partition, observer)
    }

    @Test func probeReportsRoundTripsAndHostileStatuses() async throws {
        let (partition, observer) = try await Self.guest(id: 1, name: "probe", processors: 2, memoryMiB: 64,
                                                         arguments: "mode=probe iterations=50")
        let echo = try InProcessEcho(partition: partition)
        try partition.start()
        let done = await observer.waitForLine(containing: "probe: done", timeoutSeconds: 60)
        partition.stop()
        echo.stop()
        let lines = observer.lines
        #expect(done, "probe did not finish: \(lines)")
        print(lines.joined(separator: "\n"))
        #expect(lines.contains { $0.contains("VP_INDEX read by each processor: 0 1") })
        #expect(lines.contains { $0.contains("message-rtt-interrupt-ns p50=") }, "\(lines)")
        #expect(lines.contains { $0.contains("message-rtt-polled-ns p50=") }, "\(lines)")
        #expect(lines.contains { $0.contains("event-rtt-ns p50=") }, "\(lines)")
        #expect(lines.contains {
            $0.contains("hostile-hypercalls unaligned=4 straddling=3 outside-ram=3 unknown-code=2 unknown-connection=18 unknown-event=18")
        }, "\(lines)")
        #expect(partition.state == .stopped(reason: "stopped by request"))
    }

    /// The parent emulates legacy ports, but never one the root answers itself (the hypercall
    /// page's ports, debug output, the null exit, power control), and each port once.
    @Test func portInterceptsCannotTakeTheRootsOwnPorts() async throws {
        struct Silent: PortInterceptor {
            func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32) {}
            func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 { 0 }
        }
        let (partition, _) = try await Self.guest(id: 4, name: "ports", processors: 1, memoryMiB: 32, arguments: "mode=idle")
        defer { partition.stop() }
        for port in PlatformPorts.rootOwned {
            #expect(throws: PartitionError.self) { try partition.interceptPorts(port..<(port + 1), with: Silent()) }
        }
        #expect(throws: PartitionError.self) { try partition.interceptPorts(0xE0..<0xF0, with: Silent()) }
        try partition.interceptPorts(0x3F8..<0x400, with: Silent())
        #expect(partition.portIntercepts.interceptor(for: 0x3F8) != nil)
        #expect(throws: PartitionError.self, "a port is intercepted once") {
            try partition.interceptPorts(0x3FF..<0x401, with: Silent())
        }
        #expect(partition.portIntercepts.interceptor(for: 0x400) == nil)
        #expect(partition.portIntercepts.interceptor(for: PlatformPorts.hypercall) == nil)
    }

    /// A one-processor `mode=serial` guest, started, whose processor is held in its first COM1
    /// read (`HeldPort`) by the time this returns: a processor busy in an exit.
    static func guestHeldInAPortRead(id: UInt32, name: String) async throws -> (Partition, RecordingObserver, HeldPort) {
        let (partition, observer) = try await guest(id: id, name: name, processors: 1, memoryMiB: 32, arguments: "mode=serial")
        let held = HeldPort()
        do {
            try partition.interceptPorts(0x3F8..<0x400, with: held)
            try partition.start()
        } catch {
            partition.stop()
            throw error
        }
        #expect(held.state.wait(until: { $0.entered }, timeoutNanoseconds: 60_000_000_000) { _ in } != nil)
        return (partition, observer, held)
    }

    /// Whether `partition`'s processors are asked to exit (a stop has begun) within 10 s.
    static func isStopping(_ partition: Partition) -> Bool {
        partition.lifecycle.wait(until: { $0.request == .exit }, timeoutNanoseconds: 10_000_000_000) { _ in true } != nil
    }

    /// A pause waits for every processor to park, but not without bound: a processor held in an
    /// exit (here a port read its interceptor does not answer, as a stalled parent would not)
    /// fails the pause after its timeout, and the partition runs on; once the exit returns, a
    /// pause parks it.
    @Test func aPauseAProcessorCannotReachInTimeFailsAndThePartitionRunsOn() async throws {
        let (partition, observer, held) = try await Self.guestHeldInAPortRead(id: 5, name: "held")
        defer { partition.stop() }

        let asked = ContinuousClock.now
        #expect(throws: PartitionError.self) { try partition.pause(timeout: .milliseconds(300)) }
        #expect(ContinuousClock.now - asked < .seconds(20), "the pause gave up long before the port read ended")
        #expect(partition.state == .running)

        held.state.update { $0.released = true }
        #expect(await observer.waitForLine(containing: "serial: done", timeoutSeconds: 60), "\(observer.lines)")
        try partition.pause()
        #expect(partition.state == .paused)
        try partition.resume()
        #expect(partition.state == .running)
    }

    /// A stop that waits for a processor busy in an exit is not undone by a pause or a resume
    /// asked for meanwhile: they are refused, and the stop ends once the exit returns. (A pause
    /// that overwrote the stop's request to exit parked the processor, and the stop waited for
    /// it for ever.)
    @Test func aPauseOrResumeDuringAStopIsRefusedAndTheStopEnds() async throws {
        let (partition, _, held) = try await Self.guestHeldInAPortRead(id: 6, name: "stopping")
        defer { partition.stop() }

        // The stop waits, on a thread of its own, for the processor held in its port read.
        let stopped = ConditionLock(false)
        let stopper = try OSThread.spawn(name: "stopper") {
            partition.stop()
            stopped.update { $0 = true }
        }
        defer { stopper.join() }
        #expect(Self.isStopping(partition))
        #expect(throws: PartitionError.self) { try partition.pause(timeout: .milliseconds(300)) }
        #expect(throws: PartitionError.self) { try partition.resume() }
        #expect(partition.lifecycle.read { $0.request } == .exit)

        held.state.update { $0.released = true }
        #expect(stopped.wait(until: { $0 }, timeoutNanoseconds: 30_000_000_000) { _ in } != nil,
                "the stop ended once the port read returned")
        #expect(partition.state.isFinal)
    }

    /// Two stops at once (a crash's teardown and a delete, say) both return only once the
    /// processors have ended and the partition is released: the second does not release it
    /// while the first still waits for a processor busy in an exit.
    @Test func aSecondStopWaitsForTheFirstToRelease() async throws {
        let (partition, _, held) = try await Self.guestHeldInAPortRead(id: 7, name: "stopped-twice")
        defer { partition.stop() }

        let stops = ConditionLock(0)
        var stoppers: [OSThread] = []
        for index in 0..<2 {
            stoppers.append(try OSThread.spawn(name: "stopper\(index)") {
                partition.stop()
                stops.update { $0 += 1 }
            })
            #expect(Self.isStopping(partition))
        }
        defer { for stopper in stoppers { stopper.join() } }
        // Neither returns while the processor is still in its port read. (The second stop shows
        // nothing it could be waited for by: the pause gives it time to have returned, as it did
        // at once before.)
        usleep(300_000)
        #expect(stops.read { $0 } == 0)
        #expect(!partition.state.isFinal)
        held.state.update { $0.released = true }
        #expect(stops.wait(until: { $0 == 2 }, timeoutNanoseconds: 30_000_000_000) { _ in } != nil)
        #expect(partition.state.isFinal)
    }

    /// Two starts at once (two API requests) start the partition once: one is refused, each
    /// processor has one thread, and the stop that follows joins them all and returns. Before,
    /// both could pass the state check and give every processor two threads, one of which no
    /// stop would ever kick or join.
    @Test func twoStartsAtOnceStartThePartitionOnce() async throws {
        for round in 0..<4 {
            let (partition, _) = try await Self.guest(id: 20 + UInt32(round), name: "started-twice-\(round)", processors: 32,
                                                      memoryMiB: 64, arguments: "mode=idle")
            let gate = ConditionLock(false)
            let outcomes = ConditionLock([Bool]())
            var starters: [OSThread] = []
            for index in 0..<2 {
                starters.append(try OSThread.spawn(name: "starter\(index)") {
                    _ = gate.wait(until: { $0 }) { _ in }
                    let started = (try? partition.start()) != nil
                    outcomes.update { $0.append(started) }
                })
            }
            gate.update { $0 = true }
            for starter in starters { starter.join() }
            let results = outcomes.read { $0 }
            #expect(results.filter { $0 }.count == 1, "round \(round): \(results)")
            let stopped = ConditionLock(false)
            let stopper = try OSThread.spawn(name: "stopper") {
                partition.stop()
                stopped.update { $0 = true }
            }
            let returned = stopped.wait(until: { $0 }, timeoutNanoseconds: 30_000_000_000) { _ in } != nil
            #expect(returned, "round \(round): the stop returns")
            // A stop that hangs (a processor thread no kick reaches) is left behind, not joined.
            guard returned else { return }
            stopper.join()
            #expect(partition.state.isFinal)
        }
    }

    /// A stop asked for while `start` creates the processors' threads joins every thread it
    /// created: the stop returns, the partition ends stopped, and the start raises no error.
    @Test func aStopDuringStartJoinsEveryProcessor() async throws {
        for round in 0..<4 {
            let (partition, _) = try await Self.guest(id: 40 + UInt32(round), name: "stopped-while-starting-\(round)",
                                                      processors: 32, memoryMiB: 64, arguments: "mode=idle")
            let gate = ConditionLock(false)
            let stopped = ConditionLock(false)
            let stopper = try OSThread.spawn(name: "stopper") {
                _ = gate.wait(until: { $0 }) { _ in }
                partition.stop(reason: "stopped while starting")
                stopped.update { $0 = true }
            }
            gate.update { $0 = true }
            var started = true
            do { try partition.start() } catch { started = false }
            let returned = stopped.wait(until: { $0 }, timeoutNanoseconds: 30_000_000_000) { _ in } != nil
            #expect(returned, "round \(round): the stop returns")
            guard returned else { return }
            stopper.join()
            #expect(partition.state == .stopped(reason: "stopped while starting"))
            // Refused only when the stop came first (the partition was no longer `created`).
            if !started { #expect(partition.isExiting) }
        }
    }

    /// memcpy, memmove and memset are the guest's own (entry.S), on every VSC copy path; so is
    /// the sleep service every waiting guest uses, whose timer must wake it sleep after sleep.
    @Test func guestRuntimeCopiesAreExactAndSleepsWake() async throws {
        let (partition, observer) = try await Self.guest(id: 3, name: "selftest", processors: 1, memoryMiB: 32,
                                                         arguments: "mode=selftest")
        try partition.start()
        let done = await observer.waitForLine(containing: "selftest: done", timeoutSeconds: 120)
        partition.stop()
        let lines = observer.lines
        #expect(done, "\(lines)")
        #expect(lines.contains { $0.contains("selftest: memcpy memmove memset ok") }, "\(lines)")
        #expect(lines.contains { $0.contains("selftest: sleep ok") }, "\(lines)")
        #expect(!lines.contains { $0.contains("FAIL") }, "\(lines)")
    }

    /// A Swift trap in the guest (here an index out of range) executes a `ud2` that is not a
    /// service stub's: the #UD handler reports it as a fault and the partition crashes, where it
    /// once took the trap for a service call and ran on past it.
    @Test func aGuestSwiftTrapIsAFaultNotAServiceCall() async throws {
        let (partition, observer) = try await Self.guest(id: 4, name: "trap", processors: 1, memoryMiB: 32,
                                                         arguments: "mode=trap")
        try partition.start()
        let reported = await observer.waitForLine(containing: "guest: unexpected exception 06", timeoutSeconds: 60)
        var state = partition.state
        for _ in 0..<100 where state == .running {
            try await Task.sleep(for: .milliseconds(50))
            state = partition.state
        }
        partition.stop()
        let lines = observer.lines
        #expect(reported, "\(lines)")
        #expect(state.name == "crashed", "\(state)")
        #expect(!lines.contains { $0.contains("FAIL") }, "\(lines)")
    }

    /// The host may run any processor first (the rig's nested KVM often ran VP 1 first). The
    /// guest's application processors must wait for the bootstrap processor's IDT and hypercall
    /// page; before they did, VP 1 parked through an empty #UD gate and triple-faulted.
    @Test func applicationProcessorsWaitForTheBootstrapProcessor() async throws {
        let (partition, observer) = try await Self.guest(id: 2, name: "late-bsp", processors: 2, memoryMiB: 32,
                                                         arguments: "mode=idle")
        try partition.start(holdingBootstrapProcessorFor: .milliseconds(300))
        let idle = await observer.waitForLine(containing: "guest: idle", timeoutSeconds: 30)
        // VP 1 has had the whole delay, and then some, to fault if it were going to.
        try await Task.sleep(for: .milliseconds(200))
        let state = partition.state
        partition.stop()
        #expect(idle, "\(observer.lines)")
        #expect(state == .running, "\(state)")
    }
}

/// The parent's echo service, in-process: messages come back on the SINT the payload names;
/// events set flag 1 of SINT 5 on VP 0 and ring its doorbell.
final class InProcessEcho: HvMessageConnection, @unchecked Sendable {
    let partition: Partition
    let event = try! EventFD()
    let stopping = Atomic<Bool>(false)
    var thread: OSThread?

    init(partition: Partition) throws {
        self.partition = partition
        partition.hypervisor?.connections.registerMessageConnection(DiagnosticEcho.messageConnection, receiver: self)
        try partition.registerEventConnection(DiagnosticEcho.eventConnection, event: event)
        let doorbell = try partition.doorbell(vp: 0, sint: DiagnosticEcho.eventSINT)
        thread = try OSThread.spawn(name: "echo") { [self] in
            while !stopping.load(ordering: .acquiring) {
                guard (try? event.wait(timeoutMilliseconds: 100)) != nil else { continue }
                guard let memory = partition.memory,
                      let page = partition.hypervisor?.processors[0].pages.eventFlagsPage else { continue }
                let word = GuestPhysicalAddress(page + UInt64(SynIC.eventFlagsOffset(sint: DiagnosticEcho.eventSINT)))
                _ = try? memory.atomicOr(UInt64(1) << UInt64(DiagnosticEcho.eventFlag), at: word, ordering: .sequentiallyConsistent)
                doorbell.signal()
            }
        }
    }

    func receive(from vp: UInt32, type: SynICMessageType, payload: [UInt8]) -> HypercallStatus {
        let sint = Int(payload.first ?? 0)
        guard (0..<SynIC.sintCount).contains(sint),
              partition.hypervisor?.postMessage(vp: Int(vp), sint: sint, type: type, payload: payload) != nil
        else { return .invalidParameter }
        return .success
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        thread?.join()
    }
}

final class RecordingObserver: PartitionObserver, @unchecked Sendable {
    private let state = Mutex<[String]>([])
    var lines: [String] { state.withLock { $0 } }

    func partition(_ partition: Partition, didChangeState state: PartitionState) {}
    func partitionNeedsTeardown(_ partition: Partition) {
        Task.detached { partition.finishStopping() }
    }
    func partition(_ partition: Partition, consoleLine line: String) {
        state.withLock { $0.append(line) }
    }
    func partition(_ partition: Partition, processor vp: UInt32, synicPagesChanged pages: SynICPages) {}

    func waitForLine(containing text: String, timeoutSeconds: Int) async -> Bool {
        for _ in 0..<(timeoutSeconds * 20) {
            if lines.contains(where: { $0.contains(text) }) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    let descriptor = try SystemPackage.FileDescriptor.open(path, .readOnly)
    defer { try? descriptor.close() }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0) }
        if count == 0 { break }
        bytes += chunk[0..<count]
    }
    return bytes
}
