import ControlProtocol
import Glibc
import HyperV
import HypervisorInterface
import LinuxSupport
import Logging
import Partition
import Synchronization

/// The root's end of the control socket to the parent partition.
///
/// The root listens; the parent connects (and reconnects after a restart). On every new
/// connection the root hands over each live partition — its guest memory as a memfd, its
/// processors' SynIC pages and its reference clock — and then serves the parent's requests:
/// message and event connections, doorbells, and SynIC messages to post. When the parent goes
/// away, its connections are unregistered and the children keep running: guests see
/// HV_STATUS_INVALID_CONNECTION_ID until a parent registers again.
final class ParentLink: Sendable {
    private unowned let scheduler: RootScheduler
    private let listener: SequencedPacketSocket
    private let current = Mutex<Connection?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<OSThread?>(nil)

    /// One parent connection and everything the parent registered through it.
    final class Connection: Sendable {
        let channel: ControlChannel
        /// Serializes sends so a partition's attachment precedes its page updates.
        let sendLock = Mutex<Void>(())
        let registrations = Mutex<[UInt32: Registrations]>([:])
        /// Port reads waiting for the parent's answer, by request ID (nil: not answered yet).
        let pendingReads = ConditionLock<[UInt32: UInt32?]>([:])
        let nextRequest = Atomic<UInt32>(1)
        let closed = Atomic<Bool>(false)

        init(channel: ControlChannel) {
            self.channel = channel
        }

        func send(_ message: RootMessage, descriptors: [Int32] = []) throws(SystemError) {
            try sendLock.withLock { _ throws(SystemError) in try channel.send(message, descriptors: descriptors) }
        }
    }

    struct Registrations {
        var messageConnections: Set<UInt32> = []
        var eventConnections: [UInt32: EventFD] = [:]
        var interceptsPorts = false
    }

    init(scheduler: RootScheduler, socketPath: String) throws(SystemError) {
        self.scheduler = scheduler
        listener = try SequencedPacketSocket.listen(path: socketPath)
        chmod(socketPath, 0o600)
    }

    var isConnected: Bool { current.withLock { $0 != nil } }
    private var logger: Logger { scheduler.logger }

    func start() throws(SystemError) {
        let started = try OSThread.spawn(name: "parent-link") { [self] in acceptLoop() }
        thread.withLock { $0 = started }
    }

    func shutdown() {
        stopping.store(true, ordering: .releasing)
        listener.shutdown()
        current.withLock { $0?.channel.socket.shutdown() }
        thread.withLock { $0 }?.join()
    }

    private func acceptLoop() {
        while !stopping.load(ordering: .acquiring) {
            guard let socket = try? listener.accept() else {
                if stopping.load(ordering: .acquiring) { return }
                usleep(100_000)
                continue
            }
            serve(ControlChannel(socket: socket))
        }
    }

    /// Serves one parent connection until it closes.
    private func serve(_ channel: ControlChannel) {
        guard case .message(.hello(let pid), _)? = try? channel.receiveParentMessage() else {
            logger.warning("a process connected to the parent socket without saying hello; closed")
            return
        }
        let connection = Connection(channel: channel)
        do throws(SystemError) {
            try connection.send(.welcome(rootProcessID: UInt32(getpid())))
        } catch {
            return
        }
        current.withLock { $0 = connection }
        logger.info("parent partition connected (pid \(pid))")
        for entry in scheduler.livePartitions { attach(entry, on: connection) }

        while true {
            let received: ControlChannel.Received<ParentMessage>
            do {
                received = try channel.receiveParentMessage()
            } catch {
                logger.warning("parent partition sent a bad control message (\(error)); disconnecting it")
                break
            }
            guard case .message(let message, let descriptors) = received else { break }
            handle(message, descriptors: descriptors, on: connection)
        }
        current.withLock { $0 = nil }
        connection.closed.store(true, ordering: .releasing)
        connection.pendingReads.update { reads in
            for key in reads.keys where reads[key] == .some(nil) { reads[key] = .some(0xFFFF_FFFF) }
        }
        forgetRegistrations(of: connection)
        logger.info("parent partition disconnected; children keep running")
    }

    // MARK: Root → parent

    func attach(_ entry: ManagedPartition) {
        guard let connection = current.withLock({ $0 }) else { return }
        attach(entry, on: connection)
    }

