import ControlProtocol
import HyperV
import HypervisorInterface
import LinuxSupport
import Logging
import Partition
import Synchronization

extension ParentLink {
    /// One parent connection and everything the parent registered through it.
    final class Connection: Sendable {
        let channel: ControlChannel
        /// Everything the root sends the parent goes through here (lane = partition ID).
        let outbox: ControlOutbox
        /// Writes the signals the root owes the parent's eventfds.
        let signaller: ParentEventSignaller
        let logger: Logger
        let portReadTimeout: UInt64
        let registrations = Mutex<[UInt32: Registrations]>([:])
        /// Port reads waiting for the parent's answer, by request ID (nil: not answered yet).
        let pendingReads = ConditionLock<[UInt32: UInt32?]>([:])
        /// String port reads (REP INS) waiting for the parent's answer, likewise.
        let pendingStringReads = ConditionLock<[UInt32: [UInt8]?]>([:])
        /// Statistics requests waiting for the parent's answer, by request ID.
        let pendingStatistics = ConditionLock<[UInt32: StatisticsAnswer]>([:])
        let nextRequest = Atomic<UInt32>(1)
        let closed = Atomic<Bool>(false)
        /// The partitions handed to this parent.
        let attached = Mutex<Set<UInt32>>([])
        /// The partitions of `attached` the parent has set up (`partitionReady`).
        let ready = ConditionLock<Set<UInt32>>([])
        /// The parts of each partition's commit in progress.
        private let staged = Mutex<[UInt32: StateCommit]>([:])
        /// Whether a message the parent did not get was already logged as a warning.
        private let dropLogged = Atomic<Bool>(false)

        init(channel: ControlChannel, logger: Logger, portReadTimeout: UInt64, limits: ControlOutbox.Limits)
            throws(SystemError) {
            signaller = try ParentEventSignaller(name: "parent-signal")
            self.channel = channel
            self.logger = logger
            self.portReadTimeout = portReadTimeout
            outbox = ControlOutbox(socket: channel.socket, limits: limits)
        }

        /// The replacement key of a processor's SynIC page update.
        static func pagesKey(vp: UInt32) -> UInt64 { 0x1_0000_0000 | UInt64(vp) }

        /// Queues `message` (see `ControlOutbox.enqueue`); a refusal is logged.
        /// - Returns: whether it was queued.
        @discardableResult
        func post(_ message: RootMessage, descriptors: [OwnedDescriptor] = [], lane: UInt32?, isJob: Bool = false,
                  admission: ControlOutbox.Admission) -> Bool {
            precondition(descriptors.count == message.descriptorCount, "\(message) needs \(message.descriptorCount) descriptors")
            let queued = outbox.enqueue(message.bytes, descriptors: descriptors, lane: lane, isJob: isJob, admission: admission)
            if !queued { dropped(message) }
            return queued
        }

        /// Logs a message the parent will not get: the first on this connection as a warning,
        /// later ones at debug.
        func dropped(_ message: RootMessage) {
            let what = "\(message)".prefix(120)
            if dropLogged.exchange(true, ordering: .relaxed) {
                logger.debug("parent partition will not get \(what): its lane is full or the link is down")
            } else {
                logger.warning("parent partition will not get \(what): its lane is full or the link is down")
            }
        }

        /// Records a registration for partition `id` (`change`), if that partition is attached:
        /// looked at under the registrations lock, so a detach (`attached` first, then the
        /// partition's registrations) leaves none behind however the two interleave.
        /// - Returns: whether it was recorded; if not, the caller undoes what it registered.
        func record(for id: UInt32, _ change: (inout Registrations) -> Void) -> Bool {
            registrations.withLock { table in
                guard attached.withLock({ $0.contains(id) }) else { return false }
                change(&table[id, default: Registrations()])
                return true
            }
        }

        /// The partitions with a commit in progress.
        var stagedPartitions: Set<UInt32> { staged.withLock { Set($0.keys) } }

        /// Forgets a detached partition's commit in progress.
        func discardStaged(partitionID: UInt32) {
            staged.withLock { _ = $0.removeValue(forKey: partitionID) }
        }

        /// What became of a part of a commit (`stage`).
        enum Staged {
            /// The whole commit so far (the last part makes it complete).
            case staged(StateCommit)
            /// Its partition is not attached to this connection (never, or no longer): dropped.
            case notAttached
            /// It grew past what a partition's saved state may hold.
            case tooLarge
        }

        /// Adds a part to its partition's commit in progress, if that partition is attached:
        /// looked at under the staging lock, so a detach (`attached` first, then
        /// `discardStaged`) leaves nothing staged however the two interleave.
        func stage(_ part: StateCommit) -> Staged {
            staged.withLock { staged -> Staged in
                guard attached.withLock({ $0.contains(part.partitionID) }) else { return .notAttached }
                var whole = staged.removeValue(forKey: part.partitionID)
                    ?? StateCommit(partitionID: part.partitionID, sequence: 0, isFinal: false, records: [], posts: [])
                whole.sequence = part.sequence
                whole.isFinal = part.isFinal
                whole.records += part.records
                whole.posts += part.posts
                let bytes = whole.records.reduce(0) { $0 + ($1.bytes?.count ?? 0) }
                guard whole.records.count <= SavedStateLimits.maximumRecords, bytes <= SavedStateLimits.maximumBytes,
                      whole.posts.count <= SavedStateLimits.postsPerMessage * 16 else { return .tooLarge }
                if !part.isFinal { staged[part.partitionID] = whole }
                return .staged(whole)
            }
        }
    }

