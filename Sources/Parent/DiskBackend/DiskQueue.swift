import Glibc
import GuestMemory
import LinuxSupport
import SystemPackage

/// The requests of one channel to one disk image: a bounded queue over an engine, with the
/// flush ordering and short-transfer handling in one place whatever the engine.
///
/// Durability contract: a flush completes only after a data sync that *started after the flush
/// was submitted* has returned; that sync covers every write that completed before the flush
/// was submitted (fdatasync covers everything in the page cache at the time it starts). A
/// flush submitted while an earlier sync runs therefore waits for a new one; flushes that wait
/// together share it. A FUA write is durable on its own: with RWF_DSYNC where it bypasses the
/// page cache, and through the page cache as a write then a data sync of its own, so that an
/// error of the write (ENOSPC when a block cannot be allocated) is never taken for a lost
/// write-back, nor one of the sync for the write's. A flush or FUA write
/// whose sync succeeded completes only once every sync of the image that overlapped it (from
/// any queue) has ended (`SyncLedger`): one of those may have taken a write-back error this
/// one then did not see.
///
/// One thread owns the queue (the channel worker): it submits requests, calls
/// `commitIfGroupFull()` after each and `commit()` once per pass, and reaps completions when
/// `completionEvent` is readable or while it polls its ring. Before sleeping on
/// `completionEvent` it calls `reapBeforeSleeping()`.
public final class DiskQueue: @unchecked Sendable {
    // SAFETY: every method runs on the owner's thread, one at a time; the engine's own
    // threads (if any) only reach shared state through the engine's locks.
    public let image: DiskImage
    /// The most requests accepted and not yet delivered.
    public let depth: Int
    public let engine: any DiskIOEngine

    /// Requests accepted and not yet delivered by `reap`.
    public private(set) var inFlight = 0
    /// Operations handed to the engine since the last commit.
    private var uncommitted = 0

    private enum Work {
        case transfer(request: UInt64, read: Bool, descriptor: Int32, offset: UInt64, buffers: GuestIOVectors,
                      forceUnitAccess: Bool, done: Int)
        case punchHole(request: UInt64)
        case dataSync
        /// The data sync that makes a FUA write through the page cache durable.
        case writeSync(request: UInt64)
    }

    private struct Request {
        enum Kind {
            case read
            case write
            case flush
            case discard
        }

        var tag: UInt64
        var kind: Kind
        var offset: UInt64 = 0
        var length: UInt64 = 0
        var pendingOperations: Int
        var bytes = 0
        var failure: Errno?
    }

    /// What a failed request was doing, for its error (built only on failure).
    private func describe(_ request: Request) -> String {
        switch request.kind {
        case .read: "read \(request.length) bytes at \(request.offset) of \(image.path)"
        case .write: "write \(request.length) bytes at \(request.offset) of \(image.path)"
        case .flush: "flush \(image.path)"
        case .discard: "discard \(request.length) ranges of \(image.path)"
        }
    }

    private var requests: [UInt64: Request] = [:]
    private var nextRequest: UInt64 = 1
    private var work: [UInt64: Work] = [:]
    private var nextOperation: UInt64 = 1
    private var engineInFlight = 0
    private var backlog: [DiskEngineOperation] = []
    private var backlogHead = 0
    private var failedToQueue: [DiskEngineCompletion] = []
    /// Scratch for `reap`, kept for its capacity.
    private var engineCompletions: [DiskEngineCompletion] = []
    private var delivered: [DiskCompletion] = []
    /// The data sync in flight and the flush requests it completes.
    private var currentSync: (operation: UInt64, flushes: [UInt64])?
    /// Flush requests submitted while `currentSync` was running: they need a sync of their own.
    private var waitingFlushes: [UInt64] = []
    /// The image's sync tickets of the operations in the engine that sync (`SyncLedger`).
    private var syncTickets: [UInt64: UInt64] = [:]
    /// Requests whose sync succeeded, waiting for the syncs that overlapped it to end.
    private var unsettled: [(barrier: UInt64, requests: [UInt64])] = []

    /// The deepest queue accepted.
    public static let maximumDepth = 4096

