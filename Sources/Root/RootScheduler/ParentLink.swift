import ControlProtocol
import DeviceModel
import Glibc
import HyperV
import HypervisorInterface
import LinuxSupport
import Logging
import Partition
import Privilege
import Synchronization
import VMBusProtocol

/// The root's end of the control socket to the parent partition.
///
/// The root listens; the parent connects (and reconnects after a restart). On every new
/// connection the root hands over each live partition — its guest memory as a memfd, its
/// processors' SynIC pages and its reference clock — and then serves the parent's requests:
/// message and event connections, doorbells, and SynIC messages to post. When the parent goes
/// away, its connections are unregistered and the children keep running: guests see
/// HV_STATUS_INVALID_CONNECTION_ID until a parent registers again.
///
/// The link works on a `PartitionDirectory` (the root scheduler's table), so it runs without
/// KVM against a table of test partitions.
final class ParentLink: Sendable {
    private unowned let directory: any PartitionDirectory
    private let listener: SequencedPacketSocket
    private let current = Mutex<Connection?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<OSThread?>(nil)
    /// How long a guest's read of a parent-emulated port waits for the parent's answer (ns).
    let portReadTimeout: UInt64
    /// How long a process that connects has to say hello.
    let helloTimeoutMilliseconds: Int32
    /// The users a connecting parent may run as (checked with SO_PEERCRED before the welcome).
    let parentUsers: Set<uid_t>
    /// The most message and event connections a parent may register per partition (the VMBus
    /// server uses two, each open channel one, the diagnostic echo two).
    static let registrationLimit = 256

    /// One parent connection and everything the parent registered through it.
    final class Connection: Sendable {
        let channel: ControlChannel
        let logger: Logger
        let portReadTimeout: UInt64
        /// Serializes sends so a partition's attachment precedes its page updates.
        let sendLock = Mutex<Void>(())
        let registrations = Mutex<[UInt32: Registrations]>([:])
        /// Port reads waiting for the parent's answer, by request ID (nil: not answered yet).
        let pendingReads = ConditionLock<[UInt32: UInt32?]>([:])
        let nextRequest = Atomic<UInt32>(1)
        let closed = Atomic<Bool>(false)
        /// Whether a message the parent did not get was already logged as a warning.
        private let dropLogged = Atomic<Bool>(false)

        init(channel: ControlChannel, logger: Logger, portReadTimeout: UInt64) {
            self.channel = channel
            self.logger = logger
            self.portReadTimeout = portReadTimeout
        }

        func send(_ message: RootMessage, descriptors: [Int32] = []) throws(SystemError) {
            try sendLock.withLock { _ throws(SystemError) in try channel.send(message, descriptors: descriptors) }
        }

        /// Sends `message`; a failure is logged (the reader thread then sees the connection end
        /// and forgets the parent's registrations).
        /// - Returns: whether the parent got it.
        @discardableResult
        func post(_ message: RootMessage, descriptors: [Int32] = []) -> Bool {
            do throws(SystemError) {
                try send(message, descriptors: descriptors)
                return true
            } catch {
                dropped(message, error)
                return false
            }
        }

        /// Logs a message the parent did not get: the first on this connection as a warning,
        /// later ones (a failing connection fails every send until the reader notices) at debug.
        func dropped(_ message: RootMessage, _ error: SystemError) {
            let what = "\(message)".prefix(120)
            if dropLogged.exchange(true, ordering: .relaxed) {
                logger.debug("parent partition did not get \(what): \(error)")
            } else {
                logger.warning("parent partition did not get \(what): \(error)")
            }
        }
    }

    struct Registrations {
        var messageConnections: Set<UInt32> = []
        var eventConnections: [UInt32: EventFD] = [:]
        var interceptsPorts = false

        var count: Int { messageConnections.count + eventConnections.count }
    }