    /// Where a statistics request stands.
    enum StatisticsAnswer {
        case waiting
        case answered([ChannelCounterRecord])
        case disconnected
    }
}

/// Forwards a partition's intercepted port accesses to the parent: writes are posted, reads
/// wait (up to the link's `portReadTimeout`) for the parent's answer. A parent that is gone, or
/// does not answer in time, reads as 0xFF. Both queue in the partition's own lane: a guest that
/// writes faster than the parent takes it waits (its processor, up to `writeWait`), and only it;
/// and both are paced by the partition's `PortAccessBudget`.
struct ParentPortForwarder: PortInterceptor {
    let partitionID: UInt32
    let connection: ParentLink.Connection
    let budget: PortAccessBudget

    /// The value of a port nothing answers for (a floating bus).
    static let floating: UInt32 = 0xFFFF_FFFF
    /// How long a processor waits for room in its partition's lane before an access is given
    /// up (dropped and logged): as long as the link's own stall limit
    /// (`ControlOutbox.Limits.stallNanoseconds`). A device's port write is data (a disk's data
    /// register), so it is not dropped while the parent still takes its lane, however slowly; a
    /// guest that writes faster than that is held back, and only it. A lane that does not move
    /// for that long (the child's control thread in the parent is stuck) does not cut the parent
    /// off: the other children's lanes still move.
    static let writeWait: UInt64 = 30_000_000_000
    /// The wait is taken in slices this long, so a partition asked to stop, or a link that
    /// closes, ends it at once rather than after `writeWait`.
    static let waitSlice: UInt64 = 50_000_000

    /// Queues `message` (a job) in the partition's lane, waiting for room as `writeWait` says
    /// but no longer than `partition` keeps running and the link stays up.
    /// - Returns: whether it was queued (a refusal is logged).
    func enqueue(_ message: RootMessage, partition: Partition?) -> Bool {
        let start = MonotonicClock.nanoseconds()
        while true {
            if connection.outbox.enqueue(message.bytes, lane: partitionID, isJob: true,
                                         admission: .waiting(nanoseconds: Self.waitSlice)) {
                connection.outbox.help()
                return true
            }
            if connection.closed.load(ordering: .acquiring) || partition?.isExiting == true
                || MonotonicClock.nanoseconds() - start >= Self.writeWait {
                connection.dropped(message)
                return false
            }
        }
    }

    /// The guest on processor `vp` wrote `value` (`size` bytes) to `port`.
    func write(vp: Int, port: UInt16, size: Int, value: UInt32, partition: Partition? = nil) {
        guard !connection.closed.load(ordering: .acquiring) else { return }
        budget.pace()
        let message = RootMessage.portWrite(partitionID: partitionID, vp: UInt32(vp), port: port, size: UInt8(size),
                                            value: value)
        _ = enqueue(message, partition: partition)
    }

    /// The guest on processor `vp` reads `size` bytes from `port`: asks the parent and waits.
    func read(vp: Int, port: UInt16, size: Int, partition: Partition? = nil) -> UInt32 {
        guard !connection.closed.load(ordering: .acquiring) else { return Self.floating }
        budget.pace()
        let request = connection.nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        connection.pendingReads.update { $0[request] = .some(nil) }
        let message = RootMessage.portRead(requestID: request, partitionID: partitionID, vp: UInt32(vp), port: port,
                                           size: UInt8(size))
        guard enqueue(message, partition: partition) else {
            connection.pendingReads.update { _ = $0.removeValue(forKey: request) }
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
        write(vp: vp, port: port, size: size, value: value, partition: partition)
    }

    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 {
        read(vp: vp, port: port, size: size, partition: partition)
    }
}

/// Delivers HvPostMessage on a parent-owned connection to the parent, without blocking the
/// posting processor: the message is numbered and kept until the parent acknowledges it, and
/// queued in the partition's lane. A full lane or a full log is reported to the guest as
/// INSUFFICIENT_BUFFERS, which guests retry (Linux's `vmbus_post_msg` up to 100 times with
/// backoff); a closed connection as INVALID_CONNECTION_ID, as if the parent had already gone.
struct GuestMessageForwarder: HvMessageConnection {
    let partitionID: UInt32
    let connectionID: UInt32
    let connection: ParentLink.Connection
    let state: PartitionLinkState

    func receive(from vp: UInt32, type: SynICMessageType, payload: [UInt8]) -> HypercallStatus {
        guard !connection.closed.load(ordering: .acquiring) else { return .invalidConnectionID }
        let queued = state.record(vp: vp, connectionID: connectionID, messageType: type.rawValue, payload: payload) { message in
            connection.outbox.enqueue(RootMessage.sequencedGuestMessage(message).bytes, lane: partitionID, isJob: true,
                                      admission: .ifRoom)
        }
        guard queued else { return .insufficientBuffers }
        // Outside the log's lock: on a quiet link this processor sends it at once itself.
        connection.outbox.help()
        return .success
    }
}
