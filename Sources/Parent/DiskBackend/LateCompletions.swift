import CDiskIO
import Glibc
import GuestMemory
import LinuxSupport
import Synchronization

/// Custody of io_uring rings released while the kernel still had operations of theirs in
/// flight: a read or write on a backing file that stopped answering (a hung NFS server, a
/// FUSE file whose daemon stalled) can stay in the kernel for as long as it likes, and the
/// owner that lets go of its queue — a channel closing — must not wait for it.
///
/// The kernel goes on writing into the operations' buffers until it posts their completions,
/// so a released ring keeps its buffers, and through them the guest memory they point into,
/// until then. One background thread, running only while some ring is in custody, reads the
/// rings' completion queues every `interval` and destroys each ring once nothing of it is left
/// in flight. A single-issuer ring (IORING_SETUP_DEFER_TASKRUN) posts completions only when its
/// owner's thread asks, and the custodian is another thread: once such a ring has a completion
/// to post, it is kept, with its memory, for the rest of the process, and no longer looked at.
enum LateCompletions {
    /// How often the custodian looks at the rings it holds.
    static let interval = Duration.milliseconds(20)

    private struct State {
        var rings: [AbandonedRing] = []
        /// Rings this thread cannot reap (see above).
        var kept: [AbandonedRing] = []
        var custodianRunning = false
    }

    private static let state = Mutex(State())

    /// Operations of released rings the kernel has not finished yet.
    static var operationsInFlight: Int {
        state.withLock { ($0.rings + $0.kept).reduce(0) { $0 + $1.inFlight.load(ordering: .relaxed) } }
    }

    /// Takes `ring` into custody, starting the custodian if it is not running.
    static func adopt(_ ring: AbandonedRing) {
        let start = state.withLock { state in
            state.rings.append(ring)
            guard !state.custodianRunning else { return false }
            state.custodianRunning = true
            return true
        }
        guard start else { return }
        do throws(SystemError) {
            _ = try OSThread.spawn(name: "late-io") { custodian() }
        } catch {
            // No thread now: the ring stays in custody (its memory kept) and the next
            // adoption tries again.
            state.withLock { $0.custodianRunning = false }
        }
    }

    /// Reaps every ring in custody until none is left.
    private static func custodian() {
        while true {
            let rings = state.withLock { $0.rings }
            var finished: [ObjectIdentifier] = []
            var unreachable: [AbandonedRing] = []
            for ring in rings {
                switch ring.reap() {
                case .finished: finished.append(ObjectIdentifier(ring))
                case .unreachable: unreachable.append(ring)
                case .waiting: break
                }
            }
            finished += unreachable.map(ObjectIdentifier.init)
            let done = state.withLock { state in
                state.kept += unreachable
                state.rings.removeAll { finished.contains(ObjectIdentifier($0)) }
                if state.rings.isEmpty { state.custodianRunning = false }
                return !state.custodianRunning
            }
            if done { return }
            MonotonicClock.sleep(interval)
        }
    }
}

/// A ring its engine let go of with operations in flight, with those operations' buffers.
final class AbandonedRing: @unchecked Sendable {
    // SAFETY: after adoption only the custodian thread reaps the ring (the engine that made it
    // is gone), and it frees the ring in deinit, after the last completion; `inFlight` is
    // atomic because `operationsInFlight` reads it from other threads.
    private let ring: UnsafeMutablePointer<cdiskio_ring>
    private var buffers: [UInt64: GuestIOVectors]
    let inFlight: Atomic<Int>

    init(ring: UnsafeMutablePointer<cdiskio_ring>, buffers: [UInt64: GuestIOVectors]) {
        self.ring = ring
        self.buffers = buffers
        inFlight = Atomic(buffers.count)
    }

    enum Progress { case finished, waiting, unreachable }

    /// Hands the kernel what the owner prepared but could not submit, then reads the
    /// completions posted so far.
    func reap() -> Progress {
        var entered = cdiskio_ring_submit(ring, 0)
        if entered >= 0, cdiskio_ring_needs_enter(ring) != 0 { entered = cdiskio_ring_get_events(ring) }
        // A single-issuer ring refuses every other thread.
        if entered == -EEXIST { return .unreachable }
        var id: UInt64 = 0
        var result: Int32 = 0
        while cdiskio_ring_next_completion(ring, &id, &result) == 1 { buffers[id] = nil }
        inFlight.store(buffers.count, ordering: .relaxed)
        return buffers.isEmpty ? .finished : .waiting
    }

    deinit {
        cdiskio_ring_destroy(ring)
        ring.deallocate()
    }
}
