import ControlProtocol
import DeviceModel
import Foundation
import FuzzSupport
import Glibc
import GuestMemory
import HyperV
import HypervisorInterface
import LinuxSupport
import Logging
import Partition
import Synchronization
import VMBusProtocol

/// The control protocol as the root sees it, fuzzed through the real `ParentLink` over a real
/// socket: a hostile parent sends every kind of message with random and boundary fields (partition
/// IDs, connection IDs, processors, SINTs, port ranges, facts, console bytes), valid and mutated
/// bytes, with and without descriptors. The partitions behind the link have no KVM (memfd RAM
/// and the real `HvPartition`), but keep the root's real bounds (`BoundedFacts`, the console's
/// log gate). After every message the root must stay within its bounds, and every so often it
/// must still answer a request: a root that traps, hangs or grows is a finding.
public enum ParentLinkFuzzer {
    /// Runs one session of `cases` messages from `seed`.
    public static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        let directoryPath = FileManager.default.temporaryDirectory.appendingPathComponent("hv-fuzz-link-\(UUID().uuidString)").path
        guard (try? FileManager.default.createDirectory(atPath: directoryPath, withIntermediateDirectories: false,
                                                         attributes: [.posixPermissions: 0o700])) != nil else {
            return [FuzzFinding(caseIndex: 0, message: "cannot make a directory for the socket")]
        }
        defer {
            unlink(directoryPath + "/parent.sock")
            rmdir(directoryPath)
        }
        let directory: FuzzDirectory
        let link: ParentLink
        do {
            directory = try FuzzDirectory()
            link = try ParentLink(directory: directory, socketPath: directoryPath + "/parent.sock",
                                  portReadTimeout: 100_000_000, helloTimeoutMilliseconds: 2000)
            try link.start()
        } catch {
            return [FuzzFinding(caseIndex: 0, message: "cannot set up the link: \(error)")]
        }
        defer { link.shutdown() }
        var findings: [FuzzFinding] = []
        var parent: FuzzParent?
        var corpus: [[UInt8]] = []
        for index in 0..<cases {
            if parent == nil {
                parent = FuzzParent(path: directoryPath + "/parent.sock")
                if parent == nil {
                    findings.append(FuzzFinding(caseIndex: index, message: "the root no longer accepts a parent"))
                    break
                }
            }
            guard let connected = parent else { break }
            var message = Self.message(&random, partitions: directory.ids).bytes
            if random.chance(1, in: 5) { Mutator.mutate(&message, random: &random, corpus: corpus) }
            if corpus.count < 64 { corpus.append(message) } else { corpus[random.int(0...63)] = message }
            let descriptorCount = message.count >= 4 && message[2] == 4 && message[3] == 0  // registerEventConnection
                ? (random.chance(9, in: 10) ? 1 : random.int(0...3)) : (random.chance(1, in: 30) ? random.int(1...3) : 0)
            if !connected.send(message, descriptors: descriptorCount) { parent = nil }
            if parent != nil && !connected.drain() { parent = nil }
            if let problem = directory.boundsProblem() { findings.append(FuzzFinding(caseIndex: index, message: problem)) }
            if index % 128 == 127 {
                if let alive = parent {
                    switch alive.ping(partition: directory.ids[0]) {
                    case .answered: break
                    case .closed: parent = nil
                    case .silent:
                        findings.append(FuzzFinding(caseIndex: index, message: "the root stopped answering requests"))
                        parent = nil
                    }
                }
                progress(index + 1)
            }
            if findings.count > 10 { break }
        }
        parent = nil
        progress(cases)
        return findings
    }

    /// A message a parent could send, with fields drawn near the valid ones.
    static func message(_ random: inout FuzzRandom, partitions: [UInt32]) -> ParentMessage {
        func partition() -> UInt32 { random.chance(9, in: 10) ? random.pick(partitions) : random.interesting(UInt32.self) }
        func connection() -> UInt32 { random.chance(3, in: 4) ? UInt32(random.int(0...600)) : random.interesting(UInt32.self) }
        func vp() -> UInt32 { random.chance(9, in: 10) ? UInt32(random.int(0...1)) : random.interesting(UInt32.self) }
        func sint() -> UInt8 { random.chance(9, in: 10) ? UInt8(random.int(0...15)) : random.interesting(UInt8.self) }
        func text(_ limit: Int) -> String {
            String(decoding: random.bytes(random.chance(1, in: 10) ? random.int(0...limit) : random.int(0...24)).map {
                0x20 + $0 % 0x5F
            }, as: UTF8.self)
        }
        switch random.int(0...14) {
        case 0: return .registerMessageConnection(partitionID: partition(), connectionID: connection())
        case 1: return .unregisterMessageConnection(partitionID: partition(), connectionID: connection())
        case 2, 3: return .registerEventConnection(partitionID: partition(), connectionID: connection())
        case 4: return .unregisterEventConnection(partitionID: partition(), connectionID: connection())
        case 5: return .requestDoorbell(requestID: UInt32(truncatingIfNeeded: random.next()), partitionID: partition(), vp: vp(),
                                        sint: sint())
        case 6: return .postMessage(partitionID: partition(), vp: vp(), sint: sint(),
                                    messageType: random.chance(3, in: 4) ? UInt32(random.int(1...3)) : random.interesting(UInt32.self),
                                    payload: random.bytes(random.int(0...240)))
        case 7:
            var facts: [String: String] = [:]
            for _ in 0..<(random.chance(1, in: 4) ? random.int(0...256) : random.int(0...8)) { facts[text(256)] = text(4096) }
            return .partitionStatus(partitionID: partition(), facts: facts)
        case 8: return .registerPorts(partitionID: partition(), base: random.interesting(UInt16.self),
                                      count: random.chance(3, in: 4) ? UInt16(random.int(0...16)) : random.interesting(UInt16.self),
                                      accessesPerSecond: random.chance(1, in: 2) ? 0 : random.interesting(UInt32.self))
        case 9: return .portReadResult(requestID: UInt32(truncatingIfNeeded: random.next()), value: UInt32(truncatingIfNeeded: random.next()))
        case 10: return .requestInterruptLine(requestID: UInt32(truncatingIfNeeded: random.next()), partitionID: partition(),
                                              pin: random.chance(3, in: 4) ? UInt8(random.int(0...30)) : random.interesting(UInt8.self))
        case 11, 12:
            var bytes = random.bytes(random.chance(1, in: 20) ? random.int(0...65000) : random.int(0...200))
            if random.chance(1, in: 2) { for index in bytes.indices where random.chance(1, in: 8) { bytes[index] = 0x0A } }
            return .consoleOutput(partitionID: partition(), bytes: bytes)
        case 13: return .partitionReady(partitionID: partition())
        default: return .hello(parentProcessID: UInt32(truncatingIfNeeded: random.next()))
        }
    }
}

