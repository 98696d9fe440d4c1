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
            connection.withLock { $0 = root }
            if stopping.load(ordering: .acquiring) { root.channel.socket.shutdown() }
            logger.info("connected to the root scheduler")
            serve(root)
            connection.withLock { $0 = nil }
            // Hang up at once (the root sees the parent go even while the children are detached)
            // and drop the requests the root never answered: their completions hold children,
            // which hold this connection.
            root.close()
            detachAll()
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
            if let child = children.withLock({ $0.removeValue(forKey: id) }) { detach([child]) }
            logger.info("partition \(id) detached")
        case .synicPagesChanged(let id, let pages):
            child(id)?.updatePages(pages)
        case .guestMessage(let id, let vp, let connectionID, let type, let payload):
            guard let child = child(id) else { break }
            child.perform { child.deliver(vp: vp, connectionID: connectionID, type: type, payload: payload) }
        case .doorbell(let request, _, _, _):
            root.complete(request: request, doorbell: EventFD(adopting: descriptors[0]))
        case .requestFailed(let request, let reason):
            logger.warning("root refused request \(request): \(reason)")
            root.complete(request: request, doorbell: nil)
        case .shutdownGuest(let id):
            guard let child = child(id) else { break }
            child.perform { child.requestGuestShutdown() }
        case .portWrite(let id, let vp, let port, let size, let value):
            guard let child = child(id) else { break }
            child.perform { child.portWrite(vp: vp, port: port, size: Int(size), value: value) }
        case .portRead(let request, let id, let vp, let port, let size):
            // The guest processor waits for the answer: a partition that cannot take the
            // request gets an undriven bus (all ones) at once rather than the root's timeout.
            guard let child = child(id), child.perform({
                root.send(.portReadResult(requestID: request, value: child.portRead(vp: vp, port: port, size: Int(size))))
            }) else {
                root.send(.portReadResult(requestID: request, value: 0xFFFF_FFFF))
                break
            }
        case .interruptLine(let request, _, _):
            root.complete(request: request, doorbell: EventFD(adopting: descriptors[0]))
        case .deviceAdded(let id, let spec):
            guard let child = child(id) else { break }
            child.perform { child.addDevice(spec, resources: descriptors) }
        case .deviceRemoved(let id, let instance):
            guard let child = child(id) else { break }
            child.perform { child.removeDevice(instance) }
        case .deviceChanged(let id, let spec):
            guard let child = child(id) else { break }
            child.perform { child.changeDevice(spec, resources: descriptors) }
        }
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
        let memory: GuestMemory
        do {
            memory = try GuestMemory(mapping: memoryFile, size: Int(attachment.memorySize))
        } catch {
            logger.error("cannot map the memory of partition \(attachment.name): \(error)")
            return
        }
        let child: ChildPartition
        do {
            child = try ChildPartition(attachment: attachment, memory: memory, root: root, deviceTypes: deviceTypes,
                                       logger: logger)
        } catch {
            logger.error("cannot serve partition \(attachment.name): \(error)")
            return
        }
        // A second attachment of the same partition replaces the first, whose services stop.
        if let replaced = children.withLock({ $0.updateValue(child, forKey: attachment.partitionID) }) { detach([replaced]) }
        do {
            child.add(try DiagnosticEchoService(partition: child))
        } catch {
            logger.error("partition \(attachment.name): cannot start the diagnostic echo: \(error)")
        }
        child.attachDevices(attachment.devices, resources: resources)
        logger.info("serving partition \(attachment.name) (id \(attachment.partitionID), \(attachment.memorySize >> 20) MiB)")
    }

    private func detachAll() {
        let all = children.withLock { table -> [ChildPartition] in
            defer { table.removeAll() }
            return Array(table.values)
        }
        detach(all)
    }

    /// Detaches partitions on a thread of its own: closing a child's channels waits for their
    /// workers, which must not hold up the connection to the root.
    private func detach(_ children: [ChildPartition]) {
        guard !children.isEmpty else { return }
        do {
            _ = try OSThread.spawn(name: "detach") {
                for child in children { child.detach() }
            }
        } catch {
            logger.warning("cannot start a thread to detach partitions (\(error)); detaching inline")
            for child in children { child.detach() }
        }
    }
}