    /// Listens on `socketPath` for the parent partition, which runs as `parentUser`: the socket
    /// is that user's, mode 0600, from the moment it appears (see `ParentLink+Authentication`).
    init(directory: any PartitionDirectory, socketPath: String, parentUser: UserIdentity = .current,
         portReadTimeout: UInt64 = 5_000_000_000, helloTimeoutMilliseconds: Int32 = 5000) throws(SystemError) {
        self.directory = directory
        self.portReadTimeout = portReadTimeout
        self.helloTimeoutMilliseconds = helloTimeoutMilliseconds
        parentUsers = [parentUser.uid, geteuid()]
        listener = try Self.listen(on: socketPath, for: parentUser)
    }

    var isConnected: Bool { current.withLock { $0 != nil } }
    var logger: Logger { directory.logger }

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
        var lastFailure: SystemError?
        while !stopping.load(ordering: .acquiring) {
            let socket: SequencedPacketSocket
            do throws(SystemError) {
                socket = try listener.accept()
            } catch {
                if stopping.load(ordering: .acquiring) { return }
                if error != lastFailure { logger.warning("parent socket: \(error); retrying") }
                lastFailure = error
                usleep(100_000)
                continue
            }
            lastFailure = nil
            serve(ControlChannel(socket: socket))
        }
    }

    /// Serves one parent connection until it closes.
    private func serve(_ channel: ControlChannel) {
        guard authenticate(channel) else { return }
        let hello: ControlChannel.Received<ParentMessage>
        do {
            let ready = try Poll.wait(on: [channel.socket.owned.rawValue], timeoutMilliseconds: helloTimeoutMilliseconds)
            guard ready.first == true else {
                logger.warning("a process connected to the parent socket and said nothing; closed")
                return
            }
            hello = try channel.receiveParentMessage()
        } catch {
            logger.warning("a process connected to the parent socket and sent a bad first message (\(error)); closed")
            return
        }
        guard case .message(.hello(let pid), _) = hello else {
            logger.warning("a process connected to the parent socket without saying hello; closed")
            return
        }
        let connection = Connection(channel: channel, logger: logger, portReadTimeout: portReadTimeout)
        do throws(SystemError) {
            try connection.send(.welcome(rootProcessID: UInt32(getpid())))
        } catch {
            logger.warning("could not welcome the parent partition (pid \(pid)): \(error); closed")
            return
        }
        current.withLock { $0 = connection }
        logger.info("parent partition connected (pid \(pid))")
        for partition in directory.linkedPartitions { attach(partition, on: connection) }

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
        // Hang up now: forwarders registered in partitions may hold the connection a while longer.
        channel.socket.shutdown()
        connection.closed.store(true, ordering: .releasing)
        connection.pendingReads.update { reads in
            for key in reads.keys where reads[key] == .some(nil) { reads[key] = .some(0xFFFF_FFFF) }
        }
        forgetRegistrations(of: connection)
        logger.info("parent partition disconnected; children keep running")
    }

    // MARK: Root → parent

    func attach(_ partition: any LinkedPartition) {
        guard let connection = current.withLock({ $0 }) else { return }
        attach(partition, on: connection)
    }

    private func attach(_ partition: any LinkedPartition, on connection: Connection) {
        guard let memory = partition.memory, let hypervisor = partition.hypervisor else { return }
        let time = hypervisor.time
        let attachment = PartitionAttachment(
            partitionID: partition.id, name: partition.name, memorySize: UInt64(memory.size),
            processorCount: UInt32(partition.processorCount),
            clock: ReferenceClock(tscFrequencyHz: time.tscFrequencyHz, scale: time.scale,
                                  guestTSCOffset: time.guestTSCOffset, referenceOffset: time.referenceOffset),
            processors: hypervisor.processors.map { Self.pages($0.index, $0.pages) },
            devices: partition.devices)
        do throws(SystemError) {
            try connection.send(.partitionAttached(attachment),
                                descriptors: [memory.file.rawValue] + partition.resources.map(\.rawValue))
        } catch {
            logger.warning("could not hand partition \(partition.name) to the parent: \(error)")
        }
    }

    func detach(partitionID: UInt32) {
        guard let connection = current.withLock({ $0 }) else { return }
        connection.registrations.withLock { _ = $0.removeValue(forKey: partitionID) }
        connection.post(.partitionDetached(partitionID: partitionID))
    }

    /// A device was added to a running partition: the parent builds and offers it. (A parent
    /// that is away gets it with the partition when it connects.)
    func deviceAdded(partitionID: UInt32, _ spec: DeviceSpec, resources: [OwnedDescriptor]) {
        guard let connection = current.withLock({ $0 }) else { return }
        connection.post(.deviceAdded(partitionID: partitionID, spec), descriptors: resources.map(\.rawValue))
    }

    /// A device was removed from a running partition: the parent rescinds it.
    func deviceRemoved(partitionID: UInt32, instance: GUID) {
        guard let connection = current.withLock({ $0 }) else { return }
        connection.post(.deviceRemoved(partitionID: partitionID, instance: instance))
    }

    /// A running partition's device has new settings.
    func deviceChanged(partitionID: UInt32, _ spec: DeviceSpec, resources: [OwnedDescriptor]) {
        guard let connection = current.withLock({ $0 }) else { return }
        connection.post(.deviceChanged(partitionID: partitionID, spec), descriptors: resources.map(\.rawValue))
    }

    func synicPagesChanged(partitionID: UInt32, vp: UInt32, pages: SynICPages) {
        guard let connection = current.withLock({ $0 }) else { return }
        connection.post(.synicPagesChanged(partitionID: partitionID, Self.pages(vp, pages)))
    }

    /// Asks the parent to shut the guest down through its shutdown integration service.
    func requestShutdown(partitionID: UInt32) throws(ParentLinkError) {
        guard let connection = current.withLock({ $0 }) else { throw .notConnected }
        do throws(SystemError) {
            try connection.send(.shutdownGuest(partitionID: partitionID))
        } catch {
            throw .sendFailed(error)
        }
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
            guard let hypervisor = directory.linkedPartition(id: id)?.hypervisor,
                  mayRegister(connectionID, for: id, on: connection) else { return }
            hypervisor.connections.registerMessageConnection(
                ConnectionID(connectionID), receiver: GuestMessageForwarder(partitionID: id, connectionID: connectionID, connection: connection))
            connection.registrations.withLock { _ = $0[id, default: Registrations()].messageConnections.insert(connectionID) }
        case .unregisterMessageConnection(let id, let connectionID):
            directory.linkedPartition(id: id)?.hypervisor?.connections.unregisterMessageConnection(ConnectionID(connectionID))
            connection.registrations.withLock { _ = $0[id]?.messageConnections.remove(connectionID) }
        case .registerEventConnection(let id, let connectionID):
            guard let partition = directory.linkedPartition(id: id), let descriptor = descriptors.first,
                  mayRegister(connectionID, for: id, on: connection) else { return }
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
            directory.linkedPartition(id: id)?.unregisterEventConnection(ConnectionID(connectionID), event: event)
        case .requestDoorbell(let request, let id, let vp, let sint):
            guard let partition = directory.linkedPartition(id: id) else {
                connection.post(.requestFailed(requestID: request, reason: "no partition \(id)"))
                return
            }
            do throws(PartitionError) {
                let doorbell = try partition.doorbell(vp: vp, sint: Int(sint))
                connection.post(.doorbell(requestID: request, partitionID: id, vp: vp, sint: sint),
                                descriptors: [doorbell.rawValue])
            } catch {
                connection.post(.requestFailed(requestID: request, reason: "\(error)"))
            }
        case .postMessage(let id, let vp, let sint, let type, let payload):
            guard let hypervisor = directory.linkedPartition(id: id)?.hypervisor else { return }
            let result = hypervisor.postMessage(vp: Int(vp), sint: Int(sint), type: SynICMessageType(rawValue: type),
                                                payload: payload)
            if result == .queueFull || result == nil {
                logger.warning("partition \(id): message for VP \(vp) SINT \(sint) dropped (\(result.map { "\($0)" } ?? "invalid"))")
            }
        case .partitionStatus(let id, let facts):
            directory.linkedPartition(id: id)?.merge(facts: facts)
        case .registerPorts(let id, let base, let count):
            // base + count must stay a UInt16: port 0xFFFF cannot be the last one of a range.
            guard let partition = directory.linkedPartition(id: id), count > 0,
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
            guard let partition = directory.linkedPartition(id: id) else {
                connection.post(.requestFailed(requestID: request, reason: "no partition \(id)"))
                return
            }
            do throws(PartitionError) {
                let line = try partition.interruptLine(pin: UInt32(pin))
                connection.post(.interruptLine(requestID: request, partitionID: id, pin: pin), descriptors: [line.rawValue])
            } catch {
                connection.post(.requestFailed(requestID: request, reason: "\(error)"))
            }
        case .consoleOutput(let id, let bytes):
            guard let partition = directory.linkedPartition(id: id) else { return }
            for line in partition.appendConsole(bytes) {
                logger.info("[\(partition.name)] \(line)")
            }
        }
    }

    /// Whether the parent may register one more connection of partition `id`: at most
    /// `registrationLimit` per partition, so a parent cannot grow the root's tables without bound.
    private func mayRegister(_ connectionID: UInt32, for id: UInt32, on connection: Connection) -> Bool {
        let allowed = connection.registrations.withLock { table -> Bool in
            guard let registrations = table[id] else { return true }
            return registrations.count < Self.registrationLimit
                || registrations.messageConnections.contains(connectionID)
                || registrations.eventConnections[connectionID] != nil
        }
        if !allowed {
            logger.warning("partition \(id): the parent partition registered \(Self.registrationLimit) connections; refused \(connectionID)")
        }
        return allowed
    }

    /// A disconnected parent's connections are removed from every partition.
    private func forgetRegistrations(of connection: Connection) {
        let all = connection.registrations.withLock { registrations in
            defer { registrations.removeAll() }
            return registrations
        }
        for (id, registrations) in all {
            guard let partition = directory.linkedPartition(id: id) else { continue }
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
/// wait (up to the link's `portReadTimeout`) for the parent's answer. A parent that is gone, or
/// does not answer in time, reads as 0xFF.
struct ParentPortForwarder: PortInterceptor {
    let partitionID: UInt32
    let connection: ParentLink.Connection

    /// The value of a port nothing answers for (a floating bus).
    static let floating: UInt32 = 0xFFFF_FFFF

    /// The guest on processor `vp` wrote `value` (`size` bytes) to `port`.
    func write(vp: Int, port: UInt16, size: Int, value: UInt32) {
        let message = RootMessage.portWrite(partitionID: partitionID, vp: UInt32(vp), port: port, size: UInt8(size),
                                            value: value)
        do throws(SystemError) {
            try connection.channel.send(message)
        } catch {
            connection.dropped(message, error)
        }
    }

    /// The guest on processor `vp` reads `size` bytes from `port`: asks the parent and waits.
    func read(vp: Int, port: UInt16, size: Int) -> UInt32 {
        guard !connection.closed.load(ordering: .acquiring) else { return Self.floating }
        let request = connection.nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        connection.pendingReads.update { $0[request] = .some(nil) }
        let message = RootMessage.portRead(requestID: request, partitionID: partitionID, vp: UInt32(vp), port: port,
                                           size: UInt8(size))
        do throws(SystemError) {
            try connection.channel.send(message)
        } catch {
            connection.pendingReads.update { _ = $0.removeValue(forKey: request) }
            connection.dropped(message, error)
            return Self.floating
        }
        let answer = connection.pendingReads.wait(
            until: { $0[request] != .some(nil) }, timeoutNanoseconds: connection.portReadTimeout
        ) { reads -> UInt32? in
            reads.removeValue(forKey: request) ?? nil
        }
        if answer == nil { connection.pendingReads.update { _ = $0.removeValue(forKey: request) } }
        return (answer ?? nil) ?? Self.floating
    }

    func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32) {
        write(vp: vp, port: port, size: size, value: value)
    }

    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 {
        read(vp: vp, port: port, size: size)
    }
}

/// Delivers HvPostMessage on a parent-owned connection to the parent, without blocking the
/// posting processor: a full socket is reported to the guest as INSUFFICIENT_BUFFERS, which
/// guests retry (Linux up to 100 times with backoff); a broken one as INVALID_CONNECTION_ID, as
/// if the parent had already gone.
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
            connection.dropped(message, error)
            return .invalidConnectionID
        }
    }
}