    /// A queue of `depth` requests (1...4096) on `image` with an engine of `kind`.
    public convenience init(image: DiskImage, depth: Int = 128, engine kind: DiskEngineKind = .default,
                            inlinePageCacheHits: Bool = false, blockingWritesInline: Bool? = nil) throws(SystemError) {
        let depth = min(max(depth, 1), Self.maximumDepth)
        try self.init(image: image, depth: depth, engine: kind.makeEngine(capacity: depth + 1),
                      inlinePageCacheHits: inlinePageCacheHits, blockingWritesInline: blockingWritesInline)
    }

    /// A queue over a given engine (tests use a recording one).
    /// - Parameter inlinePageCacheHits: try each buffered read and non-FUA write first with
    ///   RWF_NOWAIT on the calling thread; one the page cache takes or gives whole without
    ///   blocking completes at once (it is delivered by the next `reap`), one that moved only a
    ///   part goes on in the engine from there, and one that moved nothing goes to the engine
    ///   whole. Saves the engine's round trip for what is only a memory copy. A file system that
    ///   refuses RWF_NOWAIT (EOPNOTSUPP: ext4's buffered writes on Linux 6.18, tmpfs's reads and
    ///   writes) is not asked again for that direction; where it refuses writes, io_uring would
    ///   hand each to a kernel worker thread, so a write of at most `inlineWriteLimit` bytes is
    ///   written on the calling thread instead (with `blockingWritesInline`), and a larger one
    ///   goes to the engine.
    /// - Parameter blockingWritesInline: whether such a write may block the calling thread; by
    ///   default only where the image is a file on a local file system. A remote one, or a block
    ///   device, which may be served over a network too (`DiskImage.isRemote`),
    ///   can keep the write, and so the thread, waiting for as long as its server takes, and the
    ///   thread is a channel's worker, which its close waits for.
    public init(image: DiskImage, depth: Int, engine: any DiskIOEngine, inlinePageCacheHits: Bool = false,
                blockingWritesInline: Bool? = nil) {
        self.image = image
        self.depth = min(max(depth, 1), Self.maximumDepth)
        self.engine = engine
        self.inlinePageCacheHits = inlinePageCacheHits
        self.blockingWritesInline = blockingWritesInline ?? !image.isRemote
    }

    /// Whether page-cache hits complete on the submitting thread (see `init`).
    public let inlinePageCacheHits: Bool
    /// Whether a small write the file system takes only by blocking is written on the
    /// submitting thread (see `init`).
    public let blockingWritesInline: Bool
    /// The largest buffered write done on the submitting thread where the file system has no
    /// non-blocking buffered writes: small ones cost a copy into the page cache, less than the
    /// hand-off to a kernel worker; larger ones go to the engine, so the copy overlaps other work.
    public static let inlineWriteLimit = 64 << 10
    /// Requests that completed inline (page-cache hits, small writes written on the calling
    /// thread) since the queue was made.
    public private(set) var inlineCompletions = 0

    deinit {
        engine.shutdown()
        // Syncs abandoned in flight (a close whose drain ran out of time) may have taken a
        // write-back error no one will look at: later flushes of the image fail rather than
        // prove what that sync may have lost, and the other queues stop waiting for them.
        if !syncTickets.isEmpty { latchSyncFailure(EIO) }
        for ticket in syncTickets.values { image.syncs.end(ticket) }
    }

    /// Readable when completions may be waiting.
    public var completionEvent: EventFD { engine.completionEvent }

    /// Whether another request would be accepted.
    public var hasRoom: Bool { inFlight < depth }

