import HypervisorInterface
import LinuxSupport

/// Signals eventfds the parent partition handed the root, from a thread of its own.
///
/// Such a descriptor is shared with the parent, and the parent can make it block a writer: an
/// eventfd without O_NONBLOCK whose counter it has filled blocks `write(2)` until someone reads
/// it, and the parent may clear O_NONBLOCK at any moment (file status flags belong to the open
/// file both processes hold). So neither the link's reader nor a guest's processor (an
/// HvSignalEvent that exits to the root) writes to one itself; they hand the event here. A write
/// that blocks holds up only later signals to the same parent, and `stop()` interrupts it.
final class ParentEventSignaller: HvEventRelay {
    private struct State: Sendable {
        var pending: [EventFD] = []
        /// The events in `pending`, looked up without a scan (processors wait on this lock).
        var queued: Set<ObjectIdentifier> = []
        var stopping = false
    }

    private let state = ConditionLock(State())
    private let thread: OSThread

    init(name: String) throws(SystemError) {
        let state = state
        thread = try OSThread.spawn(name: name) {
            while true {
                // The deadline only bounds the sleep; `signal` and `stop` wake it.
                let taken = state.wait(until: { $0.stopping || !$0.pending.isEmpty },
                                       timeoutNanoseconds: 1_000_000_000) { state -> [EventFD]? in
                    if state.stopping { return nil }
                    defer {
                        state.pending.removeAll()
                        state.queued.removeAll()
                    }
                    return state.pending
                }
                guard let events = taken ?? [] else { return }
                for event in events { event.signal() }
            }
        }
    }

    /// Queues one signal of `event`; one already queued and not yet written covers it, so the
    /// queue holds each event at most once (no more than the parent has registered).
    func signal(_ event: EventFD) {
        state.update { state in
            guard !state.stopping, state.queued.insert(ObjectIdentifier(event)).inserted else { return }
            state.pending.append(event)
        }
    }

    /// Stops the thread, interrupting a write the parent made block, and waits for it. Signals
    /// still queued are dropped (the parent they were for is gone).
    func stop() {
        state.update { $0.stopping = true }
        while !thread.isFinished {
            thread.interrupt()
            MonotonicClock.sleep(.nanoseconds(1_000_000))
        }
        thread.join()
    }
}
