import ControlProtocol
import Glibc
import LinuxSupport
import Logging
import Synchronization

/// The parent's end of the control socket to the root scheduler.
///
/// Requests that need an answer (doorbells) are asynchronous: the answer arrives on the
/// reader thread, which must never block waiting for itself.
///
/// Nothing here blocks on the socket: messages go through a `ControlOutbox`, one lane per child
/// partition, so a child that floods (console output, echo messages) fills only its own lane and
/// the others' messages keep going out in turn. Facts and acknowledgements replace their unsent
/// predecessors; console output is dropped (and counted) when its lane is full; everything else
/// waits for room up to `deliveryWait`, which only a root that stopped reading makes it reach.
///
/// A failing socket means the root is going away: the reader thread then sees the connection
/// end, every child is detached (requests still waiting for an answer go with their
/// connection), and the root attaches them again when the parent reconnects.
public final class RootConnection: Sendable {
    let channel: ControlChannel
    let outbox: ControlOutbox
    let logger: Logger
    private let nextRequest = Atomic<UInt32>(1)
    private let pending = Mutex<[UInt32: @Sendable (EventFD?) -> Void]>([:])
    /// Facts not sent yet, per partition: a later value of a key replaces an earlier one.
    private let facts = Mutex<[UInt32: [String: String]]>([:])
    /// Console bytes dropped because a partition's lane was full, per partition.
    private let consoleDropped = Mutex<[UInt32: UInt64]>([:])
    /// Whether a message the root did not get was already logged as a warning.
    private let dropLogged = Atomic<Bool>(false)

    /// How long a message that must not be lost waits for room in its lane.
    static let deliveryWait: UInt64 = 30_000_000_000

    init(channel: ControlChannel, logger: Logger, limits: ControlOutbox.Limits = ControlOutbox.Limits()) {
        self.channel = channel
        self.logger = logger
        outbox = ControlOutbox(socket: channel.socket, limits: limits)
    }

    /// How long the parent waits for the root's welcome.
    static let welcomeTimeoutMilliseconds: Int32 = 10_000

    /// Says hello on a connected socket, waits (up to `welcomeTimeoutMilliseconds`) for the
    /// root's welcome, and starts sending.
    static func handshake(on socket: SequencedPacketSocket, logger: Logger) throws -> RootConnection {
        let channel = ControlChannel(socket: socket)
        // The socket is new and empty: this send cannot wait.
        try channel.send(.hello(parentProcessID: UInt32(getpid())))
        guard try Poll.wait(on: [socket.owned.rawValue], timeoutMilliseconds: welcomeTimeoutMilliseconds).first == true else {
            throw SystemError("wait for the root scheduler's welcome", errno: .timedOut)
        }
        guard case .message(.welcome, _) = try channel.receiveRootMessage() else {
            throw ControlProtocolError.unknownKind(0)
        }
        let connection = RootConnection(channel: channel, logger: logger)
        try connection.outbox.start(name: "root-send") { [logger] error in
            logger.warning("root scheduler: \(error); disconnecting")
            socket.shutdown()
        }
        return connection
    }

    // MARK: Lanes

    /// Partition `id` gets a lane of its own.
    func openLane(_ id: UInt32) { outbox.openLane(id) }

    /// Partition `id` is gone: what it still had to send is dropped.
    func closeLane(_ id: UInt32) {
        outbox.closeLane(id)
        facts.withLock { _ = $0.removeValue(forKey: id) }
        consoleDropped.withLock { _ = $0.removeValue(forKey: id) }
    }

