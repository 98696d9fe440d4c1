import GuestKit
import HyperV
import VMBusClient
import VMBusProtocol

/// The guest's VMBus client: the I/O around the `VMBusClient` core. It posts the core's
/// messages with HvPostMessage (sleeping first for the core's retry pauses), polls SINT 2's
/// message slot for the host's answers, ticks the core at its deadlines, and waits for the
/// events its callers ask for. The sequence is Linux's hv_vmbus: INITIATE_CONTACT newest
/// version first, REQUESTOFFERS, then per device a GPADL for its rings and OPENCHANNEL.
public struct VMBusDriver {
    /// Retried posts pause at most 1 ms: a partition started the moment it is created posts
    /// before the parent has registered its connections, and a longer pause only adds to its
    /// start-up (the pauses are halts, so polling costs the host nothing).
    public private(set) var client = VMBusClient(configuration: .init(retry: PostRetryPolicy(longestPause: 1_000_000)))
    /// Every channel offered so far, in offer order.
    public private(set) var offers: [OfferChannel] = []
    let synic = SynICClient(vp: 0)
    let clock: Clock
    /// The TSC reading the core's nanoseconds count from.
    let epoch: UInt64
    /// Events no caller has taken yet (the oldest are dropped beyond `pendingLimit`).
    var pending: [ClientEvent] = []
    static let pendingLimit = 64

    public init(clock: Clock) {
        self.clock = clock
        epoch = CPU.timestamp()
    }

    /// The negotiated version, once connected.
    public var version: VMBusVersion? { client.version }

    /// Negotiates the newest version the host accepts.
    public mutating func connect() -> Bool {
        guard let monitors = PageAllocator.allocate(pages: 2) else { return false }
        do throws(ClientError) {
            perform(try client.connect(monitorPage1: monitors, monitorPage2: monitors + 4096))
        } catch {
            return false
        }
        return wait { event in
            switch event {
            case .connected: true
            case .failed(.connect, _): false
            default: nil
            }
        } ?? false
    }

    /// Asks for the offers and collects them (`offers`) until ALLOFFERS_DELIVERED.
    public mutating func requestOffers() -> Bool {
        do throws(ClientError) {
            perform(try client.requestOffers())
        } catch {
            return false
        }
        return wait { event in
            switch event {
            case .allOffersDelivered: true
            case .failed(.requestOffers, _): false
            default: nil
            }
        } ?? false
    }

    /// Creates a GPADL for `2 * ringPages` fresh pages and opens the channel with the first half
    /// as the guest→host ring and the second half as the host→guest ring.
    public mutating func open(_ offer: OfferChannel, ringPages: Int) -> GuestChannel? {
        guard ringPages >= 2, let address = PageAllocator.allocate(pages: 2 * ringPages) else { return nil }
        let relID = offer.childRelID
        guard let gpadl = createGPADL(channel: relID, address: address, pages: 2 * ringPages) else { return nil }
        do throws(ClientError) {
            perform(try client.openChannel(relID, gpadl: gpadl, targetVP: 0, downstreamPageOffset: UInt32(ringPages)))
        } catch {
            return nil
        }
        let opened = wait { event in
            switch event {
            case .opened(relID, let status): status == 0
            case .failed(.openChannel(relID), _): false
            default: nil
            }
        }
        guard opened == true else { return nil }
        return try? GuestChannel(
            relID: relID, connectionID: offer.connectionID.rawValue, interfaceType: offer.interfaceType,
            outgoing: LocalRingMemory(address: address, pages: ringPages),
            incoming: LocalRingMemory(address: address + UInt64(ringPages) * 4096, pages: ringPages), clock: clock)
    }

    /// Handles host messages until `count` offers that `match` accepts are in `offers` (for
    /// example the sub-channels a device announced), or `timeoutNanoseconds` pass; returns them.
    public mutating func waitForOffers(count: Int, timeoutNanoseconds: UInt64, where match: (OfferChannel) -> Bool)
        -> [OfferChannel]
    {
        let start = now
        while offers.filter(match).count < count, now &- start < timeoutNanoseconds { step() }
        return offers.filter(match)
    }

    /// Shares `pages` contiguous pages at `address` with the host for channel `relID` (a ring
    /// pair, or a device's buffer) and waits for GPADL_CREATED.
    /// - Returns: the GPADL's handle, or `nil` if the host refused it or did not answer.
    public mutating func createGPADL(channel relID: UInt32, address: UInt64, pages: Int) -> UInt32? {
        let pfns = (0..<pages).map { address / 4096 + UInt64($0) }
        let gpadl: UInt32
        do throws(ClientError) {
            let created = try client.createGPADL(channel: relID, pageNumbers: pfns)
            gpadl = created.gpadl
            perform(created.actions)
        } catch {
            return nil
        }
        let created = wait { event in
            switch event {
            case .gpadlCreated(gpadl, _, let status): status == 0
            case .failed(.createGPADL(gpadl), _): false
            default: nil
            }
        }
        return created == true ? gpadl : nil
    }

