import GuestKit
import HyperV
import VMBusProtocol

/// The guest's VMBus client (Docs/hyperv-interface.md §6), the same sequence Linux's
/// hv_vmbus follows: INITIATE_CONTACT, newest version first, on connection 4 (5.0+) or 1;
/// REQUESTOFFERS; then, per device, a GPADL for its rings and OPENCHANNEL.
public struct VMBusClient {
    public private(set) var version: VMBusVersion?
    public private(set) var offers: [OfferChannel] = []
    let synic = SynICClient(vp: 0)
    let clock: Clock
    var nextGPADL: UInt32 = 0xE1E10
    var messageConnection = VMBusConstants.messageConnectionID.rawValue

    public init(clock: Clock) {
        self.clock = clock
    }

    /// Negotiates the newest version the host accepts.
    public mutating func connect() -> Bool {
        guard let monitors = PageAllocator.allocate(pages: 2) else { return false }
        for candidate in VMBusVersion.supported {
            let contact = InitiateContact(version: candidate, targetVP: 0, interruptPageOrTargetInfo: UInt64(VMBusConstants.messageSINT),
                                          monitorPage1: monitors, monitorPage2: monitors + 4096)
            let connection = candidate.usesMessageConnectionID4
                ? VMBusConstants.initiateContactConnectionID.rawValue : VMBusConstants.messageConnectionID.rawValue
            guard post(.initiateContact(contact), connection: connection) else { continue }
            guard case .versionResponse(let response)? = wait(for: .versionResponse) else { return false }
            if response.versionSupported {
                version = candidate
                messageConnection = candidate.usesMessageConnectionID4
                    ? response.messageConnectionID.rawValue : VMBusConstants.messageConnectionID.rawValue
                return true
            }
        }
        return false
    }

    /// Asks for the offers and collects them until ALLOFFERS_DELIVERED.
    public mutating func requestOffers() -> Bool {
        guard post(.requestOffers(RequestOffers()), connection: messageConnection) else { return false }
        while true {
            guard let message = nextMessage(timeoutNanoseconds: Self.answerTimeout) else { return false }
            switch message {
            case .offerChannel(let offer): offers.append(offer)
            case .allOffersDelivered: return true
            default: continue
            }
        }
    }

    /// Creates a GPADL for `pages` pages at `address` and opens the channel with the first half
    /// as the guest→host ring and the second half as the host→guest ring.
    public mutating func open(_ offer: OfferChannel, ringPages: Int) -> GuestChannel? {
        guard ringPages >= 2, let address = PageAllocator.allocate(pages: 2 * ringPages) else { return nil }
        let gpadl = nextGPADL
        nextGPADL += 1
        let pfns = (0..<(2 * ringPages)).map { address / 4096 + UInt64($0) }
        guard createGPADL(gpadl, channel: offer.childRelID, pfns: pfns) else { return nil }
        let open = OpenChannel(childRelID: offer.childRelID, openID: offer.childRelID, ringBufferGPADL: gpadl, targetVP: 0,
                               downstreamRingBufferPageOffset: UInt32(ringPages),
                               userData: [UInt8](repeating: 0, count: OpenChannel.userDataSize))
        guard post(.openChannel(open), connection: messageConnection),
              case .openResult(let result)? = wait(for: .openChannelResult), result.status == 0 else { return nil }
        return try? GuestChannel(
            relID: offer.childRelID, connectionID: offer.connectionID.rawValue, interfaceType: offer.interfaceType,
            outgoing: LocalRingMemory(address: address, pages: ringPages),
            incoming: LocalRingMemory(address: address + UInt64(ringPages) * 4096, pages: ringPages))
    }

    /// Posts the GPADL's header and bodies (`GPADLHeader.messages`), then waits for GPADL_CREATED.
    mutating func createGPADL(_ gpadl: UInt32, channel: UInt32, pfns: [UInt64]) -> Bool {
        guard let messages = GPADLHeader.messages(gpadl: gpadl, childRelID: channel, pfns: pfns) else { return false }
        for message in messages {
            guard post(message, connection: messageConnection) else { return false }
        }
        guard case .gpadlCreated(let created)? = wait(for: .gpadlCreated) else { return false }
        return created.status == 0
    }

    /// HvPostMessage, retried with growing pauses for up to five seconds while the host reports
    /// INSUFFICIENT_BUFFERS (its queue is full) or INVALID_CONNECTION_ID (the VMBus server has
    /// not registered the connection yet, as when the partition starts the moment it is
    /// created), as Linux's vmbus_post_msg does.
    public mutating func post(_ message: ChannelMessage, connection: UInt32) -> Bool {
        let deadline = CPU.timestamp() &+ clock.ticks(nanoseconds: 5_000_000_000)
        var pause: UInt64 = 100_000
        while true {
            let status = Hypercall.postMessage(connection: connection, type: SynICMessageType.vmbus.rawValue,
                                               payload: message.bytes)
            if status == .success { return true }
            guard status == .insufficientBuffers || status == .invalidConnectionID, CPU.timestamp() < deadline else {
                return false
            }
            CPU.sleep(nanoseconds: pause)
            pause = min(pause * 2, 50_000_000)
        }
    }

    /// How long the guest waits for the VMBus server's answer. It comes within milliseconds, but
    /// a parent starved of CPU (two cores, a test suite running beside it) can take seconds.
    static let answerTimeout: UInt64 = 10_000_000_000

    /// The next channel message of `type` (others are dropped), within `answerTimeout`.
    mutating func wait(for type: ChannelMessageType) -> ChannelMessage? {
        let deadline = CPU.timestamp() &+ clock.ticks(nanoseconds: Self.answerTimeout)
        while true {
            let now = CPU.timestamp()
            guard now < deadline else { return nil }
            let remaining = clock.nanoseconds(from: now, to: deadline)
            if let message = nextMessage(timeoutNanoseconds: remaining), message.type == type { return message }
        }
    }

    /// The next message from SINT 2, polling its slot.
    public func nextMessage(timeoutNanoseconds: UInt64) -> ChannelMessage? {
        let deadline = CPU.timestamp() &+ clock.ticks(nanoseconds: timeoutNanoseconds)
        while CPU.timestamp() < deadline {
            if let message = synic.receive(sint: VMBusConstants.messageSINT) {
                return try? ChannelMessage(parsing: message.payload)
            }
            CPU.relax()
        }
        return nil
    }
}
