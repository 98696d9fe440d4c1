import CDiskIO
import Glibc
import GuestMemory
import LinuxSupport
import SystemPackage

/// io_uring: operations go into the submission ring as they are enqueued and reach the kernel
/// in one io_uring_enter per `submit()`; completions are read from the completion ring, and
/// the kernel signals `completionEvent` (IORING_REGISTER_EVENTFD) as they become available.
///
/// With `singleIssuer` the ring uses IORING_SETUP_SINGLE_ISSUER and
/// IORING_SETUP_DEFER_TASKRUN, as fio does: completion work runs in batches when the owner asks
/// for events (each `submit()`, and `reap()` when the kernel flags pending work) instead of
/// interrupting it. The ring is enabled by the first call from the owner's thread, and only
/// that thread may use it afterwards.
public final class IOURingEngine: DiskIOEngine, @unchecked Sendable {
    // SAFETY: every method runs on the queue owner's thread (one at a time; a queue handed to
    // another thread is handed over before that thread starts). `ring` points to memory this
    // object allocates in init and frees in deinit (or hands, with the ring, to
    // `LateCompletions`); the kernel-shared pages it maps are reached only through the C
    // functions, which follow io_uring's ordering rules.
    private let ring: UnsafeMutablePointer<cdiskio_ring>
    public let completionEvent: EventFD
    public let capacity: Int
    /// Buffers of operations in flight: the kernel reads the iovec arrays and guest pages
    /// until it posts the completion.
    private var buffers: [UInt64: GuestIOVectors] = [:]
    private var enabled = false

    /// A ring for `capacity` operations in flight.
    public init(capacity: Int, singleIssuer: Bool = false) throws(SystemError) {
        let entries = UInt32(min(max(capacity, 1), 32_768)).nextPowerOfTwo
        ring = .allocate(capacity: 1)
        let result = cdiskio_ring_init(ring, entries, singleIssuer ? 1 : 0)
        guard result == 0 else {
            ring.deallocate()
            throw SystemError("set up an io_uring of \(entries) entries", errno: Errno(rawValue: -result))
        }
        let event: EventFD
        do {
            event = try EventFD()
        } catch {
            cdiskio_ring_destroy(ring)
            ring.deallocate()
            throw error
        }
        let registered = cdiskio_ring_register_eventfd(ring, event.rawValue)
        guard registered == 0 else {
            cdiskio_ring_destroy(ring)
            ring.deallocate()
            throw SystemError("register an eventfd with io_uring", errno: Errno(rawValue: -registered))
        }
        completionEvent = event
        self.capacity = Int(ring.pointee.sq_entries)
    }

    deinit {
        // Operations still in flight go on reading and writing their buffers after the queue
        // lets go of them, so the ring must not close under them; nor may the owner wait for
        // them, since a backing file that stopped answering keeps them there for good. Whatever
        // is left after handing the kernel every prepared entry is reaped once, and the rest
        // goes, with its buffers (and so the guest memory they point into), into the custody
        // of `LateCompletions`, which closes the ring when the kernel is done with it. (Only a
        // single-issuer ring's owner thread can have its completions posted, so custody keeps
        // such a ring, and its memory, for good.)
        if !buffers.isEmpty, enabled {
            _ = cdiskio_ring_submit(ring, 0)
            var done: [DiskEngineCompletion] = []
            reap(into: &done)
        }
        guard buffers.isEmpty else {
            LateCompletions.adopt(AbandonedRing(ring: ring, buffers: buffers))
            return
        }
        cdiskio_ring_destroy(ring)
        ring.deallocate()
    }

    /// Operations the kernel still holds of rings released before it finished them (see
    /// `deinit`); for tests and diagnostics.
    public static var lateOperations: Int { LateCompletions.operationsInFlight }

    /// Enables a ring created disabled, from the owner's thread, on first use.
    private func enable() throws(SystemError) {
        guard !enabled else { return }
        let result = cdiskio_ring_enable(ring)
        guard result == 0 else { throw SystemError("enable an io_uring", errno: Errno(rawValue: -result)) }
        enabled = true
    }

    public func enqueue(_ operation: DiskEngineOperation) throws(SystemError) {
        try enable()
        // The queue keeps at most `capacity` operations in flight, so a full submission queue
        // only holds entries not yet handed to the kernel.
        if cdiskio_ring_space(ring) == 0 { try submit() }
        let result: Int32
        switch operation.kind {
        case .read(let descriptor, let offset, let vectors):
            result = vectors.withUnsafeIOVectors { base, count in
                cdiskio_ring_prep_readv(ring, descriptor, base, UInt32(count), offset, operation.id)
            }
            buffers[operation.id] = vectors
        case .write(let descriptor, let offset, let vectors, let dataSync):
            result = vectors.withUnsafeIOVectors { base, count in
                cdiskio_ring_prep_writev(ring, descriptor, base, UInt32(count), offset, dataSync ? 1 : 0, operation.id)
            }
            buffers[operation.id] = vectors
        case .dataSync(let descriptor):
            result = cdiskio_ring_prep_fdatasync(ring, descriptor, operation.id)
        case .punchHole(let descriptor, let offset, let length):
            result = cdiskio_ring_prep_punch_hole(ring, descriptor, offset, length, operation.id)
        }
        guard result == 0 else {
            buffers[operation.id] = nil
            throw SystemError("queue an io_uring operation", errno: Errno(rawValue: -result))
        }
    }

    public func submit() throws(SystemError) {
        try enable()
        if cdiskio_ring_unsubmitted(ring) == 0, cdiskio_ring_needs_enter(ring) != 0 {
            _ = cdiskio_ring_get_events(ring)
        }
        while cdiskio_ring_unsubmitted(ring) > 0 {
            let result = cdiskio_ring_submit(ring, 0)
            if result == -EAGAIN || result == -EBUSY {
                // The kernel is short of resources or has completions to post first; they
                // will be reaped, and the rest submitted on the next pass.
                return
            }
            guard result >= 0 else { throw SystemError("submit to io_uring", errno: Errno(rawValue: -result)) }
            if result == 0 { return }
        }
    }

    public func reap(into completions: inout [DiskEngineCompletion]) {
        if enabled, cdiskio_ring_needs_enter(ring) != 0 { _ = cdiskio_ring_get_events(ring) }
        var id: UInt64 = 0
        var result: Int32 = 0
        while cdiskio_ring_next_completion(ring, &id, &result) == 1 {
            buffers[id] = nil
            completions.append(DiskEngineCompletion(id: id, result: Int(result)))
        }
    }

    public func shutdown() {}
}

extension UInt32 {
    var nextPowerOfTwo: UInt32 {
        self <= 1 ? 1 : 1 << (32 - (self - 1).leadingZeroBitCount)
    }
}