    /// Accepts a request; it starts at the next `commit()` at the latest.
    /// - Throws: `.full` at `depth` requests; `.invalid` for a range outside the image, a
    ///   write or discard on a read-only image, or discard where holes cannot be punched.
    public func submit(_ request: DiskRequest) throws(DiskQueueError) {
        guard inFlight < depth else { throw .full }
        let number = nextRequest
        switch request.operation {
        case .read(let offset, let buffers), .write(let offset, let buffers, _):
            let isRead: Bool
            let fua: Bool
            if case .write(_, _, let forceUnitAccess) = request.operation {
                guard !image.isReadOnly else { throw .invalid("write to read-only image \(image.path)") }
                isRead = false
                fua = forceUnitAccess
            } else {
                isRead = true
                fua = false
            }
            try checkRange(offset, UInt64(buffers.byteCount))
            guard buffers.byteCount > 0 else { return deliverNow(request.tag, .success(0)) }
            let descriptor = image.descriptor(offset: offset, buffers: buffers)
            var moved = 0
            let tryInline = isRead
                ? !nonBlockingReadsUnsupported
                : !nonBlockingWritesUnsupported || blockingWritesInline && buffers.byteCount <= Self.inlineWriteLimit
            if inlinePageCacheHits, !fua, tryInline, descriptor == image.buffered.rawValue {
                moved = transferNow(descriptor, offset: offset, buffers: buffers, write: !isRead)
                if moved == buffers.byteCount {
                    inlineCompletions += 1
                    return deliverNow(request.tag, .success(buffers.byteCount))
                }
            }
            // The engine carries on after what moved inline (a read that met a page the cache
            // did not hold, a short write), as it carries on after a short transfer of its own.
            var rest = buffers
            if moved > 0 {
                do throws(GuestMemoryError) {
                    rest = try buffers.dropping(first: moved)
                } catch {
                    moved = 0
                }
            }
            requests[number] = Request(tag: request.tag, kind: isRead ? .read : .write, offset: offset,
                                       length: UInt64(buffers.byteCount), pendingOperations: 1)
            start(.transfer(request: number, read: isRead, descriptor: descriptor, offset: offset + UInt64(moved), buffers: rest,
                            forceUnitAccess: fua, done: moved))
        case .flush:
            if image.isReadOnly { return deliverNow(request.tag, .success(0)) }
            if let latched = latchedSyncFailure {
                return deliverNow(request.tag, .failure(SystemError("flush \(image.path) after a failed data sync", errno: latched)))
            }
            requests[number] = Request(tag: request.tag, kind: .flush, pendingOperations: 1)
            if currentSync == nil {
                startSync(for: [number])
            } else {
                waitingFlushes.append(number)
            }
        case .discard(let ranges):
            guard !image.isReadOnly else { throw .invalid("discard on read-only image \(image.path)") }
            guard image.supportsPunchHole else { throw .invalid("\(image.path) cannot punch holes") }
            for range in ranges { try checkRange(range.offset, range.length) }
            let punched = ranges.filter { $0.length > 0 }
            guard !punched.isEmpty else { return deliverNow(request.tag, .success(0)) }
            requests[number] = Request(tag: request.tag, kind: .discard, length: UInt64(punched.count),
                                       pendingOperations: punched.count)
            for range in punched {
                let id = nextOperationID()
                work[id] = .punchHole(request: number)
                queue(DiskEngineOperation(id: id, kind: .punchHole(descriptor: image.buffered.rawValue,
                                                                    offset: range.offset, length: range.length)))
            }
            nextRequest += 1
            inFlight += 1
            return
        }
        nextRequest += 1
        inFlight += 1
    }

    /// Hands every queued operation to the kernel (one system call for io_uring).
    public func commit() throws(SystemError) {
        uncommitted = 0
        try engine.submit()
    }

    /// How many operations `commitIfGroupFull` lets gather for one commit.
    public static let commitGroup = 4

    /// Commits once `commitGroup` operations wait. A worker calls it after each request and
    /// `commit` at the end of its pass: the first requests of a long pass reach the disk while
    /// the rest are read, and a group still shares one system call and one device
    /// notification. On the development machine's virtio disk, O_DIRECT random 4 KiB reads at
    /// QD32 through a guest went at about 72,000 IOPS committed once per pass, 63,000 one by
    /// one and 90,000 in groups of four (Docs/storage.md, "Engines").
    public func commitIfGroupFull() throws(SystemError) {
        if uncommitted >= Self.commitGroup { try commit() }
    }

    /// The requests finished since the last call, in the order they finished.
    public func reap() -> [DiskCompletion] {
        var completions: [DiskCompletion] = []
        reap(into: &completions)
        return completions
    }

    /// Whether a request finished without the engine (a page-cache hit, a small write written
    /// inline, an empty transfer) and waits to be reaped: a caller may answer it at once.
    public var hasFinishedInline: Bool { !delivered.isEmpty }

