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
                root = try RootConnection.connect(path: socketPath)
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
            logger.info("connected to the root scheduler")
            serve(root)
            connection.withLock { $0 = nil }
            detachAll()
            if !stopping.load(ordering: .acquiring) { logger.info("root scheduler went away; reconnecting") }
        }
    }

    /// Makes `run()` return.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        connection.withLock { $0?.channel.socket.shutdown() }
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

    private func child(_ id: UInt32) -> ChildPartition? {
        children.withLock { $0[id] }
    }

    private func attach(_ attachment: PartitionAttachment, memoryFile: OwnedDescriptor, root: RootConnection) {
        let memory: GuestMemory
        do {
            memory = try GuestMemory(mapping: memoryFile, size: Int(attachment.memorySize))
        } catch {
            logger.error("cannot map the memory of partition \(attachment.name): \(error)")
            return
        }
        let child = ChildPartition(attachment: attachment, memory: memory, root: root, logger: logger)
        children.withLock { $0[attachment.partitionID] = child }
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
