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
/// connection the root hands over each live partition — the parent's saved state of it, its
/// guest memory as a memfd, its processors' SynIC pages and its reference clock — and then
/// serves the parent's requests: message and event connections, doorbells, state commits and
/// the SynIC messages that come with them. When the parent goes away, its connections are
/// unregistered and the children keep running: guests see HV_STATUS_INVALID_CONNECTION_ID until
/// a parent registers again, and the guest messages the old parent never acknowledged go to the
/// new one.
///
/// Nothing here blocks on the socket (Docs/architecture.md, "The control link"): everything for
/// the parent goes through the connection's `ControlOutbox`, one lane per partition, so a
/// processor thread (even one holding its SynIC lock) only queues, one child's flood fills only
/// its own lane, and the reader thread never waits for anything but the next message.
///
/// The link works on a `PartitionDirectory` (the root scheduler's table), so it runs without
/// KVM against a table of test partitions.
final class ParentLink: Sendable {
    private unowned let directory: any PartitionDirectory
    private let listener: SequencedPacketSocket
    private let current = Mutex<Connection?>(nil)
    /// The socket being served, from `accept` on: `shutdown` ends a parent that is still being
    /// authenticated or greeted (not yet `current`) as well as the current one.
    private let accepted = Mutex<SequencedPacketSocket?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<OSThread?>(nil)
    /// What the root keeps of each attached partition across parent connections.
    private let states = Mutex<[UInt32: PartitionLinkState]>([:])
    /// The partitions whose state the root keeps (for tests).
    var keptPartitions: Set<UInt32> { states.withLock { Set($0.keys) } }
    /// Messages from the parent a guest's SynIC could not take, for rate-limited logging.
    private let droppedPosts = Atomic<UInt64>(0)
    /// Processes that connected as the parent partition, while they run (`isParentProcess`).
    private let parentProcesses = Mutex<[ProcessHandle]>([])
    /// The most such processes remembered (the oldest is forgotten first).
    static let parentProcessLimit = 64
    /// Management API connections refused to a parent's process, for rate-limited logging.
    private let refusedAPIConnections = Atomic<UInt64>(0)
    /// How long a guest's read of a parent-emulated port waits for the parent's answer (ns).
    let portReadTimeout: UInt64
    /// How long a process that connects has to say hello.
    let helloTimeoutMilliseconds: Int32
    /// The limits of each connection's outbox.
    let outboxLimits: ControlOutbox.Limits
    /// The users a connecting parent may run as (checked with SO_PEERCRED before the welcome).
    let parentUsers: Set<uid_t>
    /// The most message and event connections a parent may register per partition (the VMBus
    /// server uses two, each open channel one, the diagnostic echo two).
    static let registrationLimit = 256

    struct Registrations {
        var messageConnections: Set<UInt32> = []
        var eventConnections: [UInt32: EventFD] = [:]
        var interceptsPorts = false

        var count: Int { messageConnections.count + eventConnections.count }
    }

    /// Listens on `socketPath` for the parent partition, which runs as `parentUser`: the socket
    /// is that user's, mode 0600, from the moment it appears (see `ParentLink+Authentication`).
    init(directory: any PartitionDirectory, socketPath: String, parentUser: UserIdentity = .current,
         portReadTimeout: UInt64 = 5_000_000_000, helloTimeoutMilliseconds: Int32 = 5000,
         outboxLimits: ControlOutbox.Limits = ControlOutbox.Limits()) throws(SystemError) {
        self.directory = directory
        self.portReadTimeout = portReadTimeout
        self.helloTimeoutMilliseconds = helloTimeoutMilliseconds
        self.outboxLimits = outboxLimits
        parentUsers = [parentUser.uid, geteuid()]
        listener = try Self.listen(on: socketPath, for: parentUser)
    }

    var isConnected: Bool { current.withLock { $0 != nil } }
    /// Whether a socket has been accepted and is being served (authenticated, greeted or current).
    var isServingASocket: Bool { accepted.withLock { $0 != nil } }
    var logger: Logger { directory.logger }
    /// The current connection, if a parent is connected.
    var connection: Connection? { current.withLock { $0 } }

