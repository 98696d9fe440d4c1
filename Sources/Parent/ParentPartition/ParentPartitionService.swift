import ControlProtocol
import DeviceHost
import DeviceModel
import Glibc
import GuestMemory
import LinuxSupport
import Logging
import Synchronization
import VMBusHost
import VMBusProtocol

/// The `hv parent` process: connects to the root scheduler, maps each child partition's
/// memory, and runs the services that serve it. If the root goes away it keeps retrying, so
/// the two processes can be started in either order and restarted independently.
public final class ParentPartitionService: Sendable {
    public let socketPath: String
    let logger: Logger
    /// The device types this parent can build (`DeviceRegistry.devices`).
    let deviceTypes: [any ParentDevice.Type]
    private let children = Mutex<[UInt32: ChildPartition]>([:])
    private let connection = Mutex<RootConnection?>(nil)
    /// The socket of a connection still shaking hands, so `stop()` can interrupt it.
    private let connecting = Mutex<SequencedPacketSocket?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// Back ends shared by every child's devices (the virtual switches).
    let backends = SharedBackends()
    /// The virtual switches the root configured.
    let switches: SwitchService
    /// Saved state the root sent for partitions it has not attached yet (it comes just before
    /// their `partitionAttached`), by partition and record key.
    private let arrivingState = Mutex<[UInt32: [UInt64: [UInt8]]]>([:])
    /// The root's jobs for partitions this parent does not serve, counted so they can be
    /// acknowledged (the root would otherwise stop sending that partition anything).
    private let strayJobs = Mutex<[UInt32: UInt64]>([:])

    /// The users a root scheduler may run as (checked with SO_PEERCRED before the hello).
    let rootUsers: Set<uid_t>
    /// Whether a root of another user was already reported (later ones are logged at debug).
    let strangerReported = Atomic<Bool>(false)

    /// - Parameter rootUsers: who may be the root: by default root and this process's user (a
    ///   sandboxed parent passes the user it was started as).
    public init(socketPath: String, deviceTypes: [any ParentDevice.Type], logger: Logger,
                rootUsers: Set<uid_t> = [0, geteuid()]) {
        self.socketPath = socketPath
        self.deviceTypes = deviceTypes
        self.logger = logger
        switches = SwitchService(logger: logger)
        backends.register(switches.directory)
        self.rootUsers = rootUsers
    }

    /// Serves until `stop()`; reconnects whenever the root is away.
    public func run() {
        var announcedWait = false
        while !stopping.load(ordering: .acquiring) {
            let root: RootConnection
            do {
                root = try connect()
            } catch {
                if !announcedWait {
                    logger.info("waiting for the root scheduler at \(socketPath)")
                    announcedWait = true
                }
                usleep(200_000)
                continue
            }
            announcedWait = false
            arrivingState.withLock { $0.removeAll() }
            strayJobs.withLock { $0.removeAll() }
            connection.withLock { $0 = root }
            if stopping.load(ordering: .acquiring) { root.channel.socket.shutdown() }
            logger.info("connected to the root scheduler")
            serve(root)
            connection.withLock { $0 = nil }
            // Hang up at once (the root sees the parent go even while the children are detached)
            // and drop the requests the root never answered: their completions hold children,
            // which hold this connection.
            root.close()
            // When stopping, `run()` returns only once the children are released (their
            // channels' workers have stopped); otherwise the reconnect goes on meanwhile.
            detachAll(waiting: stopping.load(ordering: .acquiring))
            // The root sends its switches again when the parent reconnects.
            switches.stopAll()
            if !stopping.load(ordering: .acquiring) { logger.info("root scheduler went away; reconnecting") }
        }
    }

