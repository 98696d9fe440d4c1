import ControlProtocol
import DeviceModel
import DeviceRegistry
import Foundation
import Glibc
import GuestMemory
import HyperV
import HypervisorInterface
import LinuxSupport
import Logging
import ManagementAPI
@testable import ParentPartition
import Partition
@testable import RootScheduler
import Synchronization
import Testing

// The root's and the parent's ends of the control socket, each either real (`ParentLink` over a
// table of partitions without KVM; `ParentPartitionService`) or scripted by the test (a raw
// `ControlChannel`), over real SOCK_SEQPACKET sockets in a temporary directory.

/// A logger that drops everything.
let quietLogger = Logger(label: "hv.test") { _ in SwiftLogNoOpLogHandler() }

/// Polls `condition` every millisecond until it holds or `seconds` pass (a deadline for the
/// wait, never an expectation about speed).
func eventually(within seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// `eventually` for what needs Swift concurrency's threads to happen (a server task): it
/// sleeps without holding one of them.
func eventuallyAsync(within seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

// MARK: - The root's end

/// The `HvEnvironment` of a test partition: records injected SINTs and forwards SynIC page
/// changes as the real partition's observer does.
final class TestEnvironment: HvEnvironment {
    private let raisedSINTs = Mutex<[String]>([])
    let pagesChanged = Mutex<(@Sendable (UInt32, SynICPages) -> Void)?>(nil)

    func hostTimestampCounter() -> UInt64 { TimestampCounter.read() }
    func guestTimestampCounter(vp: UInt32) -> UInt64? { nil }
    func sintChanged(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool) {}
    func raiseSINT(vp: UInt32, sint: Int) { raisedSINTs.withLock { $0.append("\(vp)/\(sint)") } }
    func synicPagesChanged(vp: UInt32, pages: SynICPages) { pagesChanged.withLock { $0 }?(vp, pages) }
    func guestCrashReported(parameters: [UInt64], message: String?) {}

    var raised: [String] { raisedSINTs.withLock { $0 } }
}

/// A partition as the parent link sees it, with no KVM behind it: memfd RAM, the real Hyper-V
/// emulation (`HvPartition`), and records of what the parent registered.
final class TestPartition: LinkedPartition {
    let id: UInt32
    let name: String
    let processorCount: Int
    let configuration: PartitionConfiguration
    let devices: [DeviceSpec]
    let resources: [OwnedDescriptor] = []
    let environment = TestEnvironment()
    let console = ConsoleLog()
    private let live: Mutex<(memory: GuestMemory, hypervisor: HvPartition)?>
    private let state = Mutex(State())
    /// Runs once, as the next event connection or port range is registered (before it is): a
    /// test puts something the root does meanwhile there.
    let beforeNextRegistration = Mutex<(@Sendable () -> Void)?>(nil)

    struct State {
        var eventConnections: [ConnectionID: EventFD] = [:]
        var doorbells: [String: EventFD] = [:]
        var interruptLines: [UInt32: EventFD] = [:]
        var ports: [(range: Range<UInt16>, forwarder: ParentPortForwarder)] = []
        var facts: [String: String] = [:]
    }

    /// The SynIC pages a guest would set up on each processor.
    static let messagePage: UInt64 = 0x10000
    static let eventFlagsPage: UInt64 = 0x11000

    init(id: UInt32, configuration: PartitionConfiguration) throws {
        self.id = id
        name = configuration.name
        processorCount = configuration.processors
        self.configuration = configuration
        devices = try configuration.resolvedDevices(catalog: DeviceRegistry.catalog)
        let memory = try GuestMemory.create(name: "seam-\(configuration.name)", size: configuration.memoryMiB << 20)
        let time = ReferenceTimeParameters(tscFrequencyHz: 2_000_000_000, guestTSCAtCreation: 1_000,
                                           hostTSCAtCreation: TimestampCounter.read())
        let hypervisor = HvPartition(memory: memory, apicIDs: (0..<UInt32(configuration.processors)).map { $0 },
                                     time: time, environment: environment)
        live = Mutex((memory, hypervisor))
    }

    var memory: GuestMemory? { live.withLock { $0?.memory } }
    var hypervisor: HvPartition? { live.withLock { $0?.hypervisor } }

    /// What the guest's boot code does: SynIC message and event-flags pages, SINT `sint` unmasked
    /// with `vector`, SynIC enabled (TLFS "SynIC MSRs").
    func enableSynIC(vp: Int, sint: Int, vector: UInt8 = 0xF3) throws {
        let hypervisor = try #require(hypervisor)
        let pages = UInt64(vp) * 0x2000
        #expect(hypervisor.writeMSR(vp: vp, index: SyntheticMSR.synicMessagePage.rawValue, value: (Self.messagePage + pages) | 1))
        #expect(hypervisor.writeMSR(vp: vp, index: SyntheticMSR.synicEventFlagsPage.rawValue,
                                    value: (Self.eventFlagsPage + pages) | 1))
        #expect(hypervisor.writeMSR(vp: vp, index: SyntheticMSR.sint(sint).rawValue, value: UInt64(vector)))
        #expect(hypervisor.writeMSR(vp: vp, index: SyntheticMSR.synicControl.rawValue, value: 1))
    }

    /// The guest's HvPostMessage from processor `vp`: the input block at `inputPage`, then the
    /// hypercall page's slow path. Returns the hypercall status.
    func postMessage(vp: Int = 0, connection: ConnectionID, type: SynICMessageType, payload: [UInt8],
                     inputPage: UInt64 = 0x20000) throws -> HypercallStatus {
        let memory = try #require(memory)
        var block = [UInt8](repeating: 0, count: PostMessageInput.size)
        block.storeLittleEndian(connection.rawValue, at: PostMessageInput.connectionIDOffset)
        block.storeLittleEndian(type.rawValue, at: PostMessageInput.messageTypeOffset)
        block.storeLittleEndian(UInt32(payload.count), at: PostMessageInput.payloadSizeOffset)
        block.replaceSubrange(PostMessageInput.payloadOffset..<(PostMessageInput.payloadOffset + payload.count), with: payload)
        try memory.write(block, at: GuestPhysicalAddress(inputPage))
        let result = try #require(hypervisor).hypercall(
            vp: vp, HypercallRegisters(control: HypercallControl(code: .postMessage).rawValue, input: inputPage, output: 0))
        return HypercallStatus(rawValue: UInt16(truncatingIfNeeded: result))
    }

    /// The guest's fast HvSignalEvent on `connection` (flag 0).
    func signalEvent(vp: Int = 0, connection: ConnectionID) throws -> HypercallStatus {
        let result = try #require(hypervisor).hypercall(
            vp: vp, HypercallRegisters(control: HypercallControl(code: .signalEvent, fast: true).rawValue,
                                       input: UInt64(connection.rawValue), output: 0))
        return HypercallStatus(rawValue: UInt16(truncatingIfNeeded: result))
    }

    /// Takes the message in SINT `sint`'s slot of processor `vp`, as the guest would.
    func takeMessage(vp: Int = 0, sint: Int) throws -> (type: UInt32, payload: [UInt8])? {
        let memory = try #require(memory)
        let slot = GuestPhysicalAddress(Self.messagePage + UInt64(vp) * 0x2000 + UInt64(SynIC.messageSlotOffset(sint: sint)))
        let type = try memory.atomicLoad(UInt32.self, at: slot, ordering: .acquiring)
        guard type != 0 else { return nil }
        let size = Int(try memory.load(UInt8.self, at: try #require(slot.advanced(by: UInt64(MessageSlot.payloadSizeOffset)))))
        let payload = try memory.read(at: try #require(slot.advanced(by: UInt64(MessageSlot.payloadOffset))), count: min(size, 240))
        _ = try memory.compareExchange(expected: type, desired: 0, at: slot)
        return (type, payload)
    }

    /// The partition stopped: its memory and Hyper-V interface are gone.
    func stop() { live.withLock { $0 = nil } }

    // MARK: LinkedPartition

    func registerEventConnection(_ connection: ConnectionID, event: EventFD, relay: any HvEventRelay) throws(PartitionError) {
        beforeNextRegistration.withLock { hook in defer { hook = nil }; return hook }?()
        guard let hypervisor else { throw .invalidTransition(from: .stopped(reason: "test"), operation: "register an event connection of") }
        hypervisor.connections.registerEventConnection(connection, event: event, relay: relay)
        state.withLock { $0.eventConnections[connection] = event }
    }

    func unregisterEventConnection(_ connection: ConnectionID, event: EventFD) {
        hypervisor?.connections.unregisterEventConnection(connection)
        state.withLock { _ = $0.eventConnections.removeValue(forKey: connection) }
    }

    func doorbell(vp: UInt32, sint: Int) throws(PartitionError) -> EventFD {
        guard vp < UInt32(processorCount), (0..<SynIC.sintCount).contains(sint) else {
            throw .invalidSpecification("no SINT \(sint) on processor \(vp)")
        }
        return try state.withLock { state throws(PartitionError) -> EventFD in
            if let existing = state.doorbells["\(vp)/\(sint)"] { return existing }
            do throws(SystemError) {
                let event = try EventFD()
                state.doorbells["\(vp)/\(sint)"] = event
                return event
            } catch {
                throw .system("could not create doorbell", error)
            }
        }
    }

    func interruptLine(pin: UInt32) throws(PartitionError) -> EventFD {
        guard pin < 24 else { throw .invalidSpecification("the IOAPIC has 24 pins, not \(pin + 1)") }
        return try state.withLock { state throws(PartitionError) -> EventFD in
            if let existing = state.interruptLines[pin] { return existing }
            do throws(SystemError) {
                let event = try EventFD()
                state.interruptLines[pin] = event
                return event
            } catch {
                throw .system("could not route IOAPIC pin \(pin)", error)
            }
        }
    }

    func interceptPorts(_ range: Range<UInt16>, with forwarder: ParentPortForwarder) throws(PartitionError) {
        beforeNextRegistration.withLock { hook in defer { hook = nil }; return hook }?()
        // As `Partition.interceptPorts`: never the root's own ports, each port once.
        if PlatformPorts.rootOwned.contains(where: range.contains) {
            throw .invalidSpecification("ports include one the root handles itself")
        }
        let added = state.withLock { state -> Bool in
            guard !state.ports.contains(where: { $0.range.overlaps(range) }) else { return false }
            state.ports.append((range, forwarder))
            return true
        }
        if !added { throw .invalidSpecification("ports overlap ports already intercepted") }
    }

    func removePortIntercepts() { state.withLock { $0.ports.removeAll() } }

    func appendConsole(_ bytes: [UInt8]) -> [String] { console.append(bytes: bytes) }

    func merge(facts: [String: String]) { state.withLock { $0.facts.merge(facts) { _, new in new } } }

    // MARK: What the parent registered

    var eventConnections: [ConnectionID: EventFD] { state.withLock { $0.eventConnections } }
    func doorbellIfRequested(vp: UInt32, sint: Int) -> EventFD? { state.withLock { $0.doorbells["\(vp)/\(sint)"] } }
    func interruptLineIfRequested(pin: UInt32) -> EventFD? { state.withLock { $0.interruptLines[pin] } }
    func forwarder(for port: UInt16) -> ParentPortForwarder? {
        state.withLock { $0.ports.first { $0.range.contains(port) }?.forwarder }
    }
    var interceptedRanges: [Range<UInt16>] { state.withLock { $0.ports.map(\.range) } }
    var facts: [String: String] { state.withLock { $0.facts } }
    var messageConnections: [ConnectionID] { hypervisor?.connections.messageConnections ?? [] }
}

/// The partition table of a test root.
final class TestPartitionTable: PartitionDirectory {
    let logger: Logger
    private let partitions = Mutex<[TestPartition]>([])
    private let nextID = Atomic<UInt32>(1)

    init(logger: Logger = quietLogger) {
        self.logger = logger
    }

    var linkedPartitions: [any LinkedPartition] { partitions.withLock { $0.filter { $0.memory != nil } } }

    func linkedPartition(id: UInt32) -> (any LinkedPartition)? { partitions.withLock { $0.first { $0.id == id } } }

    /// Virtual switches the link hands a parent that connects, before the partitions.
    let switches = Mutex<[ManagedSwitch]>([])
    var linkedSwitches: [ManagedSwitch] { switches.withLock { $0 } }

    /// Adds a partition; the link hands it to a parent that connects from now on.
    func add(_ name: String, processors: Int = 1, memoryMiB: Int = 16, devices: [DeviceConfiguration] = [],
             linux: Bool = false) throws -> TestPartition {
        let guest: PartitionConfiguration.Guest = linux
            ? .linux(kernel: "/nonexistent/bzImage", initrd: nil, commandLine: "console=ttyS0")
            : .embedded(image: "Guest", arguments: "", imagePath: nil)
        let configuration = PartitionConfiguration(name: name, processors: processors, memoryMiB: memoryMiB, guest: guest,
                                                   devices: devices)
        let partition = try TestPartition(id: nextID.wrappingAdd(1, ordering: .relaxed).oldValue, configuration: configuration)
        partitions.withLock { $0.append(partition) }
        return partition
    }
}

/// A runtime directory for one test's sockets.
final class SocketDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("hv-seam-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    var parentSocket: String { "\(path)/parent.sock" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The root's real end: a `ParentLink` listening in a fresh directory, serving `table`.
final class RootEnd {
    let directory: SocketDirectory
    let table: TestPartitionTable
    let link: ParentLink

    init(table: TestPartitionTable = TestPartitionTable(), portReadTimeout: UInt64 = 5_000_000_000,
         helloTimeoutMilliseconds: Int32 = 5000, directory: SocketDirectory? = nil) throws {
        self.directory = try directory ?? SocketDirectory()
        self.table = table
        link = try ParentLink(directory: table, socketPath: self.directory.parentSocket, portReadTimeout: portReadTimeout,
                              helloTimeoutMilliseconds: helloTimeoutMilliseconds)
        try link.start()
    }

    var socketPath: String { directory.parentSocket }

    /// Forwards SynIC page changes of `partition` to the parent, as the root scheduler does.
    func observe(_ partition: TestPartition) {
        let id = partition.id
        partition.environment.pagesChanged.withLock {
            $0 = { [link] vp, pages in link.synicPagesChanged(partitionID: id, vp: vp, pages: pages) }
        }
    }

    func stop() { link.shutdown() }
}

// MARK: - The parent's end

/// The parent's real end: a `ParentPartitionService` running on its own thread.
final class ParentEnd {
    let service: ParentPartitionService
    private let thread: OSThread

    init(socketPath: String, logger: Logger = quietLogger) throws {
        let service = ParentPartitionService(socketPath: socketPath, deviceTypes: DeviceRegistry.devices, logger: logger)
        self.service = service
        thread = try OSThread.spawn(name: "test-parent") { service.run() }
    }

    func child(_ id: UInt32) -> ChildPartition? { service.child(id) }

    func stop() {
        service.stop()
        thread.join()
    }
}

/// One end of the control socket scripted by the test, with a deadline on every receive.
struct ScriptedEnd {
    let channel: ControlChannel

    init(_ socket: SequencedPacketSocket) { channel = ControlChannel(socket: socket) }

    /// Connects to a listening root as a parent that has said hello and been welcomed.
    static func parent(connectingTo path: String) throws -> ScriptedEnd {
        let end = ScriptedEnd(try SequencedPacketSocket.connect(path: path))
        try end.channel.send(.hello(parentProcessID: 4242))
        guard case .message(.welcome, _) = try end.rootMessage() else { throw ScriptError.unexpected("no welcome") }
        return end
    }

    enum ScriptError: Error { case timedOut, unexpected(String) }

    private func waitReadable(_ seconds: Int32) throws {
        guard try Poll.wait(on: [channel.socket.owned.rawValue], timeoutMilliseconds: seconds * 1000).first == true else {
            throw ScriptError.timedOut
        }
    }

    /// The next root message (as a parent), or `.closed`.
    func rootMessage(within seconds: Int32 = 10) throws -> ControlChannel.Received<RootMessage> {
        try waitReadable(seconds)
        return try channel.receiveRootMessage()
    }

    /// The next parent message (as a root), or `.closed`.
    func parentMessage(within seconds: Int32 = 10) throws -> ControlChannel.Received<ParentMessage> {
        try waitReadable(seconds)
        return try channel.receiveParentMessage()
    }

    /// Root messages until one matches `match` (skipping others); nil if the connection closed.
    func rootMessage<T>(until match: (RootMessage, [OwnedDescriptor]) -> T?) throws -> T? {
        while true {
            guard case .message(let message, let descriptors) = try rootMessage() else { return nil }
            if let found = match(message, descriptors) { return found }
        }
    }

    /// Parent messages until one matches `match`; nil if the connection closed.
    func parentMessage<T>(until match: (ParentMessage, [OwnedDescriptor]) -> T?) throws -> T? {
        while true {
            guard case .message(let message, let descriptors) = try parentMessage() else { return nil }
            if let found = match(message, descriptors) { return found }
        }
    }

    /// Whether the peer has closed the connection (reading and discarding what it sent before);
    /// a receive error counts as closed too.
    func closes(within seconds: Int32 = 10) -> Bool {
        while true {
            do {
                guard case .message = try rootOrParentBytes(within: seconds) else { return true }
            } catch ScriptError.timedOut {
                return false
            } catch {
                return true
            }
        }
    }

    private enum Raw { case message, closed }

    private func rootOrParentBytes(within seconds: Int32) throws -> Raw {
        try waitReadable(seconds)
        let (bytes, descriptors) = try channel.socket.receive()
        return bytes.isEmpty && descriptors.isEmpty ? .closed : .message
    }

    /// Sends raw bytes (and descriptors) past `ControlChannel`'s checks, as a hostile peer would.
    func sendRaw(_ bytes: [UInt8], descriptors: [OwnedDescriptor] = []) throws {
        try withExtendedLifetime(descriptors) {
            try channel.socket.send(bytes, descriptors: descriptors.map(\.rawValue))
        }
    }

    func close() { channel.socket.shutdown() }
}

/// A root scripted by the test: it listens where a parent looks for the root.
final class ScriptedRoot {
    let directory: SocketDirectory
    let listener: SequencedPacketSocket

    init() throws {
        directory = try SocketDirectory()
        listener = try SequencedPacketSocket.listen(path: directory.parentSocket)
    }

    var socketPath: String { directory.parentSocket }

    /// Accepts the parent's next connection, takes its hello and welcomes it.
    func accept(within seconds: Int32 = 10) throws -> ScriptedEnd {
        guard try Poll.wait(on: [listener.owned.rawValue], timeoutMilliseconds: seconds * 1000).first == true else {
            throw ScriptedEnd.ScriptError.timedOut
        }
        let end = ScriptedEnd(try listener.accept())
        guard case .message(.hello, _) = try end.parentMessage() else { throw ScriptedEnd.ScriptError.unexpected("no hello") }
        try end.channel.send(.welcome(rootProcessID: 1))
        return end
    }

    func close() { listener.shutdown() }
}

extension ScriptedEnd {
    /// Sends one datagram of `count` bytes, bypassing the socket wrapper's size limit.
    func sendOversized(_ count: Int) throws {
        let bytes = [UInt8](repeating: 0x41, count: count)
        let sent = bytes.withUnsafeBytes { Glibc.send(channel.socket.owned.rawValue, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }
        guard sent == count else { throw SystemError.current("send \(count) bytes") }
    }

    /// As a parent: whether the root still serves this connection (it answers a doorbell request
    /// for a partition it does not have), skipping whatever else it sends first; false if it hung
    /// up. Throws `ScriptError.timedOut` if it did neither.
    func rootAnswers(probe request: UInt32) throws -> Bool {
        do {
            try channel.send(.requestDoorbell(requestID: request, partitionID: 0xDEAD, vp: 0, sint: 2))
            return try rootMessage { message, _ in
                if case .requestFailed(request, _) = message { return true }
                return nil
            } ?? false
        } catch is SystemError {
            return false  // EPIPE or ECONNRESET: hung up
        }
    }

    /// As a root: whether the parent still serves this connection (it answers a port read for a
    /// partition it does not have with 0xFFFFFFFF), skipping whatever else it sends first; false
    /// if it hung up. Throws `ScriptError.timedOut` if it did neither.
    func parentAnswers(probe request: UInt32) throws -> Bool {
        do {
            try channel.send(.portRead(requestID: request, partitionID: 0xDEAD, vp: 0, port: 0x3F8, size: 1))
            return try parentMessage { message, _ in
                if case .portReadResult(request, 0xFFFF_FFFF) = message { return true }
                return nil
            } ?? false
        } catch is SystemError {
            return false  // EPIPE or ECONNRESET: hung up
        }
    }
}