    func start() throws(SystemError) {
        let started = try OSThread.spawn(name: "parent-link") { [self] in acceptLoop() }
        thread.withLock { $0 = started }
    }

    func shutdown() {
        stopping.store(true, ordering: .releasing)
        listener.shutdown()
        accepted.withLock { $0?.shutdown() }
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
            // Kept where `shutdown` finds it, then stopping looked at again: whichever of the
            // two comes second sees the other.
            accepted.withLock { $0 = socket }
            if stopping.load(ordering: .acquiring) { socket.shutdown() }
            serve(ControlChannel(socket: socket))
            accepted.withLock { $0 = nil }
        }
    }

    /// Serves one parent connection until it closes.
    private func serve(_ channel: ControlChannel) {
        guard let peer = authenticate(channel) else { return }
        rememberParent(peer.processID)
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
        guard case .message(.hello(let claimed), _) = hello else {
            logger.warning("a process connected to the parent socket without saying hello; closed")
            return
        }
        // The kernel's word, not the parent's: the pid is moved into the parent's control group.
        let pid = UInt32(bitPattern: peer.processID)
        if claimed != pid {
            logger.warning("the parent partition says it is pid \(claimed), the kernel says \(pid); using the kernel's")
        }
        let connection: Connection
        do throws(SystemError) {
            connection = try Connection(channel: channel, logger: logger, portReadTimeout: portReadTimeout,
                                        limits: outboxLimits)
        } catch {
            logger.warning("could not serve the parent partition (pid \(pid)): \(error); closed")
            return
        }
        do throws(SystemError) {
            // The socket is new and empty: this send cannot wait.
            try channel.send(.welcome(rootProcessID: UInt32(getpid())), nonBlocking: true)
            try connection.outbox.start(name: "parent-send") { [logger] error in
                logger.warning("parent partition: \(error); disconnecting it")
                channel.socket.shutdown()
            }
        } catch {
            logger.warning("could not welcome the parent partition (pid \(pid)): \(error); closed")
            connection.signaller.stop()
            return
        }
        current.withLock { $0 = connection }
        logger.info("parent partition connected (pid \(pid))")
        // Switches first: the partitions' NICs plug into them.
        for managed in directory.linkedSwitches { attach(managed, on: connection) }
        directory.parentConnected(processID: Int32(bitPattern: pid))
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
        connection.outbox.stop()
        connection.signaller.stop()
        connection.pendingReads.update { reads in
            for key in reads.keys where reads[key] == .some(nil) { reads[key] = .some(0xFFFF_FFFF) }
        }
        connection.pendingStringReads.update { reads in
            for key in reads.keys where reads[key] == .some(nil) { reads[key] = .some([]) }
        }
        connection.pendingStatistics.update { requests in
            for key in requests.keys { requests[key] = .disconnected }
        }
        connection.ready.update { $0.removeAll() }
        forgetRegistrations(of: connection)
        logger.info("parent partition disconnected; children keep running")
    }

    // MARK: The parent's processes

    /// Remembers process `pid`, which connected as the parent partition, for as long as it runs.
    private func rememberParent(_ pid: pid_t) {
        let handle: ProcessHandle
        do throws(SystemError) {
            handle = try ProcessHandle(processID: pid)
        } catch where error.errno == .noSuchProcess {
            return  // gone already
        } catch {
            logger.warning("the parent partition's process \(pid) cannot be held by a pidfd (\(error)): the management API will not refuse it")
            return
        }
        parentProcesses.withLock { handles in
            handles.removeAll { $0.hasExited || $0.processID == pid }
            if handles.count >= Self.parentProcessLimit { handles.removeFirst() }
            handles.append(handle)
        }
    }

    /// Whether `pid` is a process that connected as the parent partition and still runs.
    func isParentProcess(_ pid: pid_t) -> Bool {
        parentProcesses.withLock { handles in
            handles.removeAll { $0.hasExited }
            return handles.contains { $0.processID == pid }
        }
    }

    /// Whether the management API refuses a connection from process `pid`: a parent partition's
    /// process is refused (and logged, the first time and then at each power of two), so a parent
    /// that runs as a user the API lets in (the root's own user, where the root does not run as
    /// root) cannot step out of its sandbox through the API (Docs/security.md).
    func refusesAPIConnection(from pid: pid_t) -> Bool {
        guard isParentProcess(pid) else { return false }
        let refused = refusedAPIConnections.wrappingAdd(1, ordering: .relaxed).newValue
        if refused.nonzeroBitCount == 1 {
            logger.warning("refused a management API connection from the parent partition's process (pid \(pid)); \(refused) so far")
        }
        return true
    }

    // MARK: Partitions

    /// What the root keeps of partition `id` across parent connections, made on first use.
    func state(of id: UInt32) -> PartitionLinkState {
        states.withLock { states in Self.state(of: id, in: &states) }
    }

    /// `state(of:)` for a registration of `connection`'s: nil unless partition `id` is handed to
    /// that parent. Looked at under the states lock, so a detach (`attached` first, then
    /// `states`) leaves no state behind however the two interleave.
    private func handedState(of id: UInt32, on connection: Connection) -> PartitionLinkState? {
        states.withLock { states in
            connection.attached.withLock { $0.contains(id) } ? Self.state(of: id, in: &states) : nil
        }
    }

    private static func state(of id: UInt32, in states: inout [UInt32: PartitionLinkState]) -> PartitionLinkState {
        if let existing = states[id] { return existing }
        let created = PartitionLinkState(id: id)
        states[id] = created
        return created
    }

    /// A virtual switch was created: the parent runs it (a parent that is away gets it when it
    /// connects).
    func switchAttached(_ managed: ManagedSwitch) {
        guard let connection else { return }
        attach(managed, on: connection)
    }

    /// Queued in the priority lane, which goes out ahead of every partition's lane: a switch
    /// reaches the parent before the NICs that plug into it.
    private func attach(_ managed: ManagedSwitch, on connection: Connection) {
        connection.post(.switchAttached(managed.spec), descriptors: managed.hostSide.map { [$0] } ?? [], lane: nil,
                        admission: .always)
        connection.outbox.help()
    }

    /// A virtual switch was deleted.
    func switchDetached(_ name: String) {
        connection?.post(.switchDetached(name: name), lane: nil, admission: .always)
        connection?.outbox.help()
    }

    func attach(_ partition: any LinkedPartition) {
        guard let connection else { return }
        attach(partition, on: connection)
    }

    /// Opens the partition's lane and queues its attachment, which is built when its turn comes
    /// (so the SynIC pages it carries are current, and a page change after it follows it in the
    /// same lane): the saved state first, then the partition with its memory and resources.
    private func attach(_ partition: any LinkedPartition, on connection: Connection) {
        let id = partition.id
        // A partition created while a parent connects could be handed over twice; the parent
        // would then replace its services while the first ones still unregister theirs.
        guard connection.attached.withLock({ $0.insert(id).inserted }) else { return }
        let state = state(of: id)
        connection.outbox.openLane(id)
        connection.outbox.enqueue(.deferred { [logger] in
            guard let memory = partition.memory, let hypervisor = partition.hypervisor else { return [] }
            var datagrams = Self.savedStateMessages(id, state.savedRecords).map { ControlOutbox.Datagram($0.bytes) }
            let time = hypervisor.time
            let (devices, resources) = partition.devicesAndResources
            let attachment = PartitionAttachment(
                partitionID: id, name: partition.name, memorySize: UInt64(memory.size),
                processorCount: UInt32(partition.processorCount),
                clock: ReferenceClock(tscFrequencyHz: time.tscFrequencyHz, scale: time.scale,
                                      guestTSCOffset: time.guestTSCOffset, referenceOffset: time.referenceOffset),
                processors: hypervisor.processors.map { Self.pages($0.index, $0.pages) },
                devices: devices)
            let message = RootMessage.partitionAttached(attachment)
            let descriptors = [memory.file] + resources
            guard descriptors.count == message.descriptorCount else {
                logger.error("partition \(partition.name) has \(descriptors.count - 1) device resources, not \(message.descriptorCount - 1); not handed to the parent")
                return []
            }
            datagrams.append(ControlOutbox.Datagram(message.bytes, descriptors: descriptors))
            return datagrams
        }, lane: id, admission: .always)
    }

    /// `records` as `savedState` messages that each fit a datagram.
    static func savedStateMessages(_ id: UInt32, _ records: [StateRecord]) -> [RootMessage] {
        var messages: [RootMessage] = []
        var batch: [StateRecord] = []
        var size = 0
        for record in records {
            let recordSize = 13 + (record.bytes?.count ?? 0)
            if !batch.isEmpty, size + recordSize > SequencedPacketSocket.maximumMessageSize - 1024
                || batch.count == SavedStateLimits.recordsPerMessage {
                messages.append(.savedState(partitionID: id, records: batch))
                batch = []
                size = 0
            }
            batch.append(record)
            size += recordSize
        }
        if !batch.isEmpty { messages.append(.savedState(partitionID: id, records: batch)) }
        return messages
    }

    /// The partition stopped: the parent releases it, and the root forgets what it kept of it.
    ///
    /// `attached` goes first: what a registration records is checked against it under the
    /// record's own lock (`handedState`, `Connection.record`, `stage`, `partitionReady`), so a
    /// registration that raced this detach is either removed below or never recorded.
    func detach(partitionID: UInt32) {
        let connection = connection
        connection?.attached.withLock { _ = $0.remove(partitionID) }
        states.withLock { _ = $0.removeValue(forKey: partitionID) }
        guard let connection else { return }
        connection.discardStaged(partitionID: partitionID)
        connection.ready.update { _ = $0.remove(partitionID) }
        connection.outbox.closeLane(partitionID)
        connection.registrations.withLock { _ = $0.removeValue(forKey: partitionID) }
        connection.post(.partitionDetached(partitionID: partitionID), lane: nil, admission: .always)
    }

    /// Whether the parent keeps up with partition `partitionID`: the messages waiting for it in
    /// the partition's lane are fewer, and fewer bytes, than the lane's limits
    /// (`ControlOutbox.Limits`). True while no parent is connected, or the partition is not
    /// handed to it yet (it gets the partition whole when it takes it).
    func keepsUp(partitionID: UInt32) -> Bool {
        connection?.outbox.hasRoom(lane: partitionID) ?? true
    }

    /// A device was added to a running partition: the parent builds and offers it. (A parent
    /// that is away gets it with the partition when it connects.)
    func deviceAdded(partitionID: UInt32, _ spec: DeviceSpec, resources: [OwnedDescriptor]) {
        connection?.post(.deviceAdded(partitionID: partitionID, spec), descriptors: resources, lane: partitionID,
                         isJob: true, admission: .always)
    }

    /// A device was removed from a running partition: the parent rescinds it.
    func deviceRemoved(partitionID: UInt32, instance: GUID) {
        connection?.post(.deviceRemoved(partitionID: partitionID, instance: instance), lane: partitionID, isJob: true,
                         admission: .always)
    }

    /// A running partition's device has new settings.
    func deviceChanged(partitionID: UInt32, _ spec: DeviceSpec, resources: [OwnedDescriptor]) {
        connection?.post(.deviceChanged(partitionID: partitionID, spec), descriptors: resources, lane: partitionID,
                         isJob: true, admission: .always)
    }

    /// A processor's SynIC pages changed (called with its SynIC lock held: this only queues). An
    /// update of a processor whose last one has not gone out yet replaces it.
    func synicPagesChanged(partitionID: UInt32, vp: UInt32, pages: SynICPages) {
        connection?.outbox.enqueue(RootMessage.synicPagesChanged(partitionID: partitionID, Self.pages(vp, pages)).bytes,
                                   lane: partitionID, replacing: Connection.pagesKey(vp: vp), admission: .always)
    }

    /// Asks the parent to shut the guest down through its shutdown integration service.
    func requestShutdown(partitionID: UInt32) throws(ParentLinkError) {
        guard let connection else { throw .notConnected }
        guard connection.post(.shutdownGuest(partitionID: partitionID), lane: partitionID, isJob: true, admission: .ifRoom)
        else {
            throw .sendFailed(SystemError("ask the parent partition to shut partition \(partitionID) down",
                                          errno: .resourceTemporarilyUnavailable))
        }
    }

    /// The parent's counters of partition `partitionID`'s channels, waiting up to
    /// `timeoutNanoseconds` for its answer (no lock is held meanwhile).
    func channelStatistics(partitionID: UInt32, timeoutNanoseconds: UInt64 = 1_000_000_000) throws(ParentLinkError)
        -> [ChannelCounterRecord]
    {
        guard let connection else { throw .notConnected }
        let request = connection.nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        connection.pendingStatistics.update { $0[request] = .waiting }
        guard connection.post(.requestStatistics(requestID: request, partitionID: partitionID), lane: nil, admission: .ifRoom)
        else {
            connection.pendingStatistics.update { _ = $0.removeValue(forKey: request) }
            throw .sendFailed(SystemError("ask the parent partition for partition \(partitionID)'s channel counters",
                                          errno: .resourceTemporarilyUnavailable))
        }
        connection.outbox.help()
        let answer = connection.pendingStatistics.wait(
            until: { if case .waiting = $0[request] { false } else { true } }, timeoutNanoseconds: timeoutNanoseconds
        ) { requests in requests.removeValue(forKey: request) }
        switch answer ?? connection.pendingStatistics.update({ $0.removeValue(forKey: request) }) {
        case .answered(let channels): return channels
        case .disconnected: throw .notConnected
        case .waiting, nil: throw .noAnswer("its channel counters")
        }
    }

    /// Waits until the connected parent has set up partition `id` (`partitionReady`: its
    /// devices attached, their ports registered), for at most `timeoutNanoseconds`, and only
    /// while `wanted()` holds (asked between slices of `waitSlice`, outside any lock here).
    /// - Returns: whether the parent set it up (false: `wanted()` stopped holding).
    /// - Throws: `.notConnected` if no parent is connected or it goes away meanwhile (the
    ///   partition's devices then come with the next parent); `.devicesNotSetUp` past the deadline.
    func waitUntilReady(partitionID id: UInt32, timeoutNanoseconds: UInt64,
                        while wanted: () -> Bool = { true }) throws(ParentLinkError) -> Bool {
        guard let connection else { throw .notConnected }
        let start = MonotonicClock.nanoseconds()
        while true {
            let elapsed = MonotonicClock.nanoseconds() - start
            guard elapsed < timeoutNanoseconds else { throw .devicesNotSetUp(seconds: timeoutNanoseconds / 1_000_000_000) }
            let ready = connection.ready.wait(
                until: { $0.contains(id) || connection.closed.load(ordering: .acquiring) },
                timeoutNanoseconds: min(Self.waitSlice, timeoutNanoseconds - elapsed)
            ) { ready in ready.contains(id) }
            switch ready {
            case true?: return true
            case false?: throw .notConnected
            case nil: if !wanted() { return false }
            }
        }
    }

    /// The slices `waitUntilReady` waits in.
    static let waitSlice: UInt64 = 100_000_000

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
            // Registered already on this connection: its messages went out then, and the log
            // is not sent twice.
            guard connection.registrations.withLock({ $0[id]?.messageConnections.contains(connectionID) != true }),
                  let state = handedState(of: id, on: connection) else { return }
            // What the guest posted to this connection and an earlier parent never acknowledged
            // goes first, before the guest can post anything new to it.
            state.replay(connectionID: connectionID, send: { message in
                connection.post(.sequencedGuestMessage(message), lane: id, isJob: true, admission: .always)
            }, then: {
                hypervisor.connections.registerMessageConnection(
                    ConnectionID(connectionID),
                    receiver: GuestMessageForwarder(partitionID: id, connectionID: connectionID, connection: connection,
                                                    state: state))
            })
            if !connection.record(for: id, { _ = $0.messageConnections.insert(connectionID) }) {
                hypervisor.connections.unregisterMessageConnection(ConnectionID(connectionID))
            }
        case .unregisterMessageConnection(let id, let connectionID):
            directory.linkedPartition(id: id)?.hypervisor?.connections.unregisterMessageConnection(ConnectionID(connectionID))
            connection.registrations.withLock { _ = $0[id]?.messageConnections.remove(connectionID) }
        case .registerEventConnection(let id, let connectionID):
            guard let partition = directory.linkedPartition(id: id), let descriptor = descriptors.first,
                  mayRegister(connectionID, for: id, on: connection) else { return }
            let event = EventFD(adopting: descriptor)
            do throws(PartitionError) {
                // A parent that registers a connection again (a resumed channel) replaces it.
                if let old = connection.registrations.withLock({ $0[id]?.eventConnections.removeValue(forKey: connectionID) }) {
                    partition.unregisterEventConnection(ConnectionID(connectionID), event: old)
                }
                try partition.registerEventConnection(ConnectionID(connectionID), event: event, relay: connection.signaller)
                guard connection.record(for: id, { $0.eventConnections[connectionID] = event }) else {
                    partition.unregisterEventConnection(ConnectionID(connectionID), event: event)
                    return
                }
                // A guest signal that came while the connection was not registered (a parent
                // restarting under a running guest) found no ioeventfd and was lost: its listener
                // looks at its ring once more. For a channel just opened this wakes it for nothing.
                // Written by the signaller: the parent could have made this descriptor block.
                connection.signaller.signal(event)
            } catch {
                logger.warning("partition \(partition.name): \(error)")
            }
        case .unregisterEventConnection(let id, let connectionID):
            guard let event = connection.registrations.withLock({ $0[id]?.eventConnections.removeValue(forKey: connectionID) })
            else { return }
            directory.linkedPartition(id: id)?.unregisterEventConnection(ConnectionID(connectionID), event: event)
        case .requestDoorbell(let request, let id, let vp, let sint):
            guard let partition = directory.linkedPartition(id: id) else {
                answer(.requestFailed(requestID: request, reason: "no partition \(id)"), on: connection)
                return
            }
            do throws(PartitionError) {
                let doorbell = try partition.doorbell(vp: vp, sint: Int(sint))
                answer(.doorbell(requestID: request, partitionID: id, vp: vp, sint: sint), descriptors: [doorbell.owned],
                       on: connection)
            } catch {
                answer(.requestFailed(requestID: request, reason: "\(error)"), on: connection)
            }
        case .postMessage(let id, let vp, let sint, let type, let payload):
            guard let hypervisor = directory.linkedPartition(id: id)?.hypervisor else { return }
            post(SynICPost(vp: vp, sint: sint, messageType: type, payload: payload), to: hypervisor, partitionID: id)
        case .partitionStatus(let id, let facts):
            directory.linkedPartition(id: id)?.merge(facts: facts)
        case .registerPorts(let id, let base, let count, let rate):
            // base + count must stay a UInt16: port 0xFFFF cannot be the last one of a range.
            guard let partition = directory.linkedPartition(id: id), let state = handedState(of: id, on: connection), count > 0,
                  UInt32(base) + UInt32(count) <= UInt32(UInt16.max) else {
                logger.warning("parent partition asked for an invalid port range \(base)+\(count); ignored")
                return
            }
            do throws(PartitionError) {
                try partition.interceptPorts(base..<(base + count),
                                             with: ParentPortForwarder(partitionID: id, connection: connection,
                                                                       budget: state.portBudget(base: base,
                                                                                                        accessesPerSecond: rate)))
            } catch {
                logger.warning("partition \(partition.name): \(error); ignored")
                return
            }
            if !connection.record(for: id, { $0.interceptsPorts = true }) { partition.removePortIntercepts() }
        case .portReadResult(let request, let value):
            connection.pendingReads.update { reads in
                if reads[request] != nil { reads[request] = .some(value) }
            }
        case .requestInterruptLine(let request, let id, let pin):
            guard let partition = directory.linkedPartition(id: id) else {
                answer(.requestFailed(requestID: request, reason: "no partition \(id)"), on: connection)
                return
            }
            do throws(PartitionError) {
                let line = try partition.interruptLine(pin: UInt32(pin))
                answer(.interruptLine(requestID: request, partitionID: id, pin: pin), descriptors: [line.owned], on: connection)
            } catch {
                answer(.requestFailed(requestID: request, reason: "\(error)"), on: connection)
            }
        case .consoleOutput(let id, let bytes):
            guard let partition = directory.linkedPartition(id: id) else { return }
            for line in partition.appendConsole(bytes) {
                logger.info("[\(partition.name)] \(line)")
            }
        case .portReadStringResult(let request, let bytes):
            connection.pendingStringReads.update { reads in
                if reads[request] != nil { reads[request] = .some(bytes) }
            }
        case .partitionStatistics(let request, _, let channels):
            connection.pendingStatistics.update { requests in
                if case .waiting = requests[request] { requests[request] = .answered(channels) }
            }
        case .commitState(let part):
            commit(part, on: connection)
        case .completed(let id, let jobs, let sequence):
            connection.outbox.acknowledge(lane: id, jobs: jobs)
            states.withLock { $0[id] }?.acknowledge(through: sequence)
        case .partitionReady(let id):
            // Only partitions handed to this parent: the set stays as small as `attached`.
            connection.ready.update { ready in
                if connection.attached.withLock({ $0.contains(id) }) { ready.insert(id) }
            }
        }
    }

    /// An answer to one of the parent's requests. A parent that asks without ever reading the
    /// answers fills the priority lane: it is cut off.
    private func answer(_ message: RootMessage, descriptors: [OwnedDescriptor] = [], on connection: Connection) {
        guard connection.post(message, descriptors: descriptors, lane: nil, admission: .ifRoom) else {
            logger.warning("parent partition does not read the answers to its requests; disconnecting it")
            connection.channel.socket.shutdown()
            return
        }
        connection.outbox.help()
    }

    /// A part of a commit: kept until the last part, then applied as one — the records into the
    /// partition's saved state, the messages into its SynIC, and the guest messages it covers
    /// acknowledged. A parent that sends more than a partition's state can hold is cut off.
    private func commit(_ part: StateCommit, on connection: Connection) {
        let id = part.partitionID
        let whole: StateCommit
        switch connection.stage(part) {
        case .staged(let staged):
            whole = staged
        case .notAttached:
            // Only a partition handed to this parent has a commit to stage: parts for any other
            // would be kept under keys no limit counts. They are dropped, not punished: a commit
            // the parent sent as its partition stopped crosses the detach.
            logger.debug("parent partition sent a commit for partition \(id), which is not attached to it; dropped")
            return
        case .tooLarge:
            logger.warning("parent partition sent a commit for partition \(id) larger than its saved state may be; disconnecting it")
            connection.channel.socket.shutdown()
            return
        }
        guard part.isFinal else { return }
        guard let partition = directory.linkedPartition(id: id), let state = states.withLock({ $0[id] }) else { return }
        if !whole.records.isEmpty, !state.apply(whole.records) {
            logger.error("partition \(partition.name): the parent's saved state passed \(SavedStateLimits.maximumBytes) bytes or \(SavedStateLimits.maximumRecords) records; dropped (a parent that restarts will start its services afresh)")
        }
        if let hypervisor = partition.hypervisor {
            for post in whole.posts { self.post(post, to: hypervisor, partitionID: id) }
        }
        state.acknowledge(through: whole.sequence)
    }

    private func post(_ post: SynICPost, to hypervisor: HvPartition, partitionID id: UInt32) {
        let result = hypervisor.postMessage(vp: Int(post.vp), sint: Int(post.sint), type: SynICMessageType(rawValue: post.messageType),
                                            payload: post.payload)
        guard result == .queueFull || result == nil else { return }
        // Logged the first time and then at each power of two, so a guest that never takes its
        // messages cannot fill the root's log.
        let dropped = droppedPosts.wrappingAdd(1, ordering: .relaxed).newValue
        if dropped.nonzeroBitCount == 1 {
            logger.warning("partition \(id): message for VP \(post.vp) SINT \(post.sint) dropped (\(result.map { "\($0)" } ?? "invalid")); \(dropped) dropped so far")
        }
    }

    /// Whether the parent may register one more connection of partition `id`: at most
    /// `registrationLimit` per partition, so a parent cannot grow the root's tables without bound.
    private func mayRegister(_ connectionID: UInt32, for id: UInt32, on connection: Connection) -> Bool {
        guard isHanded(id, to: connection) else { return false }
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

    /// Whether partition `id` is handed to this parent (attached, and not detached since): only
    /// then may it register anything for it. A stopped partition is still found by its ID until
    /// it is deleted, and what a registration creates for it (its entry in `states`, its
    /// `Registrations`) would outlive its detach, which removes them once.
    private func isHanded(_ id: UInt32, to connection: Connection) -> Bool {
        connection.attached.withLock { $0.contains(id) }
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