    /// Appends the requests finished since the last call to `completions`, in the order they
    /// finished; a caller that keeps the array between calls reaps without allocating.
    public func reap(into completions: inout [DiskCompletion]) {
        let queuedFailures = failedToQueue.count
        swap(&engineCompletions, &failedToQueue)
        engine.reap(into: &engineCompletions)
        engineInFlight -= engineCompletions.count - queuedFailures
        for completion in engineCompletions { finish(completion) }
        engineCompletions.removeAll(keepingCapacity: true)
        // Operations waiting for engine room start now; the caller commits them on its pass.
        while backlogHead < backlog.count, engineInFlight < engine.capacity {
            let operation = backlog[backlogHead]
            backlogHead += 1
            enqueue(operation)
        }
        if backlogHead == backlog.count {
            backlog.removeAll(keepingCapacity: true)
            backlogHead = 0
        }
        if !unsettled.isEmpty { settleWaiting() }
        inFlight -= delivered.count
        completions.append(contentsOf: delivered)
        delivered.removeAll(keepingCapacity: true)
    }

    /// Clears `completionEvent`, then reaps: a completion posted after this call signals the
    /// event again, so the caller may sleep on it if this returns nothing.
    public func reapBeforeSleeping() -> [DiskCompletion] {
        var completions: [DiskCompletion] = []
        reapBeforeSleeping(into: &completions)
        return completions
    }

    /// The same, appending to `completions`.
    public func reapBeforeSleeping(into completions: inout [DiskCompletion]) {
        _ = completionEvent.consume()
        reap(into: &completions)
    }

    /// Commits, then waits up to `timeoutMilliseconds` (negative: forever) for at least one
    /// completion; for callers without a loop of their own (tools, tests, channel close).
    public func waitForCompletions(timeoutMilliseconds: Int32) throws(SystemError) -> [DiskCompletion] {
        try commit()
        let deadline = MonotonicClock.nanoseconds() &+ UInt64(max(timeoutMilliseconds, 0)) * 1_000_000
        while true {
            let ready = reapBeforeSleeping()
            if !ready.isEmpty || inFlight == 0 { return ready }
            try commit()
            let now = MonotonicClock.nanoseconds()
            if timeoutMilliseconds >= 0, now >= deadline { return [] }
            let remaining = timeoutMilliseconds < 0 ? Int32(-1) : Int32(clamping: (deadline - now) / 1_000_000 + 1)
            _ = try Poll.wait(on: [completionEvent.rawValue], timeoutMilliseconds: remaining)
        }
    }

    /// Waits until every accepted request has completed, or the timeout passes, and returns
    /// their completions. Call it on the owner's thread before releasing the queue (a closing
    /// channel): requests in flight hold guest buffers, and a single-issuer io_uring can only be
    /// drained by its owner.
    public func drain(timeoutMilliseconds: Int32) throws(SystemError) -> [DiskCompletion] {
        let deadline = MonotonicClock.nanoseconds() &+ UInt64(max(timeoutMilliseconds, 0)) * 1_000_000
        var completions: [DiskCompletion] = []
        while inFlight > 0 {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else { break }
            completions += try waitForCompletions(timeoutMilliseconds: Int32(clamping: (deadline - now) / 1_000_000 + 1))
        }
        return completions
    }

    // MARK: Internals

    private var latchedSyncFailure: Errno? {
        let raw = image.syncFailure.load(ordering: .acquiring)
        return raw == 0 ? nil : Errno(rawValue: raw)
    }

    private func latchSyncFailure(_ errno: Int32) {
        _ = image.syncFailure.compareExchange(expected: 0, desired: errno, ordering: .acquiringAndReleasing)
    }

    private func checkRange(_ offset: UInt64, _ length: UInt64) throws(DiskQueueError) {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= image.size else {
            throw .invalid("\(length) bytes at \(offset) are outside the \(image.size)-byte image \(image.path)")
        }
    }

