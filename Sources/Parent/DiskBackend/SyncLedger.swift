import LinuxSupport
import Synchronization

/// The data syncs in flight on one image's buffered descriptor, from every queue of the image
/// and its synchronous path: flushes' fdatasyncs and FUA writes (RWF_DSYNC).
///
/// Linux reports a lost write-back once per open file: the first sync on the file to look takes
/// the error and the ones after it find none (`errseq`, Documentation/filesystems/vfs.rst). Every
/// queue of an image syncs through the same open file, so a sync that returned 0 proves nothing
/// while another that overlapped it may have taken the error and not been looked at yet. A sync
/// therefore completes its requests only once every sync begun before it finished has ended,
/// each having latched its failure (`DiskImage.syncFailure`) before it ends.
public final class SyncLedger: Sendable {
    private struct State {
        var next: UInt64 = 1
        /// Tickets begun and not ended.
        var inFlight: Set<UInt64> = []
        /// Descriptors to signal when a sync ends (queues whose completions wait for it).
        var waiters: [EventFD] = []
    }

    private let state = Mutex(State())

    init() {}

    /// A sync is about to start: its ticket.
    func begin() -> UInt64 {
        state.withLock { state in
            defer { state.next += 1 }
            state.inFlight.insert(state.next)
            return state.next
        }
    }

    /// The sync of `ticket` has ended and its failure, if any, is latched: the queues that wait
    /// for it look again.
    func end(_ ticket: UInt64) {
        let waiters = state.withLock { state -> [EventFD] in
            state.inFlight.remove(ticket)
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.signal() }
    }

    /// Every ticket handed out so far: a sync that ended proves its result once every sync up to
    /// here has ended.
    var barrier: UInt64 { state.withLock { $0.next - 1 } }

    /// Whether every sync up to `barrier` has ended; if not, `waiter` is signalled when one ends.
    func isSettled(through barrier: UInt64, orSignal waiter: EventFD?) -> Bool {
        state.withLock { state in
            if !state.inFlight.contains(where: { $0 <= barrier }) { return true }
            if let waiter, !state.waiters.contains(where: { $0 === waiter }) { state.waiters.append(waiter) }
            return false
        }
    }

    /// Syncs begun and not ended.
    public var inFlight: Int { state.withLock { $0.inFlight.count } }
}
