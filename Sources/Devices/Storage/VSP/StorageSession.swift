import DiskBackend
import GuestMemory
import LinuxSupport
import StorageProtocol
import VMBusHost
import VMBusProtocol

/// One open channel of a SCSI controller, confined to the channel's worker thread: the storage
/// protocol state machine (`StorageServer`) and a disk queue per disk the channel has used.
/// Data moves between the image file and the guest's pages named by each request, validated
/// against the partition's RAM (`GuestMemory.ioVectors`), with no copy in between.
///
/// Flow control (Docs/storage.md, "Driving it from a channel"): a packet is taken off the ring
/// only when the host→guest ring has room for the completions of every request in flight plus
/// its own, and the channel is below its request limit, so completions never wait in a queue
/// of ours and a guest that stops reading its ring only stops its own channel.
final class StorageSession: ChannelSession {
    let provider: StorageVSP
    var server: StorageServer
    /// 0 for the primary channel.
    let index: UInt16
    private var queues: [StorageController.UnitID: DiskQueue] = [:]
    /// The queue of the last request (most requests go to the disk the one before went to).
    private var lastUnit: StorageController.UnitID?
    private var lastQueue: DiskQueue?
    /// When `handle` publishes the answers it wrote (the worker publishes the rest once the ring
    /// is empty, before `work`).
    private var publishing = InlineAnswerPublishing()
    /// What the server asked for and is not yet done; kept for its capacity.
    private var actions: [StorageAction] = []
    /// Disk requests reaped and not yet answered; kept for its capacity.
    private var finished: [DiskCompletion] = []
    /// The bytes of the packet being sent, reused from packet to packet.
    private var outgoing = [UInt8](repeating: 0, count: VStorPacket.size)
    private var announcedVersion: StorageProtocolVersion?
    private var violations = 0
    private var backendFailures = 0

    /// How long closing waits for requests in flight (their buffers are guest pages), for all
    /// of the channel's disks together.
    static let drainMilliseconds: Int32 = 30_000

    /// The server's limits, read once: a getter on `server` would copy the whole state machine
    /// (retaining everything it holds) for every packet.
    private let maximumPages: Int
    private let maximumOutstandingRequests: Int

    init(provider: StorageVSP, server: StorageServer, index: UInt16) {
        self.provider = provider
        self.server = server
        self.index = index
        maximumPages = server.maximumPages
        maximumOutstandingRequests = server.configuration.maximumOutstandingRequests
    }

    /// How long an idle storage channel keeps polling before it sleeps: a guest with requests
    /// in flight sends the next one right after it sees a completion, and waking a sleeping worker
    /// (the guest's HvSignalEvent, an eventfd wake-up) costs far more than a short spin.
    static let idleSpinNanoseconds: UInt64 = 100_000

    // MARK: ChannelSession