    /// One attempt at the whole transfer on this thread: non-blocking, or for a small write on a
    /// local file system without non-blocking writes a plain one.
    /// - Returns: the bytes that moved (0 after an error: the engine then does it all, and
    ///   reports its own error).
    private func transferNow(_ descriptor: Int32, offset: UInt64, buffers: GuestIOVectors, write: Bool) -> Int {
        let mayBlock = write && nonBlockingWritesUnsupported
        let done = engine.transferInline(descriptor: descriptor, offset: offset, buffers: buffers, write: write, mayBlock: mayBlock)
        // A file system without non-blocking buffered transfers says so every time: stop
        // asking; a write (this one and later small ones) is then written on this thread.
        if done == -Int(EOPNOTSUPP), !mayBlock {
            guard write else {
                nonBlockingReadsUnsupported = true
                return 0
            }
            nonBlockingWritesUnsupported = true
            if blockingWritesInline, buffers.byteCount <= Self.inlineWriteLimit {
                return transferNow(descriptor, offset: offset, buffers: buffers, write: write)
            }
        }
        return max(0, min(done, buffers.byteCount))
    }

    /// The image's file system refused a non-blocking buffered write (EOPNOTSUPP).
    public private(set) var nonBlockingWritesUnsupported = false
    /// The image's file system refused a non-blocking buffered read (EOPNOTSUPP).
    public private(set) var nonBlockingReadsUnsupported = false

    private func deliverNow(_ tag: UInt64, _ result: Result<Int, SystemError>) {
        delivered.append(DiskCompletion(tag: tag, result: result))
        inFlight += 1
    }

    private func nextOperationID() -> UInt64 {
        defer { nextOperation += 1 }
        return nextOperation
    }

    private func start(_ item: Work) {
        let id = nextOperationID()
        work[id] = item
        switch item {
        case .transfer(_, let read, let descriptor, let offset, let buffers, let fua, _):
            queue(DiskEngineOperation(id: id, kind: read
                ? .read(descriptor: descriptor, offset: offset, buffers: buffers)
                : .write(descriptor: descriptor, offset: offset, buffers: buffers, dataSync: writesThrough(fua, descriptor))))
        case .punchHole, .dataSync, .writeSync:
            preconditionFailure("started through their own paths")
        }
    }

    private func startSync(for flushes: [UInt64]) {
        let id = nextOperationID()
        work[id] = .dataSync
        currentSync = (id, flushes)
        queue(DiskEngineOperation(id: id, kind: .dataSync(descriptor: image.buffered.rawValue)))
    }

    private func queue(_ operation: DiskEngineOperation) {
        if engineInFlight < engine.capacity, backlogHead == backlog.count {
            enqueue(operation)
        } else {
            backlog.append(operation)
        }
    }

    private func enqueue(_ operation: DiskEngineOperation) {
        // A sync (always of the buffered descriptor, which shares its write-back errors with
        // every other queue's) takes a ticket before the kernel can run it.
        if case .dataSync = operation.kind { syncTickets[operation.id] = image.syncs.begin() }
        do {
            try engine.enqueue(operation)
            engineInFlight += 1
            uncommitted += 1
        } catch {
            failedToQueue.append(DiskEngineCompletion(id: operation.id, result: -Int(error.errno.rawValue)))
        }
    }