    /// Queues `message` for partition `id`'s lane (the priority lane if it has none), waiting up
    /// to `deliveryWait` for room; a message the root will not get is logged.
    /// - Returns: whether it was queued.
    @discardableResult
    func send(_ message: ParentMessage, descriptors: [OwnedDescriptor] = [], partition id: UInt32?,
              admission: ControlOutbox.Admission = .waiting(nanoseconds: RootConnection.deliveryWait)) -> Bool {
        precondition(descriptors.count == message.descriptorCount, "\(message) needs \(message.descriptorCount) descriptors")
        let lane = id.flatMap { outbox.queued(lane: $0) != nil ? $0 : nil }
        let queued = outbox.enqueue(message.bytes, descriptors: descriptors, lane: lane, admission: admission)
        if !queued { dropped(message) }
        return queued
    }

    private func dropped(_ message: ParentMessage) {
        let what = "\(message)".prefix(120)
        if dropLogged.exchange(true, ordering: .relaxed) {
            logger.debug("the root scheduler will not get \(what)")
        } else {
            logger.warning("the root scheduler will not get \(what)")
        }
    }

    /// Routes HvPostMessage on `connectionID` of partition `id` to this parent.
    public func registerMessageConnection(partitionID id: UInt32, connectionID: UInt32) {
        send(.registerMessageConnection(partitionID: id, connectionID: connectionID), partition: id)
    }

    public func unregisterMessageConnection(partitionID id: UInt32, connectionID: UInt32) {
        send(.unregisterMessageConnection(partitionID: id, connectionID: connectionID), partition: id)
    }

    /// Makes HvSignalEvent on `connectionID` signal `event` (an ioeventfd in the root's VM).
    public func registerEventConnection(partitionID id: UInt32, connectionID: UInt32, event: EventFD) {
        send(.registerEventConnection(partitionID: id, connectionID: connectionID), descriptors: [event.owned], partition: id)
    }

    public func unregisterEventConnection(partitionID id: UInt32, connectionID: UInt32) {
        send(.unregisterEventConnection(partitionID: id, connectionID: connectionID), partition: id)
    }

    /// Posts a SynIC message to the guest. Call it holding no lock (it may send it itself).
    public func postMessage(partitionID id: UInt32, vp: UInt32, sint: UInt8, type: UInt32, payload: [UInt8]) {
        send(.postMessage(partitionID: id, vp: vp, sint: sint, messageType: type, payload: payload), partition: id)
        outbox.help()
    }

    /// Commits a change of partition `id`'s saved state with the SynIC messages it answers with
    /// and the guest message it handled (`StateCommit`), in as many parts as it takes.
    /// Call it holding no lock (it may send the first part itself).
    func commit(partitionID id: UInt32, sequence: UInt64, records: [StateRecord], posts: [SynICPost]) {
        for part in StateCommit.parts(partitionID: id, sequence: sequence, records: records, posts: posts) {
            guard send(.commitState(part), partition: id) else { return }
        }
        outbox.help()
    }

    /// The parent has set up partition `id` (its devices attached, their ports registered ahead
    /// of this in its lane): the root may start its processors.
    func partitionReady(_ id: UInt32) {
        send(.partitionReady(partitionID: id), partition: id)
        outbox.help()
    }

    /// Partition `id`'s control thread has completed `jobs` of the root's jobs, the last guest
    /// message among them numbered `sequence`. Replaces an acknowledgement not sent yet.
    func acknowledge(partitionID id: UInt32, jobs: UInt64, sequence: UInt64) {
        let message = ParentMessage.completed(partitionID: id, jobs: jobs, sequence: sequence)
        let lane = outbox.queued(lane: id) != nil ? id : nil
        outbox.enqueue(message.bytes, lane: lane, replacing: lane.map { _ in Self.acknowledgementKey }, admission: .always)
        outbox.help()
    }

    /// Reports facts the root shows users. They are merged with facts not sent yet, and go out
    /// as one update when the partition's turn comes.
    public func reportStatus(partitionID id: UInt32, facts new: [String: String]) {
        facts.withLock { $0[id, default: [:]].merge(new) { _, latest in latest } }
        let lane = outbox.queued(lane: id) != nil ? id : nil
        outbox.enqueue(.deferred { [self] in
            let taken = facts.withLock { $0.removeValue(forKey: id) } ?? [:]
            return Self.statusMessages(id, taken).map { ControlOutbox.Datagram($0.bytes) }
        }, lane: lane, replacing: Self.factsKey, admission: .always)
    }