    func start(on channel: VSPChannel) throws(VSPError) {
        channel.idleSpinNanoseconds = Self.idleSpinNanoseconds
    }

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        let incoming = StorageIncomingPacket(descriptor: packet.descriptor, packet: packet.bytes,
                                             maximumPages: maximumPages)
        server.handle(incoming, into: &actions)
        try performActions(on: channel)
        // A request the disk finished at once (a page-cache hit) is answered, and the answer
        // published, before the next packet is read: the guest, polling, starts its next
        // request while this worker reads on, instead of both taking turns over whole batches.
        if let queue = lastQueue, queue.hasFinishedInline {
            queue.reap(into: &finished)
            var moved = 0
            for completion in finished {
                if case .success(let bytes) = completion.result { moved += bytes }
            }
            let publishNow = publishing.answered(finished.count, movedBytes: moved)
            try complete(on: channel)
            if publishNow { channel.publish() }
        }
        if index == 0, announcedVersion == nil, case .ready(let version) = server.phase {
            announcedVersion = version
            provider.negotiated(version)
        }
    }

    func acceptsPacket(on channel: VSPChannel) -> Bool {
        let outstanding = server.outstandingCount
        guard outstanding < maximumOutstandingRequests else { return false }
        return channel.hasRoom(forPayload: (outstanding + 1) * StorageChannelConstants.completionRingBytes)
    }

    func work(on channel: VSPChannel) throws(VSPError) -> Bool {
        // The worker published everything before this pass.
        publishing.reset()
        var progressed = false
        for queue in queues.values {
            commit(queue)
            queue.reap(into: &finished)
            if !finished.isEmpty {
                progressed = true
                try complete(on: channel)
            }
        }
        dropDetachedQueues()
        if index == 0 {
            actions += server.pollBusChanges()
            if !actions.isEmpty {
                progressed = true
                try performActions(on: channel)
            }
        }
        // While the disk has requests of this channel, poll for their completions rather than
        // sleep on the queue's eventfd: a wake-up costs more than most completions take.
        if server.outstandingCount > 0 { channel.keepPolling(forNanoseconds: Self.busyPollNanoseconds) }
        return progressed
    }

    /// How long after the last pass with requests in flight the worker keeps polling.
    static let busyPollNanoseconds: UInt64 = 500_000

    func beforeSleeping(on channel: VSPChannel) throws(VSPError) -> Bool {
        var progressed = false
        for queue in queues.values {
            queue.reapBeforeSleeping(into: &finished)
            // What the reap started (a FUA write's sync, the rest of a short transfer, work
            // that waited for room) goes to the kernel before the worker sleeps: other
            // channels' flushes may wait for it to end (`SyncLedger`).
            commit(queue)
            if !finished.isEmpty {
                progressed = true
                try complete(on: channel)
            }
        }
        if index == 0 {
            _ = provider.busChanged.consume()
            actions += server.pollBusChanges()
            if !actions.isEmpty {
                progressed = true
                try performActions(on: channel)
            }
        }
        return progressed
    }

    var wakeDescriptors: [Int32] {
        queues.values.map(\.completionEvent.rawValue) + (index == 0 ? [provider.busChanged.rawValue] : [])
    }

    func close() {
        // One deadline for every disk: a guest that left slow requests on many disks must not
        // hold the close for one wait per disk.
        let deadline = MonotonicClock.nanoseconds() &+ UInt64(Self.drainMilliseconds) * 1_000_000
        for queue in queues.values where queue.inFlight > 0 {
            let remaining = deadline &- min(MonotonicClock.nanoseconds(), deadline)
            do throws(SystemError) {
                _ = try queue.drain(timeoutMilliseconds: Int32(clamping: remaining / 1_000_000))
            } catch {
                provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index): draining \(queue.image.path): \(error)")
            }
            if queue.inFlight > 0 {
                provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index) closed with \(queue.inFlight) requests to \(queue.image.path) still in flight")
            }
        }
        queues.removeAll()
        lastQueue = nil
        provider.sessionClosed()
    }

    // MARK: Actions

    /// Carries out the server's actions in order, and those they lead to (a request the disk
    /// answers at once appends its completion), then empties the list.
    private func performActions(on channel: VSPChannel) throws(VSPError) {
        defer { actions.removeAll(keepingCapacity: true) }
        var next = 0
        while next < actions.count {
            let action = actions[next]
            next += 1
            switch action {
            case .send(let packet):
                packet.vstor.store(into: &outgoing, at: 0)
                try channel.send(packet.type, flags: packet.flags, transactionID: packet.transactionID, payload: outgoing)
            case .execute(let request):
                execute(request)
            case .createSubChannels(let count):
                channel.offerSubChannels(Int(count))
            case .protocolViolation(let reason):
                // Answered negatively already; the channel stays open. Logged sparingly, since
                // the guest decides how often this happens.
                violations += 1
                if violations <= 8 || violations.nonzeroBitCount == 1 {
                    provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index): \(reason) (\(violations) so far)")
                }
            }
        }
    }

    /// Starts a request the server handed out; what can be answered at once joins `actions`.
    private func execute(_ request: StorageIORequest) {
        let memory = provider.memory
        switch request.operation {
        case .copyToGuest(let bytes):
            guard let buffer = buffer(request, bytes: bytes.count) else { return fail(request, .guestMemory) }
            do throws(GuestMemoryError) {
                let copied = try memory.write(bytes, to: buffer)
                server.complete(request.token, result: .completed(byteCount: copied), into: &actions)
            } catch {
                fail(request, .guestMemory)
            }
        case .readParameterList(let length):
            guard let buffer = buffer(request, bytes: length) else { return fail(request, .guestMemory) }
            do throws(GuestMemoryError) {
                actions += server.parameterListArrived(request.token, try memory.read(from: buffer, count: length))
            } catch {
                fail(request, .guestMemory)
            }
        case .read(let offset, let length, _):
            guard let buffer = buffer(request, bytes: length) else { return fail(request, .guestMemory) }
            submit(request, .read(offset: offset, buffers: buffer))
        case .write(let offset, let length, let forceUnitAccess):
            guard let buffer = buffer(request, bytes: length) else { return fail(request, .guestMemory) }
            submit(request, .write(offset: offset, buffers: buffer, forceUnitAccess: forceUnitAccess))
        case .flush:
            submit(request, .flush)
        case .unmap(let ranges):
            submit(request, .discard(ranges.map { (offset: $0.offset, length: $0.length) }))
        }
    }

    /// Answers a request whose driver part failed before it reached the disk.
    private func fail(_ request: StorageIORequest, _ failure: StorageIOFailure) {
        server.complete(request.token, result: .failed(failure), into: &actions)
    }

    /// The first `bytes` bytes of the request's guest buffer as iovecs, validated page by page
    /// against guest RAM; `nil` if the buffer is missing or any page is not RAM.
    private func buffer(_ request: StorageIORequest, bytes: Int) -> GuestIOVectors? {
        guard let range = request.buffer, bytes >= 0, bytes <= Int(range.byteCount) else { return nil }
        let pages = VMBusConstants.pageCount(byteOffset: range.byteOffset, byteCount: UInt32(bytes))
        guard pages <= range.pfns.count else { return nil }
        do throws(GuestMemoryError) {
            return try provider.memory.ioVectors(byteOffset: range.byteOffset, byteCount: UInt32(bytes),
                                                 pageNumbers: range.pfns.prefix(pages))
        } catch {
            return nil
        }
    }

    /// Hands a media request to the queue of its disk.
    private func submit(_ request: StorageIORequest, _ operation: DiskRequest.Operation) {
        guard let unit = request.unit, let queue = queue(for: unit) else {
            // Detached between the command and now, or its queue could not be made.
            return fail(request, .deviceFailure)
        }
        do throws(DiskQueueError) {
            try queue.submit(DiskRequest(tag: request.token.rawValue, operation: operation))
        } catch {
            noteBackendFailure("\(error)")
            return fail(request, .deviceFailure)
        }
        // Requests go to the kernel in small groups as they are read, the rest at the end of the
        // pass (Docs/storage.md, "Engines").
        commit(queue, groupOnly: true)
    }

    /// Hands what the queue holds to the kernel (with `groupOnly`, only once a group waits);
    /// what could not be handed over stays queued and goes with the next commit.
    private func commit(_ queue: DiskQueue, groupOnly: Bool = false) {
        do throws(SystemError) {
            if groupOnly {
                try queue.commitIfGroupFull()
            } else {
                try queue.commit()
            }
        } catch {
            noteBackendFailure("commit to \(queue.image.path): \(error)")
        }
    }

    /// The channel's queue for a disk, made on first use.
    private func queue(for unit: StorageController.UnitID) -> DiskQueue? {
        if let lastQueue, lastUnit == unit { return lastQueue }
        if let queue = queues[unit] {
            (lastUnit, lastQueue) = (unit, queue)
            return queue
        }
        guard let image = provider.image(for: unit) else { return nil }
        do throws(SystemError) {
            let queue = try DiskQueue(image: image, depth: StorageVSP.maximumOutstandingRequests, engine: provider.engine,
                                      inlinePageCacheHits: true)
            queues[unit] = queue
            (lastUnit, lastQueue) = (unit, queue)
            return queue
        } catch {
            noteBackendFailure("cannot start a disk queue for \(image.path): \(error)")
            return nil
        }
    }

    /// Completes the server's requests for the disk requests in `finished`, and empties it.
    private func complete(on channel: VSPChannel) throws(VSPError) {
        defer { finished.removeAll(keepingCapacity: true) }
        for completion in finished {
            let result: StorageIOResult
            switch completion.result {
            case .success(let bytes):
                result = .completed(byteCount: bytes)
            case .failure(let error):
                noteBackendFailure("\(error)")
                result = .failed(StorageIOFailure(errno: error.errno.rawValue))
            }
            server.complete(StorageRequestToken(rawValue: completion.tag), result: result, into: &actions)
        }
        try performActions(on: channel)
    }

    /// A queue whose disk was detached goes once it has nothing in flight (it holds the image).
    private func dropDetachedQueues() {
        for (unit, queue) in queues where queue.inFlight == 0 && provider.image(for: unit) == nil {
            queues[unit] = nil
            if lastQueue === queue { lastQueue = nil }
        }
    }

    private func noteBackendFailure(_ reason: String) {
        backendFailures += 1
        if backendFailures <= 8 || backendFailures.nonzeroBitCount == 1 {
            provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index): \(reason) (\(backendFailures) so far)")
        }
    }
}

/// When a storage channel's worker publishes the answers it wrote to requests the page cache
/// served at once (Docs/storage.md, "Page-cache hits inline"): every `answers`-th answer, or as
/// soon as the answers not yet published moved `bytes`. Publishing each small answer would cost
/// more than it gives a polling guest; holding back a large one leaves the guest waiting for it
/// while the worker copies the next, with nothing to submit meanwhile.
package struct InlineAnswerPublishing: Sendable {
    package static let answers = 4
    package static let bytes = 128 * 1024

    private var unpublished = 0
    private var unpublishedBytes = 0

    package init() {}

    /// Notes `count` answers to requests that moved `movedBytes` together; `true` when the
    /// answers written so far are to be published now (the count then starts again).
    package mutating func answered(_ count: Int = 1, movedBytes: Int) -> Bool {
        unpublished += max(count, 0)
        unpublishedBytes += max(movedBytes, 0)
        guard unpublished >= Self.answers || unpublishedBytes >= Self.bytes else { return false }
        reset()
        return true
    }

    /// Everything written was published.
    package mutating func reset() {
        unpublished = 0
        unpublishedBytes = 0
    }
}