    private func finish(_ completion: DiskEngineCompletion) {
        guard let item = work.removeValue(forKey: completion.id) else { return }
        // A failed sync is latched before its ticket ends, so that a sync waiting for it sees
        // the failure; a sync that succeeded proves its requests once the syncs that overlapped
        // it have ended (`barrier`).
        var barrier: UInt64?
        if let ticket = syncTickets.removeValue(forKey: completion.id) {
            if completion.result < 0 { latchSyncFailure(Int32(-completion.result)) }
            image.syncs.end(ticket)
            barrier = image.syncs.barrier
        }
        switch item {
        case .dataSync:
            let flushes = currentSync?.flushes ?? []
            currentSync = nil
            if let barrier, completion.result >= 0 {
                settle(flushes, through: barrier)
            } else {
                let failure = latchedSyncFailure
                for number in flushes {
                    if let failure { requests[number]?.failure = failure }
                    operationDone(number)
                }
            }
            if !waitingFlushes.isEmpty {
                let next = waitingFlushes
                waitingFlushes.removeAll()
                startSync(for: next)
            }
        case .punchHole(let number):
            if completion.result < 0 { fail(number, errno: completion.result) }
            operationDone(number)
        case .writeSync(let number):
            if completion.result < 0 {
                fail(number, errno: completion.result)
                return operationDone(number)
            }
            settle([number], through: barrier ?? image.syncs.barrier)
        case .transfer(let number, let read, let descriptor, let offset, let buffers, let fua, let done):
            if completion.result < 0 {
                // A FUA write that bypasses the page cache synced as it wrote (RWF_DSYNC): an
                // EIO may be a lost write-back of earlier writes it took, which a later flush
                // would then not see, so later flushes fail. (Through the page cache the write
                // synced nothing: its sync comes next, `writeSync`.)
                if fua, writesThrough(fua, descriptor), completion.result == -Int(EIO) { latchSyncFailure(EIO) }
                fail(number, errno: completion.result)
                return operationDone(number)
            }
            let total = done + min(completion.result, buffers.byteCount)
            if completion.result >= buffers.byteCount || requests[number]?.failure != nil {
                requests[number]?.bytes = total
                // Through the page cache, a FUA write is durable once its own sync is.
                guard requests[number]?.failure == nil, fua, !writesThrough(fua, descriptor) else { return operationDone(number) }
                return startWriteSync(for: number)
            }
            guard completion.result > 0 else {
                // End of file before the image's end: the file shrank underneath.
                fail(number, errno: -Int(EIO))
                return operationDone(number)
            }
            // A short transfer: carry on with the rest.
            do {
                let rest = try buffers.dropping(first: completion.result)
                let id = nextOperationID()
                work[id] = .transfer(request: number, read: read, descriptor: descriptor, offset: offset + UInt64(completion.result),
                                     buffers: rest, forceUnitAccess: fua, done: total)
                queue(DiskEngineOperation(id: id, kind: read
                    ? .read(descriptor: descriptor, offset: offset + UInt64(completion.result), buffers: rest)
                    : .write(descriptor: descriptor, offset: offset + UInt64(completion.result), buffers: rest,
                             dataSync: writesThrough(fua, descriptor))))
            } catch {
                fail(number, errno: -Int(EFAULT))
                operationDone(number)
            }
        }
    }

    /// Whether a FUA write on `descriptor` syncs as it writes (RWF_DSYNC): where it bypasses
    /// the page cache. Through the page cache it is written, then synced (`startWriteSync`).
    private func writesThrough(_ fua: Bool, _ descriptor: Int32) -> Bool {
        fua && descriptor != image.buffered.rawValue
    }

    /// Syncs the image for the FUA write `number`, written through the page cache.
    private func startWriteSync(for number: UInt64) {
        let id = nextOperationID()
        work[id] = .writeSync(request: number)
        queue(DiskEngineOperation(id: id, kind: .dataSync(descriptor: image.buffered.rawValue)))
    }

    /// Completes `numbers`, whose sync succeeded, once every sync up to `barrier` has ended;
    /// until then they wait (`settleWaiting`), and the ledger wakes this queue when one ends.
    private func settle(_ numbers: [UInt64], through barrier: UInt64) {
        guard image.syncs.isSettled(through: barrier, orSignal: completionEvent) else {
            unsettled.append((barrier, numbers))
            return
        }
        let failure = latchedSyncFailure
        for number in numbers {
            if let failure { requests[number]?.failure = failure }
            operationDone(number)
        }
    }

    /// Completes the waiting requests whose overlapping syncs have all ended.
    private func settleWaiting() {
        let waiting = unsettled
        unsettled.removeAll()
        for (barrier, numbers) in waiting { settle(numbers, through: barrier) }
    }

    private func fail(_ number: UInt64, errno negative: Int) {
        guard requests[number]?.failure == nil else { return }
        requests[number]?.failure = Errno(rawValue: Int32(-negative))
    }

    private func operationDone(_ number: UInt64) {
        guard var request = requests[number] else { return }
        request.pendingOperations -= 1
        guard request.pendingOperations == 0 else {
            requests[number] = request
            return
        }
        requests[number] = nil
        if let failure = request.failure {
            delivered.append(DiskCompletion(tag: request.tag, result: .failure(SystemError(describe(request), errno: failure))))
        } else {
            delivered.append(DiskCompletion(tag: request.tag, result: .success(request.bytes)))
        }
    }
}