    private func attach(_ entry: ManagedPartition, on connection: Connection) {
        let partition = entry.partition
        guard let memory = partition.memory, let hypervisor = partition.hypervisor else { return }
        let time = hypervisor.time
        let attachment = PartitionAttachment(
            partitionID: partition.id, name: partition.name, memorySize: UInt64(memory.size),
            processorCount: UInt32(partition.processorCount),
            clock: ReferenceClock(tscFrequencyHz: time.tscFrequencyHz, scale: time.scale,
                                  guestTSCOffset: time.guestTSCOffset, referenceOffset: time.referenceOffset),
            processors: hypervisor.processors.map { Self.pages($0.index, $0.pages) },
            devices: entry.devices)
        do throws(SystemError) {
            try connection.send(.partitionAttached(attachment), descriptors: [memory.file.rawValue])
        } catch {
            logger.warning("could not hand partition \(partition.name) to the parent: \(error)")
        }
    }

    func detach(partitionID: UInt32) {
        guard let connection = current.withLock({ $0 }) else { return }
        connection.registrations.withLock { _ = $0.removeValue(forKey: partitionID) }
        try? connection.send(.partitionDetached(partitionID: partitionID))
    }

    func synicPagesChanged(partitionID: UInt32, vp: UInt32, pages: SynICPages) {
        guard let connection = current.withLock({ $0 }) else { return }
        try? connection.send(.synicPagesChanged(partitionID: partitionID, Self.pages(vp, pages)))
    }

    func requestShutdown(partitionID: UInt32) {
        guard let connection = current.withLock({ $0 }) else { return }
        try? connection.send(.shutdownGuest(partitionID: partitionID))
    }

    static func pages(_ vp: UInt32, _ pages: SynICPages) -> ProcessorPages {
        ProcessorPages(vp: vp, synicEnabled: pages.enabled, messagePage: pages.messagePage,
                       eventFlagsPage: pages.eventFlagsPage)
    }

    // MARK: Parent → root

    private func handle(_ message: ParentMessage, descriptors: [OwnedDescriptor], on connection: Connection) {
        switch message {
        case .hello:
            break
        case .registerMessageConnection(let id, let connectionID):
            guard let hypervisor = scheduler.managed(id: id)?.partition.hypervisor else { return }
            hypervisor.connections.registerMessageConnection(
                ConnectionID(connectionID), receiver: GuestMessageForwarder(partitionID: id, connectionID: connectionID, connection: connection))
            connection.registrations.withLock { _ = $0[id, default: Registrations()].messageConnections.insert(connectionID) }
        case .unregisterMessageConnection(let id, let connectionID):
            scheduler.managed(id: id)?.partition.hypervisor?.connections.unregisterMessageConnection(ConnectionID(connectionID))
            connection.registrations.withLock { _ = $0[id]?.messageConnections.remove(connectionID) }
        case .registerEventConnection(let id, let connectionID):
            guard let partition = scheduler.managed(id: id)?.partition, let descriptor = descriptors.first else { return }
            let event = EventFD(adopting: descriptor)
            do throws(PartitionError) {
                try partition.registerEventConnection(ConnectionID(connectionID), event: event)
                connection.registrations.withLock { $0[id, default: Registrations()].eventConnections[connectionID] = event }
            } catch {
                logger.warning("partition \(partition.name): \(error)")
            }
        case .unregisterEventConnection(let id, let connectionID):
            guard let event = connection.registrations.withLock({ $0[id]?.eventConnections.removeValue(forKey: connectionID) })
            else { return }
            scheduler.managed(id: id)?.partition.unregisterEventConnection(ConnectionID(connectionID), event: event)
        case .requestDoorbell(let request, let id, let vp, let sint):
            guard let partition = scheduler.managed(id: id)?.partition else {
                try? connection.send(.requestFailed(requestID: request, reason: "no partition \(id)"))
                return
            }
            do throws(PartitionError) {
                let doorbell = try partition.doorbell(vp: vp, sint: Int(sint))
                try? connection.send(.doorbell(requestID: request, partitionID: id, vp: vp, sint: sint),
                                     descriptors: [doorbell.rawValue])
            } catch {
                try? connection.send(.requestFailed(requestID: request, reason: "\(error)"))
            }
        case .postMessage(let id, let vp, let sint, let type, let payload):
            guard let hypervisor = scheduler.managed(id: id)?.partition.hypervisor else { return }
            let result = hypervisor.postMessage(vp: Int(vp), sint: Int(sint), type: SynICMessageType(rawValue: type),
                                                payload: payload)
            if result == .queueFull || result == nil {
                logger.warning("partition \(id): message for VP \(vp) SINT \(sint) dropped (\(result.map { "\($0)" } ?? "invalid"))")
            }
        case .partitionStatus(let id, let facts):
            scheduler.managed(id: id)?.merge(facts: facts)
        case .registerPorts(let id, let base, let count):
            // base + count must stay a UInt16: port 0xFFFF cannot be the last one of a range.
            guard let partition = scheduler.managed(id: id)?.partition, count > 0,
                  UInt32(base) + UInt32(count) <= UInt32(UInt16.max) else {
                logger.warning("parent partition asked for an invalid port range \(base)+\(count); ignored")
                return
            }
            do throws(PartitionError) {
                try partition.interceptPorts(base..<(base + count),
                                             with: ParentPortForwarder(partitionID: id, connection: connection))
            } catch {
                logger.warning("partition \(partition.name): \(error); ignored")
                return
            }
            connection.registrations.withLock { $0[id, default: Registrations()].interceptsPorts = true }
        case .portReadResult(let request, let value):
            connection.pendingReads.update { reads in
                if reads[request] != nil { reads[request] = .some(value) }
            }
        case .requestInterruptLine(let request, let id, let pin):
            guard let partition = scheduler.managed(id: id)?.partition else {
                try? connection.send(.requestFailed(requestID: request, reason: "no partition \(id)"))
                return
            }
            do throws(PartitionError) {
                let line = try partition.interruptLine(pin: UInt32(pin))
                try? connection.send(.interruptLine(requestID: request, partitionID: id, pin: pin), descriptors: [line.rawValue])
            } catch {
                try? connection.send(.requestFailed(requestID: request, reason: "\(error)"))
            }
        case .consoleOutput(let id, let bytes):
            guard let partition = scheduler.managed(id: id)?.partition else { return }
            for line in partition.console.append(bytes: bytes) {
                scheduler.partition(partition, consoleLine: line)
            }
        }
    }