    /// Bytes the guest wrote to its console. Dropped, and counted, when the partition's lane is
    /// full: a guest that writes faster than the root logs loses output, not its neighbours' turn.
    func consoleOutput(partitionID id: UInt32, bytes: [UInt8]) {
        guard outbox.enqueue(ParentMessage.consoleOutput(partitionID: id, bytes: bytes).bytes, lane: id, admission: .ifRoom)
        else {
            let total = consoleDropped.withLock { dropped -> UInt64 in
                dropped[id, default: 0] += UInt64(bytes.count)
                return dropped[id] ?? 0
            }
            reportStatus(partitionID: id, facts: ["console.dropped_bytes": "\(total)"])
            return
        }
        outbox.help()
    }

    /// The answer to a port read (the guest's processor waits for it: it goes first).
    func portReadResult(requestID: UInt32, value: UInt32) {
        answer(.portReadResult(requestID: requestID, value: value))
    }

    /// An answer the root waits for (a string port read, statistics): in the priority lane.
    func answer(_ message: ParentMessage) {
        outbox.enqueue(message.bytes, lane: nil, admission: .always)
        outbox.help()
    }

    static let acknowledgementKey: UInt64 = 1
    static let factsKey: UInt64 = 2

    /// Facts as `partitionStatus` messages within the root's limits: at most 256 facts and 60 KiB
    /// a message, keys of at most 256 bytes (longer ones are dropped), values of at most 4,096
    /// (longer ones cut).
    static func statusMessages(_ id: UInt32, _ facts: [String: String]) -> [ParentMessage] {
        var messages: [ParentMessage] = []
        var batch: [String: String] = [:]
        var size = 0
        for key in facts.keys.sorted() where key.utf8.count <= 256 {
            var value = facts[key] ?? ""
            if value.utf8.count > 4096 { value = String(decoding: value.utf8.prefix(4096), as: UTF8.self) }
            while value.utf8.count > 4096 { value.removeLast() }
            let entry = 8 + key.utf8.count + value.utf8.count
            if batch.count == 256 || size + entry > 60 << 10 {
                messages.append(.partitionStatus(partitionID: id, facts: batch))
                batch = [:]
                size = 0
            }
            batch[key] = value
            size += entry
        }
        if !batch.isEmpty { messages.append(.partitionStatus(partitionID: id, facts: batch)) }
        return messages
    }

    /// Asks for a doorbell; `completion` runs on the reader thread with the eventfd (or nil).
    func requestDoorbell(partitionID id: UInt32, vp: UInt32, sint: UInt8,
                         completion: @escaping @Sendable (EventFD?) -> Void) {
        let request = nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        pending.withLock { $0[request] = completion }
        if !send(.requestDoorbell(requestID: request, partitionID: id, vp: vp, sint: sint), partition: id) {
            pending.withLock { _ = $0.removeValue(forKey: request) }
        }
    }

    /// Asks for an eventfd that raises IOAPIC pin `pin`; `completion` runs on the reader thread.
    func requestInterruptLine(partitionID id: UInt32, pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void) {
        let request = nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        pending.withLock { $0[request] = completion }
        if !send(.requestInterruptLine(requestID: request, partitionID: id, pin: pin), partition: id) {
            pending.withLock { _ = $0.removeValue(forKey: request) }
        }
    }

    /// Ends the connection: shuts the socket down, stops sending and forgets unanswered requests.
    func close() {
        channel.socket.shutdown()
        outbox.stop()
        pending.withLock { $0.removeAll() }
    }

    /// Completes a doorbell request (reader thread).
    func complete(request: UInt32, doorbell: EventFD?) {
        let completion = pending.withLock { $0.removeValue(forKey: request) }
        completion?(doorbell)
    }
}
