import ControlProtocol
import Glibc
import GuestMemory
import LinuxSupport
import Logging
import Synchronization

/// The `hv parent` process: connects to the root scheduler, maps each child partition's
/// memory, and runs the services that serve it. If the root goes away it keeps retrying, so
/// the two processes can be started in either order and restarted independently.
public final class ParentPartitionService: Sendable {
    public let socketPath: String
    let logger: Logger
    private let children = Mutex<[UInt32: ChildPartition]>([:])
    private let connection = Mutex<RootConnection?>(nil)
    /// The socket of a connection still shaking hands, so `stop()` can interrupt it.
    private let connecting = Mutex<SequencedPacketSocket?>(nil)
    private let stopping = Atomic<Bool>(false)

    public init(socketPath: String, logger: Logger) {
        self.socketPath = socketPath
        self.logger = logger
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
            attach(attachment, memoryFile: descriptors[0], root: root)
        case .partitionDetached(let id):
            children.withLock { $0.removeValue(forKey: id) }?.detach()
            logger.info("partition \(id) detached")
        case .synicPagesChanged(let id, let pages):
            child(id)?.updatePages(pages)
        case .guestMessage(let id, let vp, let connectionID, let type, let payload):
            child(id)?.deliver(vp: vp, connectionID: connectionID, type: type, payload: payload)
        case .doorbell(let request, _, _, _):
            root.complete(request: request, doorbell: EventFD(adopting: descriptors[0]))
        case .requestFailed(let request, let reason):
            logger.warning("root refused request \(request): \(reason)")
            root.complete(request: request, doorbell: nil)
        case .shutdownGuest(let id):
            child(id)?.requestGuestShutdown()
        case .portWrite(let id, let vp, let port, let size, let value):
            child(id)?.portWrite(vp: vp, port: port, size: Int(size), value: value)
        case .portRead(let request, let id, let vp, let port, let size):
            let value = child(id)?.portRead(vp: vp, port: port, size: Int(size)) ?? 0xFFFF_FFFF
            root.send(.portReadResult(requestID: request, value: value))
        case .interruptLine(let request, _, _):
            root.complete(request: request, doorbell: EventFD(adopting: descriptors[0]))
        }
    }

    /// The child partition with root-assigned `id`, while it is attached.
    func child(_ id: UInt32) -> ChildPartition? {
        children.withLock { $0[id] }
    }

    /// The processor counts a partition can have (the root's limit, `PartitionSpecification`).
    static let processorLimit: ClosedRange<UInt32> = 1...64

    private func attach(_ attachment: PartitionAttachment, memoryFile: OwnedDescriptor, root: RootConnection) {
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
        let child = ChildPartition(attachment: attachment, memory: memory, root: root, logger: logger)
        // A second attachment of the same partition replaces the first, whose services stop.
        children.withLock { $0.updateValue(child, forKey: attachment.partitionID) }?.detach()
        do {
            child.add(try DiagnosticEchoService(partition: child))
        } catch {
            logger.error("partition \(attachment.name): cannot start the diagnostic echo: \(error)")
        }
        child.add(VMBusService(partition: child, deviceNames: attachment.devices))
        if attachment.devices.contains("com1") { child.add(LegacyDevicesService(partition: child)) }
        logger.info("serving partition \(attachment.name) (id \(attachment.partitionID), \(attachment.memorySize >> 20) MiB)")
    }

    private func detachAll() {
        let all = children.withLock { table -> [ChildPartition] in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for child in all { child.detach() }
    }
}