    /// The relid of the next channel the host rescinds, within `timeoutNanoseconds`.
    public mutating func waitForRescind(timeoutNanoseconds: UInt64) -> UInt32? {
        let start = now
        while true {
            if let relID = take({ event in if case .rescinded(let relID) = event { relID } else { nil } }) {
                return relID
            }
            guard now &- start < timeoutNanoseconds else { return nil }
            step()
        }
    }

    /// Handles the host messages waiting now — offers of hot-added devices, rescinds — and the
    /// core's deadlines, without waiting.
    public mutating func pollMessages() {
        var handled = 0
        while handled < 16, let message = synic.receive(sint: VMBusConstants.messageSINT) {
            perform(client.handle(message.payload, now: now))
            handled += 1
        }
        if let deadline = client.nextDeadline, now >= deadline { perform(client.tick(now: now)) }
    }

    /// The relid of a channel the host rescinded since the last call, if any.
    public mutating func takeRescinded() -> UInt32? {
        take { event in if case .rescinded(let relID) = event { relID } else { nil } }
    }

    /// Answers a rescind with RELID_RELEASED.
    public mutating func releaseRelID(_ relID: UInt32) -> Bool {
        do throws(ClientError) {
            perform(try client.releaseRelID(relID))
        } catch {
            return false
        }
        return take { event in if case .failed(.releaseRelID(relID), _) = event { true } else { nil } } == nil
    }

    // MARK: The loop

    /// Nanoseconds since `epoch`.
    var now: UInt64 { clock.nanoseconds(from: epoch, to: CPU.timestamp()) }

    /// Feeds the core until an event `match` maps to a value, and returns that value; `nil` once
    /// the core awaits nothing more (its own deadlines end every wait with a failure event).
    mutating func wait<T>(_ match: (ClientEvent) -> T?) -> T? {
        while true {
            if let value = take(match) { return value }
            guard client.nextDeadline != nil else { return nil }
            step()
        }
    }

    /// Takes the oldest pending event `match` maps to a value.
    mutating func take<T>(_ match: (ClientEvent) -> T?) -> T? {
        for index in pending.indices {
            if let value = match(pending[index]) {
                pending.remove(at: index)
                return value
            }
        }
        return nil
    }

    /// One turn: a host message if one waits in the SINT 2 slot, else the core's deadline if it
    /// passed, else a halt until SINT 2's interrupt says a message has come (or the deadline, or
    /// at most `haltNanoseconds`). Spinning here instead would take the processor from the host
    /// threads that are answering, which is what slowed many partitions starting at once.
    mutating func step() {
        if let message = synic.receive(sint: VMBusConstants.messageSINT) {
            perform(client.handle(message.payload, now: now))
        } else if let deadline = client.nextDeadline, now >= deadline {
            perform(client.tick(now: now))
        } else {
            let current = now
            let untilDeadline = client.nextDeadline.map { $0 &- current } ?? Self.haltNanoseconds
            CPU.sleep(nanoseconds: min(untilDeadline, Self.haltNanoseconds))
        }
    }

    /// The longest halt between looks at the message slot. A message that lands in the few
    /// instructions between the look and the halt is found only when the halt ends.
    static let haltNanoseconds: UInt64 = 200_000

    /// Carries out the core's actions, and those its answers to posts bring.
    mutating func perform(_ actions: [ClientAction]) {
        var queue = actions
        var index = 0
        while index < queue.count {
            switch queue[index] {
            case .post(let message, let connection, let delay):
                if delay > 0 { CPU.sleep(nanoseconds: delay) }
                let status = Hypercall.postMessage(connection: connection.rawValue, type: SynICMessageType.vmbus.rawValue,
                                                   payload: message.bytes)
                queue += client.postCompleted(status, now: now)
            case .wait:
                // `step` polls until the core's next deadline.
                break
            case .event(let event):
                note(event)
            }
            index += 1
        }
    }

    mutating func note(_ event: ClientEvent) {
        switch event {
        case .offer(let offer):
            offers.append(offer)
        case .versionRefused, .ignored:
            break
        default:
            if pending.count >= Self.pendingLimit { pending.removeFirst() }
            pending.append(event)
        }
    }
}