/// The fuzzer's parent: a raw control socket to the root.
private final class FuzzParent {
    let socket: SequencedPacketSocket
    let channel: ControlChannel
    private var nextPing: UInt32 = 0xF000_0000

    init?(path: String) {
        guard let socket = try? SequencedPacketSocket.connect(path: path) else { return nil }
        self.socket = socket
        channel = ControlChannel(socket: socket)
        guard (try? channel.send(.hello(parentProcessID: UInt32(getpid())))) != nil else { return nil }
        // The welcome and the partitions' attachments.
        guard drain(waitMilliseconds: 2000) else { return nil }
    }

    deinit { socket.shutdown() }

    /// Sends raw bytes with `descriptors` eventfds; false once the root has hung up.
    func send(_ bytes: [UInt8], descriptors: Int) -> Bool {
        let events = (0..<descriptors).compactMap { _ in try? EventFD() }
        do throws(SystemError) {
            try socket.send(bytes, descriptors: events.map(\.rawValue))
            return true
        } catch {
            return error.errno == .messageTooLong
        }
    }

    /// Reads what the root sent (waiting up to `waitMilliseconds` for the first); false once it
    /// has hung up.
    @discardableResult
    func drain(waitMilliseconds: Int32 = 0) -> Bool {
        var wait = waitMilliseconds
        while true {
            guard let ready = try? Poll.wait(on: [socket.owned.rawValue], timeoutMilliseconds: wait) else { return false }
            guard ready.first == true else { return true }
            wait = 0
            guard let received = try? channel.receiveRootMessage(), case .message = received else { return false }
        }
    }

    enum PingOutcome { case answered, closed, silent }

    /// Asks for a doorbell and waits (up to 10 s) for the answer, draining everything else.
    func ping(partition: UInt32) -> PingOutcome {
        nextPing &+= 1
        let request = nextPing
        guard (try? channel.send(.requestDoorbell(requestID: request, partitionID: partition, vp: 0, sint: 2))) != nil else {
            return .closed
        }
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            guard let ready = try? Poll.wait(on: [socket.owned.rawValue], timeoutMilliseconds: 100) else { return .closed }
            guard ready.first == true else { continue }
            guard let received = try? channel.receiveRootMessage(), case .message(let message, _) = received else {
                return .closed
            }
            switch message {
            case .doorbell(let id, _, _, _) where id == request: return .answered
            case .requestFailed(let id, _) where id == request: return .answered
            default: continue
            }
        }
        return .silent
    }
}

/// Partitions with no KVM behind them, with the root's real bounds.
private final class FuzzDirectory: PartitionDirectory {
    let logger = Logger(label: "hv.fuzz") { _ in SwiftLogNoOpLogHandler() }
    let partitions: [FuzzPartition]

    init() throws {
        partitions = try (1...2).map { try FuzzPartition(id: UInt32($0)) }
    }

    var ids: [UInt32] { partitions.map(\.id) }
    var linkedPartitions: [any LinkedPartition] { partitions }
    func linkedPartition(id: UInt32) -> (any LinkedPartition)? { partitions.first { $0.id == id } }

