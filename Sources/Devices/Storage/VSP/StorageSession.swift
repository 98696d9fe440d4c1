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
    private var announcedVersion: StorageProtocolVersion?
    private var violations = 0
    private var backendFailures = 0

    /// How long closing waits for requests in flight (their buffers are guest pages).
    static let drainMilliseconds: Int32 = 30_000

    init(provider: StorageVSP, server: StorageServer, index: UInt16) {
        self.provider = provider
        self.server = server
        self.index = index
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
                                             maximumPages: server.maximumPages)
        try perform(server.handle(incoming), on: channel)
        if index == 0, announcedVersion == nil, case .ready(let version) = server.phase {
            announcedVersion = version
            provider.negotiated(version)
        }
    }

    func acceptsPacket(on channel: VSPChannel) -> Bool {
        let outstanding = server.outstandingCount
        guard outstanding < server.configuration.maximumOutstandingRequests else { return false }
        return channel.hasRoom(forPayload: (outstanding + 1) * StorageChannelConstants.completionRingBytes)
    }

    func work(on channel: VSPChannel) throws(VSPError) -> Bool {
        var progressed = false
        for queue in queues.values {
            do throws(SystemError) {
                try queue.commit()
            } catch {
                // What was not handed over stays queued and goes with the next commit.
                noteBackendFailure("commit to \(queue.image.path): \(error)")
            }
            let completions = queue.reap()
            if !completions.isEmpty {
                progressed = true
                try complete(completions, on: channel)
            }
        }
        if index == 0 {
            let notifications = server.pollBusChanges()
            if !notifications.isEmpty {
                progressed = true
                try perform(notifications, on: channel)
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
            let completions = queue.reapBeforeSleeping()
            if !completions.isEmpty {
                progressed = true
                try complete(completions, on: channel)
            }
        }
        if index == 0 {
            _ = provider.busChanged.consume()
            let notifications = server.pollBusChanges()
            if !notifications.isEmpty {
                progressed = true
                try perform(notifications, on: channel)
            }
        }
        return progressed
    }

    var wakeDescriptors: [Int32] {
        queues.values.map(\.completionEvent.rawValue) + (index == 0 ? [provider.busChanged.rawValue] : [])
    }

    func close() {
        for queue in queues.values where queue.inFlight > 0 {
            do throws(SystemError) {
                _ = try queue.drain(timeoutMilliseconds: Self.drainMilliseconds)
            } catch {
                provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index): draining \(queue.image.path): \(error)")
            }
            if queue.inFlight > 0 {
                provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index) closed with \(queue.inFlight) requests to \(queue.image.path) still in flight")
            }
        }
        queues.removeAll()
        provider.sessionClosed()
    }

    // MARK: Actions

    /// Carries out the server's actions in order.
    private func perform(_ actions: [StorageAction], on channel: VSPChannel) throws(VSPError) {
        for action in actions {
            switch action {
            case .send(let packet):
                try channel.send(packet.type, flags: packet.flags, transactionID: packet.transactionID, payload: packet.payload)
            case .execute(let request):
                try perform(execute(request), on: channel)
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

    /// Starts a request the server handed out; returns what can be answered at once.
    private func execute(_ request: StorageIORequest) -> [StorageAction] {
        let memory = provider.memory
        switch request.operation {
        case .copyToGuest(let bytes):
            guard let buffer = buffer(request, bytes: bytes.count) else { return server.complete(request.token, result: .failed(.guestMemory)) }
            do throws(GuestMemoryError) {
                let copied = try memory.write(bytes, to: buffer)
                return server.complete(request.token, result: .completed(byteCount: copied))
            } catch {
                return server.complete(request.token, result: .failed(.guestMemory))
            }
        case .readParameterList(let length):
            guard let buffer = buffer(request, bytes: length) else { return server.complete(request.token, result: .failed(.guestMemory)) }
            do throws(GuestMemoryError) {
                return server.parameterListArrived(request.token, try memory.read(from: buffer, count: length))
            } catch {
                return server.complete(request.token, result: .failed(.guestMemory))
            }
        case .read(let offset, let length, _):
            guard let buffer = buffer(request, bytes: length) else { return server.complete(request.token, result: .failed(.guestMemory)) }
            return submit(request, .read(offset: offset, buffers: buffer))
        case .write(let offset, let length, let forceUnitAccess):
            guard let buffer = buffer(request, bytes: length) else { return server.complete(request.token, result: .failed(.guestMemory)) }
            return submit(request, .write(offset: offset, buffers: buffer, forceUnitAccess: forceUnitAccess))
        case .flush:
            return submit(request, .flush)
        case .unmap(let ranges):
            return submit(request, .discard(ranges.map { (offset: $0.offset, length: $0.length) }))
        }
    }

    /// The first `bytes` bytes of the request's guest buffer as iovecs, validated page by page
    /// against guest RAM; `nil` if the buffer is missing or any page is not RAM.
    private func buffer(_ request: StorageIORequest, bytes: Int) -> GuestIOVectors? {
        guard let range = request.buffer, bytes >= 0, bytes <= Int(range.byteCount) else { return nil }
        let pages = VMBusConstants.pageCount(byteOffset: range.byteOffset, byteCount: UInt32(bytes))
        guard pages <= range.pfns.count else { return nil }
        do throws(GuestMemoryError) {
            return try provider.memory.ioVectors(byteOffset: range.byteOffset, byteCount: UInt32(bytes),
                                                 pageNumbers: Array(range.pfns.prefix(pages)))
        } catch {
            return nil
        }
    }

    /// Hands a media request to the queue of its disk.
    private func submit(_ request: StorageIORequest, _ operation: DiskRequest.Operation) -> [StorageAction] {
        guard let unit = request.unit, let queue = queue(for: unit) else {
            // Detached between the command and now, or its queue could not be made.
            return server.complete(request.token, result: .failed(.deviceFailure))
        }
        do throws(DiskQueueError) {
            try queue.submit(DiskRequest(tag: request.token.rawValue, operation: operation))
            return []
        } catch {
            noteBackendFailure("\(error)")
            return server.complete(request.token, result: .failed(.deviceFailure))
        }
    }

    /// The channel's queue for a disk, made on first use.
    private func queue(for unit: StorageController.UnitID) -> DiskQueue? {
        if let queue = queues[unit] { return queue }
        guard let image = provider.image(for: unit) else { return nil }
        do throws(SystemError) {
            let queue = try DiskQueue(image: image, depth: StorageVSP.maximumOutstandingRequests, engine: provider.engine,
                                      inlinePageCacheHits: true)
            queues[unit] = queue
            return queue
        } catch {
            noteBackendFailure("cannot start a disk queue for \(image.path): \(error)")
            return nil
        }
    }

    /// Completes the server's requests for finished disk requests.
    private func complete(_ completions: [DiskCompletion], on channel: VSPChannel) throws(VSPError) {
        for completion in completions {
            let result: StorageIOResult
            switch completion.result {
            case .success(let bytes):
                result = .completed(byteCount: bytes)
            case .failure(let error):
                noteBackendFailure("\(error)")
                result = .failed(StorageIOFailure(errno: error.errno.rawValue))
            }
            try perform(server.complete(StorageRequestToken(rawValue: completion.tag), result: result), on: channel)
        }
        // A queue whose disk was detached goes once it has nothing in flight (it holds the image).
        for (unit, queue) in queues where queue.inFlight == 0 && provider.image(for: unit) == nil {
            queues[unit] = nil
        }
    }

    private func noteBackendFailure(_ reason: String) {
        backendFailures += 1
        if backendFailures <= 8 || backendFailures.nonzeroBitCount == 1 {
            provider.logger.warning("partition \(provider.host.partitionName): SCSI channel \(index): \(reason) (\(backendFailures) so far)")
        }
    }
}