    /// Makes `run()` return.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        connecting.withLock { $0?.shutdown() }
        connection.withLock { $0?.channel.socket.shutdown() }
    }

    /// Connects to the root and shakes hands; `stop()` interrupts both.
    private func connect() throws -> RootConnection {
        let socket = try SequencedPacketSocket.connect(path: socketPath)
        connecting.withLock { $0 = socket }
        defer { connecting.withLock { $0 = nil } }
        guard !stopping.load(ordering: .acquiring) else { throw SystemError("connect to the root scheduler", errno: .canceled) }
        try authenticateRoot(socket)
        return try RootConnection.handshake(on: socket, logger: logger)
    }

    private func serve(_ root: RootConnection) {
        while true {
            let received: ControlChannel.Received<RootMessage>
            do {
                received = try root.channel.receiveRootMessage()
            } catch {
                logger.warning("bad control message from the root: \(error)")
                return
            }
            guard case .message(let message, let descriptors) = received else { return }
            handle(message, descriptors: descriptors, root: root)
        }
    }

    private func handle(_ message: RootMessage, descriptors: [OwnedDescriptor], root: RootConnection) {
        switch message {
        case .welcome:
            break
        case .partitionAttached(let attachment):
            attach(attachment, memoryFile: descriptors[0], resources: Array(descriptors.dropFirst()), root: root)
        case .partitionDetached(let id):
            arrivingState.withLock { _ = $0.removeValue(forKey: id) }
            strayJobs.withLock { _ = $0.removeValue(forKey: id) }
            if let child = children.withLock({ $0.removeValue(forKey: id) }) { detach([child]) }
            root.closeLane(id)
            logger.info("partition \(id) detached")
        case .synicPagesChanged(let id, let pages):
            child(id)?.updatePages(pages)
        case .guestMessage(let id, let vp, let connectionID, let type, let payload):
            rootJob(id, root: root) { child in child.deliver(vp: vp, connectionID: connectionID, type: type, payload: payload) }
        case .sequencedGuestMessage(let message):
            rootJob(message.partitionID, sequence: message.sequence, root: root) { child in
                child.deliver(vp: message.vp, connectionID: message.connectionID, type: message.messageType,
                              payload: message.payload, sequence: message.sequence)
            }
        case .doorbell(let request, _, _, _):
            root.complete(request: request, doorbell: EventFD(adopting: descriptors[0]))
        case .requestFailed(let request, let reason):
            logger.warning("root refused request \(request): \(reason)")
            root.complete(request: request, doorbell: nil)
        case .requestStatistics(let request, let id):
            // Counters are atomics: answered here, without waiting for the child's control thread.
            root.answer(.partitionStatistics(requestID: request, partitionID: id, channels: child(id)?.channelStatistics ?? []))
        case .shutdownGuest(let id):
            rootJob(id, root: root) { child in child.requestGuestShutdown() }
        case .portWrite(let id, let vp, let port, let size, let value):
            rootJob(id, root: root) { child in child.portWrite(vp: vp, port: port, size: Int(size), value: value) }
        case .portRead(let request, let id, let vp, let port, let size):
            // The guest processor waits for the answer: a partition that cannot take the
            // request gets an undriven bus (all ones) at once rather than the root's timeout.
            let queued = rootJob(id, root: root) { child in
                root.portReadResult(requestID: request, value: child.portRead(vp: vp, port: port, size: Int(size)))
            }
            if !queued { root.portReadResult(requestID: request, value: 0xFFFF_FFFF) }
        case .interruptLine(let request, _, _):
            root.complete(request: request, doorbell: EventFD(adopting: descriptors[0]))
        case .deviceAdded(let id, let spec):
            rootJob(id, root: root) { child in child.addDevice(spec, resources: descriptors) }
        case .deviceRemoved(let id, let instance):
            rootJob(id, root: root) { child in child.removeDevice(instance) }
        case .deviceChanged(let id, let spec):
            rootJob(id, root: root) { child in child.changeDevice(spec, resources: descriptors) }
        case .portReadString(let request, let id, let vp, let port, let size, let count):
            // As `portRead`: a partition that cannot take the request reads a floating bus at once.
            // Only what one answer carries is read: a count beyond it is not allocated, let alone
            // read from the device.
            let total = min(Int(size) * Int(count), RootMessage.maximumStringBytes)
            let elements = size == 0 ? 0 : min(Int(count), RootMessage.maximumStringBytes / Int(size))
            let queued = rootJob(id, root: root) { child in
                let bytes = child.portReadString(vp: vp, port: port, size: Int(size), count: elements)
                root.answer(.portReadStringResult(requestID: request, bytes: Array(bytes.prefix(total))))
            }
            if !queued { root.answer(.portReadStringResult(requestID: request, bytes: [UInt8](repeating: 0xFF, count: total))) }
        case .portWriteString(let id, let vp, let port, let size, let bytes):
            rootJob(id, root: root) { child in child.portWriteString(vp: vp, port: port, size: Int(size), bytes: bytes) }
        case .switchAttached(let spec):
            switches.attach(spec, descriptor: descriptors.first)
        case .switchDetached(let name):
            switches.detach(name)
        case .savedState(let id, let records):
            receiveSavedState(id, records)
        }
    }

    /// Runs one of the root's jobs on partition `id`'s control thread. For a partition this
    /// parent does not serve, or whose queue refuses it, the job is acknowledged at once.
    /// - Returns: whether it was queued.
    @discardableResult
    private func rootJob(_ id: UInt32, sequence: UInt64 = 0, root: RootConnection,
                         _ job: @escaping @Sendable (ChildPartition) -> Void) -> Bool {
        if let child = child(id) {
            return child.performRootJob(sequence: sequence) { job(child) }
        }
        let jobs = strayJobs.withLock { strays -> UInt64 in
            if strays[id] == nil && strays.count >= Self.strayPartitionLimit { strays.removeAll() }
            strays[id, default: 0] += 1
            return strays[id] ?? 0
        }
        root.acknowledge(partitionID: id, jobs: jobs, sequence: sequence)
        return false
    }

    /// The most partitions whose stray jobs are counted at once.
    static let strayPartitionLimit = 1024

    /// Keeps saved state that arrives ahead of its partition, within `SavedStateLimits`.
    private func receiveSavedState(_ id: UInt32, _ records: [StateRecord]) {
        let kept = arrivingState.withLock { arriving -> Bool in
            guard arriving[id] != nil || arriving.count < Self.strayPartitionLimit else { return false }
            var state = arriving[id] ?? [:]
            for record in records { state[record.key] = record.bytes }
            let bytes = state.values.reduce(0) { $0 + $1.count }
            guard state.count <= SavedStateLimits.maximumRecords, bytes <= SavedStateLimits.maximumBytes else {
                arriving[id] = nil
                return false
            }
            arriving[id] = state
            return true
        }
        if !kept { logger.error("the root's saved state of partition \(id) is larger than a saved state may be; ignored") }
    }

    /// The child partition with root-assigned `id`, while it is attached.
    func child(_ id: UInt32) -> ChildPartition? {
        children.withLock { $0[id] }
    }

    /// The processor counts a partition can have (the root's limit, `PartitionSpecification`).
    static let processorLimit: ClosedRange<UInt32> = 1...64

    /// - Parameter resources: the devices' host resources, device by device (the receive already
    ///   checked there is one per `DeviceSpec.resources` entry).
    private func attach(_ attachment: PartitionAttachment, memoryFile: OwnedDescriptor, resources: [OwnedDescriptor],
                        root: RootConnection) {
        guard Self.processorLimit.contains(attachment.processorCount) else {
            logger.error("the root attached partition \(attachment.name) with \(attachment.processorCount) processors; ignored")
            return
        }
        // Each processor's SynIC pages once, for a processor the partition has.
        let vps = attachment.processors.map(\.vp)
        guard Set(vps).count == vps.count, vps.allSatisfy({ $0 < attachment.processorCount }) else {
            logger.error("the root attached partition \(attachment.name) with SynIC pages for processors \(vps.prefix(8)) of \(attachment.processorCount); ignored")
            return
        }
        let memory: GuestMemory
        do {
            // A size no mapping can have (beyond Int) is refused as a size of 0 is.
            memory = try GuestMemory(mapping: memoryFile, size: Int(exactly: attachment.memorySize) ?? 0)
        } catch {
            logger.error("cannot map the memory of partition \(attachment.name): \(error)")
            return
        }
        let id = attachment.partitionID
        let saved = arrivingState.withLock { $0.removeValue(forKey: id) } ?? [:]
        // A second attachment of the same partition replaces the first, whose services stop; the
        // root's jobs counted so far stay counted.
        let jobs = child(id)?.rootJobs.withLock { $0 } ?? RootJobs(received: strayJobs.withLock { $0[id] } ?? 0,
                                                                    completed: strayJobs.withLock { $0[id] } ?? 0)
        strayJobs.withLock { _ = $0.removeValue(forKey: id) }
        root.openLane(id)
        let child: ChildPartition
        do {
            child = try ChildPartition(attachment: attachment, memory: memory, root: root, deviceTypes: deviceTypes,
                                       backends: backends, logger: logger, savedState: saved, jobs: jobs)
        } catch {
            logger.error("cannot serve partition \(attachment.name): \(error)")
            return
        }
        if let replaced = children.withLock({ $0.updateValue(child, forKey: id) }) { detach([replaced]) }
        // The services start on the partition's control thread, ahead of everything the guest
        // sends: the root hands the messages an earlier parent left unanswered to the VMBus
        // service once it registers its connections, which it does after restoring its state.
        child.perform { [logger] in
            do {
                child.add(try DiagnosticEchoService(partition: child))
            } catch {
                logger.error("partition \(attachment.name): cannot start the diagnostic echo: \(error)")
            }
            child.attachDevices(attachment.devices, resources: resources)
            // After the devices' port registrations in the same lane: the root may run it now.
            root.partitionReady(id)
        }
        logger.info("serving partition \(attachment.name) (id \(id), \(attachment.memorySize >> 20) MiB\(saved.isEmpty ? "" : ", restoring its saved state"))")
    }

    private func detachAll(waiting: Bool) {
        let all = children.withLock { table -> [ChildPartition] in
            defer { table.removeAll() }
            return Array(table.values)
        }
        if waiting {
            for child in all { child.detach() }
        } else {
            detach(all)
        }
    }

    /// Detaches partitions on a thread of its own: closing a child's channels waits for their
    /// workers, which must not hold up the connection to the root.
    private func detach(_ children: [ChildPartition]) {
        guard !children.isEmpty else { return }
        do {
            try OSThread.spawn(name: "detach") {
                for child in children { child.detach() }
                // Their channels' buffers and threads' arenas are free now: hand the pages back.
                ProcessMemory.returnFreePages()
            }.detach()
        } catch {
            logger.warning("cannot start a thread to detach partitions (\(error)); detaching inline")
            for child in children { child.detach() }
        }
    }
}