    /// A disconnected parent's connections are removed from every partition.
    private func forgetRegistrations(of connection: Connection) {
        let all = connection.registrations.withLock { registrations in
            defer { registrations.removeAll() }
            return registrations
        }
        for (id, registrations) in all {
            guard let partition = scheduler.managed(id: id)?.partition else { continue }
            for connectionID in registrations.messageConnections {
                partition.hypervisor?.connections.unregisterMessageConnection(ConnectionID(connectionID))
            }
            for (connectionID, event) in registrations.eventConnections {
                partition.unregisterEventConnection(ConnectionID(connectionID), event: event)
            }
            if registrations.interceptsPorts { partition.removePortIntercepts() }
        }
    }
}

/// Forwards a partition's intercepted port accesses to the parent: writes are posted, reads
/// wait (up to `readTimeout`) for the parent's answer. A parent that is gone reads as 0xFF.
struct ParentPortForwarder: PortInterceptor {
    let partitionID: UInt32
    let connection: ParentLink.Connection
    static let readTimeout: UInt64 = 5_000_000_000

    func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32) {
        try? connection.channel.send(.portWrite(partitionID: partitionID, vp: UInt32(vp), port: port, size: UInt8(size),
                                                value: value))
    }

    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 {
        let floating: UInt32 = 0xFFFF_FFFF
        guard !connection.closed.load(ordering: .acquiring) else { return floating }
        let request = connection.nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        connection.pendingReads.update { $0[request] = .some(nil) }
        do throws(SystemError) {
            try connection.channel.send(.portRead(requestID: request, partitionID: partitionID, vp: UInt32(vp), port: port,
                                                  size: UInt8(size)))
        } catch {
            connection.pendingReads.update { _ = $0.removeValue(forKey: request) }
            return floating
        }
        let answer = connection.pendingReads.wait(
            until: { $0[request] != .some(nil) }, timeoutNanoseconds: Self.readTimeout
        ) { reads -> UInt32? in
            reads.removeValue(forKey: request) ?? nil
        }
        if answer == nil { connection.pendingReads.update { _ = $0.removeValue(forKey: request) } }
        return (answer ?? nil) ?? floating
    }
}

/// Delivers HvPostMessage on a parent-owned connection to the parent, without blocking the
/// posting processor: a full socket is reported to the guest as INSUFFICIENT_BUFFERS, which
/// guests retry (Linux up to 100 times with backoff).
struct GuestMessageForwarder: HvMessageConnection {
    let partitionID: UInt32
    let connectionID: UInt32
    let connection: ParentLink.Connection

    func receive(from vp: UInt32, type: SynICMessageType, payload: [UInt8]) -> HypercallStatus {
        let message = RootMessage.guestMessage(partitionID: partitionID, vp: vp, connectionID: connectionID,
                                               messageType: type.rawValue, payload: payload)
        do throws(SystemError) {
            try connection.channel.send(message, nonBlocking: true)
            return .success
        } catch where error.errno == .resourceTemporarilyUnavailable {
            return .insufficientBuffers
        } catch {
            return .invalidConnectionID
        }
    }
}
