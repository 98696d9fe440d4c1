import ControlProtocol
import Partition
import Synchronization

/// What the root keeps of one partition for whichever parent serves it, across parent restarts
/// (Docs/architecture.md, "A parent that restarts"):
///
/// - the guest messages the parent has not acknowledged, numbered: a parent that dies before
///   handling one leaves it here, and the next parent gets it again once it registers the
///   message's connection;
/// - the parent's saved state, opaque records it commits at every change of its services'
///   state, bounded in count and size, handed to the next parent before the partition itself.
final class PartitionLinkState: Sendable {
    let id: UInt32
    private let log = Mutex(GuestMessageLog())
    private let saved = Mutex(SavedState())
    /// How fast the partition's port accesses go to the parent: one budget per intercepted
    /// range, by its first port (kept across parent restarts, so a new parent does not refill
    /// a flooding guest's budget).
    private let budgets = Mutex<[UInt16: PortAccessBudget]>([:])

    /// The budget of the range starting at `base`, at `accessesPerSecond` (0: the default),
    /// never above `PortAccessBudget.highestRate`; a range registered again keeps its budget
    /// if its pace is unchanged.
    func portBudget(base: UInt16, accessesPerSecond: UInt32) -> PortAccessBudget {
        let rate = accessesPerSecond == 0 ? PortAccessBudget.defaultRate
            : min(Double(accessesPerSecond), PortAccessBudget.highestRate)
        return budgets.withLock { budgets in
            if let existing = budgets[base], existing.perSecond == rate { return existing }
            // Bounded as the ranges are (PortInterceptLimit); a parent cannot grow it further.
            if budgets[base] == nil && budgets.count >= PortInterceptLimit.ranges { budgets.removeAll() }
            let budget = PortAccessBudget(perSecond: rate, burst: max(PortAccessBudget.defaultBurst, rate / 8))
            budgets[base] = budget
            return budget
        }
    }

    /// The most guest messages waiting for the parent's acknowledgement; beyond it, HvPostMessage
    /// answers INSUFFICIENT_BUFFERS and the guest retries.
    static let logCapacity = 1024

    init(id: UInt32) {
        self.id = id
    }

    struct GuestMessageLog {
        var nextSequence: UInt64 = 1
        var entries: [SequencedGuestMessage] = []
    }

    struct SavedState {
        var records: [UInt64: [UInt8]] = [:]
        var bytes = 0
        /// False once a commit could not be kept: the next parent then starts afresh rather than
        /// from a state that lacks that change.
        var isValid = true
    }

    // MARK: Guest messages

    /// Numbers a guest message and hands it to `send` (which queues it for the parent), keeping
    /// it until the parent acknowledges it. Both happen under the log's lock, so numbers go out
    /// in order.
    /// - Returns: `false`, and keeps nothing, when the log is full or `send` refuses.
    func record(vp: UInt32, connectionID: UInt32, messageType: UInt32, payload: [UInt8],
                send: (SequencedGuestMessage) -> Bool) -> Bool {
        log.withLock { log in
            guard log.entries.count < Self.logCapacity else { return false }
            let message = SequencedGuestMessage(partitionID: id, sequence: log.nextSequence, vp: vp, connectionID: connectionID,
                                                messageType: messageType, payload: payload)
            guard send(message) else { return false }
            log.nextSequence += 1
            log.entries.append(message)
            return true
        }
    }

    /// Hands every unacknowledged message on `connectionID` to `send`, oldest first, then runs
    /// `then` (which registers the connection), all under the log's lock: no new message of the
    /// guest can come between the old ones and the registration.
    func replay(connectionID: UInt32, send: (SequencedGuestMessage) -> Void, then: () -> Void) {
        log.withLock { log in
            for message in log.entries where message.connectionID == connectionID { send(message) }
            then()
        }
    }

    /// The parent has handled every message up to `sequence`.
    func acknowledge(through sequence: UInt64) {
        guard sequence > 0 else { return }
        log.withLock { log in
            let handled = log.entries.prefix { $0.sequence <= sequence }.count
            log.entries.removeFirst(handled)
        }
    }

    /// Messages waiting for an acknowledgement.
    var unacknowledged: [SequencedGuestMessage] { log.withLock { $0.entries } }

    // MARK: Saved state

    /// Applies a committed change: records with bytes are stored, records without are deleted.
    /// - Returns: `false` if the result would pass `SavedStateLimits` (the state is then dropped
    ///   and marked invalid).
    func apply(_ records: [StateRecord]) -> Bool {
        saved.withLock { saved in
            guard saved.isValid else { return false }
            var next = saved
            for record in records {
                if let old = next.records[record.key] { next.bytes -= old.count }
                if let bytes = record.bytes {
                    next.records[record.key] = bytes
                    next.bytes += bytes.count
                } else {
                    next.records[record.key] = nil
                }
            }
            guard next.records.count <= SavedStateLimits.maximumRecords, next.bytes <= SavedStateLimits.maximumBytes else {
                saved = SavedState(records: [:], bytes: 0, isValid: false)
                return false
            }
            saved = next
            return true
        }
    }

    /// The saved records, by key (none when the state was dropped).
    var savedRecords: [StateRecord] {
        saved.withLock { saved in
            saved.records.keys.sorted().map { StateRecord(key: $0, bytes: saved.records[$0]) }
        }
    }

    /// The saved state's size in bytes.
    var savedBytes: Int { saved.withLock { $0.bytes } }
}