    /// The first bound a partition broke, if any.
    func boundsProblem() -> String? {
        for partition in partitions {
            if let problem = partition.boundsProblem() { return "partition \(partition.id): \(problem)" }
        }
        return nil
    }
}

private final class FuzzPartition: LinkedPartition {
    let id: UInt32
    let name: String
    let processorCount = 2
    let devices: [DeviceSpec] = []
    let resources: [OwnedDescriptor] = []
    let memory: GuestMemory?
    let hypervisor: HvPartition?
    let console = ConsoleLog()
    let consoleGate = ConsoleLogGate()
    private let state = Mutex(State())

    struct State {
        var facts = BoundedFacts()
        var eventConnections: [ConnectionID: EventFD] = [:]
        var doorbells: [Int: EventFD] = [:]
        var lines: [UInt32: EventFD] = [:]
        var ports: [Range<UInt16>] = []
    }

    final class Environment: HvEnvironment {
        func hostTimestampCounter() -> UInt64 { TimestampCounter.read() }
        func guestTimestampCounter(vp: UInt32) -> UInt64? { nil }
        func sintChanged(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool) {}
        func raiseSINT(vp: UInt32, sint: Int) {}
        func synicPagesChanged(vp: UInt32, pages: SynICPages) {}
        func guestCrashReported(parameters: [UInt64], message: String?) {}
    }

    init(id: UInt32) throws {
        self.id = id
        name = "fuzz\(id)"
        let memory = try GuestMemory.create(name: "hv-fuzz-link", size: 2 << 20)
        self.memory = memory
        hypervisor = HvPartition(memory: memory, apicIDs: [0, 1],
                                 time: ReferenceTimeParameters(tscFrequencyHz: 1_000_000_000, guestTSCAtCreation: 0,
                                                               hostTSCAtCreation: TimestampCounter.read()),
                                 environment: Environment())
    }

    func registerEventConnection(_ connection: ConnectionID, event: EventFD, relay: any HvEventRelay) throws(PartitionError) {
        state.withLock { $0.eventConnections[connection] = event }
        hypervisor?.connections.registerEventConnection(connection, event: event, relay: relay)
    }

    func unregisterEventConnection(_ connection: ConnectionID, event: EventFD) {
        state.withLock { _ = $0.eventConnections.removeValue(forKey: connection) }
        hypervisor?.connections.unregisterEventConnection(connection)
    }

    func doorbell(vp: UInt32, sint: Int) throws(PartitionError) -> EventFD {
        guard vp < UInt32(processorCount), (0..<SynIC.sintCount).contains(sint) else {
            throw .invalidSpecification("no SINT \(sint) on processor \(vp)")
        }
        return try state.withLock { state throws(PartitionError) -> EventFD in
            if let existing = state.doorbells[Int(vp) * 16 + sint] { return existing }
            do throws(SystemError) {
                let event = try EventFD()
                state.doorbells[Int(vp) * 16 + sint] = event
                return event
            } catch {
                throw .system("create a doorbell", error)
            }
        }
    }

    func interruptLine(pin: UInt32) throws(PartitionError) -> EventFD {
        guard pin < 24 else { throw .invalidSpecification("the IOAPIC has 24 pins, not \(pin + 1)") }
        return try state.withLock { state throws(PartitionError) -> EventFD in
            if let existing = state.lines[pin] { return existing }
            do throws(SystemError) {
                let event = try EventFD()
                state.lines[pin] = event
                return event
            } catch {
                throw .system("create an interrupt line", error)
            }
        }
    }

    func interceptPorts(_ range: Range<UInt16>, with forwarder: ParentPortForwarder) throws(PartitionError) {
        try state.withLock { state throws(PartitionError) in
            guard !state.ports.contains(where: { $0.overlaps(range) }) else {
                throw .invalidSpecification("ports overlap ports already intercepted")
            }
            guard state.ports.count < PortInterceptLimit.ranges else {
                throw .invalidSpecification("a partition has at most \(PortInterceptLimit.ranges) port ranges")
            }
            state.ports.append(range)
        }
    }

    func removePortIntercepts() { state.withLock { $0.ports.removeAll() } }

    func appendConsole(_ bytes: [UInt8]) -> [String] { consoleGate.admit(console.append(bytes: bytes)) }

    func merge(facts: [String: String]) { state.withLock { _ = $0.facts.merge(facts) } }

    func boundsProblem() -> String? {
        let (facts, events) = state.withLock { ($0.facts.facts.count, $0.eventConnections.count) }
        if facts > BoundedFacts.capacity { return "\(facts) facts kept" }
        if events > ParentLink.registrationLimit { return "\(events) event connections registered" }
        let messageConnections = hypervisor?.connections.messageConnections.count ?? 0
        if messageConnections > ParentLink.registrationLimit { return "\(messageConnections) message connections registered" }
        let consoleBytes = console.snapshot.reduce(0) { $0 + $1.utf8.count }
        if consoleBytes > console.byteCapacity { return "\(consoleBytes) console bytes kept" }
        return nil
    }
}
