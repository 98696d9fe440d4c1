import HyperV
import VMBusProtocol

/// The guest's VMBus control plane as a state machine with no I/O inside: the mirror of the
/// parent's `VMBusServer` (Docs/hyperv-interface.md §6; the sequence is Linux's
/// `drivers/hv/connection.c: vmbus_connect` and `drivers/hv/channel.c`).
///
/// Its inputs are the program's requests (`connect`, `requestOffers`, `createGPADL`,
/// `openChannel`, `closeChannel`, `teardownGPADL`, `releaseRelID`, `unload`), the host's channel
/// messages (`handle`), the status of each post (`postCompleted`) and the passing of time
/// (`tick`), each of the last three with "now" in nanoseconds of one monotonic clock. A
/// request's deadline starts when its last message has been posted. Its outputs are
/// `ClientAction`s: messages to post, one at a time and retried with growing pauses while the
/// host is busy, a deadline to wake up at, and events for the program.
///
/// The host is untrusted: its messages are checked against what the client is waiting for and
/// dropped otherwise (`ClientEvent.ignored`); every table a message can grow is bounded.
public struct VMBusClient: Sendable {
    /// Limits and parameters of the client.
    public struct Configuration: Hashable, Sendable {
        /// The versions to propose, newest first (Linux's order: `vmbus_versions`).
        public var versions: [VMBusVersion]
        /// The processor the host posts channel messages to.
        public var targetVP: UInt32
        /// The SINT channel messages arrive on (sent for versions 5.0 and later).
        public var messageSINT: UInt8
        /// The most channels the client keeps track of; later offers are dropped.
        public var maximumOffers: Int
        /// The most GPADLs at once (being created, created or being torn down).
        public var maximumGPADLs: Int
        /// The most messages waiting to be posted.
        public var maximumQueuedMessages: Int
        /// How long the host has to answer a request. It answers within milliseconds, but a
        /// parent starved of processor time (two cores, a test suite beside it) can take seconds.
        public var answerTimeout: UInt64
        /// How posts are retried while the host cannot take them.
        public var retry: PostRetryPolicy
        /// The first GPADL handle (Linux starts at 0xE1E10, `next_gpadl_handle`).
        public var firstGPADLHandle: UInt32

        public init(versions: [VMBusVersion] = VMBusVersion.supported, targetVP: UInt32 = 0,
                    messageSINT: UInt8 = UInt8(VMBusConstants.messageSINT), maximumOffers: Int = 256,
                    maximumGPADLs: Int = 64, maximumQueuedMessages: Int = 1024,
                    answerTimeout: UInt64 = 10_000_000_000, retry: PostRetryPolicy = PostRetryPolicy(),
                    firstGPADLHandle: UInt32 = 0xE1E10) {
            self.versions = versions
            self.targetVP = targetVP
            self.messageSINT = messageSINT
            self.maximumOffers = maximumOffers
            self.maximumGPADLs = maximumGPADLs
            self.maximumQueuedMessages = maximumQueuedMessages
            self.answerTimeout = answerTimeout
            self.retry = retry
            self.firstGPADLHandle = firstGPADLHandle
        }
    }

    /// Where the connection is.
    public enum Connection: Hashable, Sendable {
        case disconnected
        /// INITIATE_CONTACT for this version is posted or awaits VERSION_RESPONSE.
        case negotiating(VMBusVersion)
        case connected(VMBusVersion)
        /// UNLOAD is posted or awaits UNLOAD_RESPONSE.
        case unloading(VMBusVersion)
    }

    /// Where an offered channel is.
    public enum ChannelState: Hashable, Sendable {
        /// Offered and not open.
        case closed
        /// OPENCHANNEL with this ring GPADL awaits OPENCHANNEL_RESULT.
        case opening(gpadl: UInt32)
        case open(gpadl: UInt32)
        /// Rescinded by the host; waits for the program's `releaseRelID`.
        case rescinded
    }

    /// Where a GPADL is.
    public enum GPADLState: Hashable, Sendable {
        /// Its messages are posted or it awaits GPADL_CREATED.
        case creating
        case created
        /// GPADL_TEARDOWN is posted or awaits GPADL_TORNDOWN.
        case tearingDown
    }

    struct Channel: Sendable {
        var offer: OfferChannel
        var state: ChannelState
        /// When OPENCHANNEL_RESULT is due (while opening and posted).
        var deadline: UInt64?
    }

    struct GPADLRecord: Sendable {
        var handle: UInt32
        var channel: UInt32
        var pageCount: Int
        var state: GPADLState
        var deadline: UInt64?
    }

    struct Outgoing: Sendable {
        var message: ChannelMessage
        var connection: ConnectionID
        var request: ClientRequest
    }

    /// The post the driver is carrying out (always the head of the outbox): when the first
    /// attempt was reported, the pause before the next, and whether its request was abandoned
    /// meanwhile (its status then only frees the way for the next post).
    struct InFlight: Sendable {
        var firstReport: UInt64?
        var pause: UInt64
        var abandoned = false
    }

    public let configuration: Configuration
    public private(set) var connection = Connection.disconnected
    /// Where channel messages go once connected: the connection VERSION_RESPONSE names for 5.0
    /// and later, connection 1 before.
    public private(set) var messageConnection = VMBusConstants.messageConnectionID
    private var versionIndex = 0
    private var contactPages: (interrupt: UInt64, monitor1: UInt64, monitor2: UInt64) = (0, 0, 0)
    private var connectDeadline: UInt64?
    private var awaitingOffers = false
    private var offersDeadline: UInt64?
    private var unloadDeadline: UInt64?
    /// Offered channels in relid order.
    private var channels: [Channel] = []
    private var gpadls: [GPADLRecord] = []
    private var nextGPADL: UInt32
    private var outbox: [Outgoing] = []
    private var inFlight: InFlight?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        nextGPADL = configuration.firstGPADLHandle
    }

    // MARK: State

    /// The negotiated version, while connected.
    public var version: VMBusVersion? {
        if case .connected(let version) = connection { return version }
        return nil
    }

    /// The channels offered and not released, in relid order.
    public var offers: [OfferChannel] { channels.map { $0.offer } }

    /// The state of channel `relID`, if it is offered.
    public func state(ofChannel relID: UInt32) -> ChannelState? {
        channelIndex(relID).map { channels[$0].state }
    }

    /// The state of GPADL `handle`, if it exists.
    public func state(ofGPADL handle: UInt32) -> GPADLState? {
        gpadlIndex(handle).map { gpadls[$0].state }
    }

    /// Messages posted or waiting to be posted.
    public var queuedMessages: Int { outbox.count }

    /// The earliest time `tick` has something to do, if anything awaits an answer.
    public var nextDeadline: UInt64? {
        var earliest: UInt64? = nil
        func consider(_ deadline: UInt64?) {
            if let deadline, earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        consider(connectDeadline)
        consider(offersDeadline)
        consider(unloadDeadline)
        for channel in channels { consider(channel.deadline) }
        for gpadl in gpadls { consider(gpadl.deadline) }
        return earliest
    }

    // MARK: Requests of the program

    /// Starts negotiating: INITIATE_CONTACT with the newest configured version, then older
    /// ones while the host refuses (`versionRefused`), until `connected` or `failed(.connect, _)`.
    /// - Parameters:
    ///   - interruptPage: the interrupt page GPA sent to versions below 5.0.
    ///   - monitorPage1: GPA of monitor page 1 (parent → child).
    ///   - monitorPage2: GPA of monitor page 2 (child → parent).
    public mutating func connect(interruptPage: UInt64 = 0, monitorPage1: UInt64, monitorPage2: UInt64)
        throws(ClientError) -> [ClientAction]
    {
        guard connection == .disconnected else { throw .alreadyConnected }
        guard !configuration.versions.isEmpty else { throw .noVersions }
        guard outbox.count < configuration.maximumQueuedMessages else { throw .queueFull }
        contactPages = (interruptPage, monitorPage1, monitorPage2)
        versionIndex = 0
        var actions: [ClientAction] = []
        proposeVersion(&actions)
        return finish(actions)
    }

    /// REQUESTOFFERS: the host answers with an `offer` per channel, then `allOffersDelivered`.
    public mutating func requestOffers() throws(ClientError) -> [ClientAction] {
        guard version != nil else { throw .notConnected }
        guard !awaitingOffers else { throw .offersAlreadyRequested }
        var actions: [ClientAction] = []
        try enqueue([.requestOffers(RequestOffers())], .requestOffers, &actions)
        awaitingOffers = true
        return finish(actions)
    }

    /// Shares whole pages `pageNumbers` with the host for `channel`: GPADL_HEADER and as many
    /// GPADL_BODY messages as the list needs, as Linux splits them (`GPADLHeader.messages`).
    /// The answer is `gpadlCreated(gpadl:channel:status:)`.
    /// - Returns: the GPADL's handle and the actions.
    public mutating func createGPADL(channel relID: UInt32, pageNumbers: [UInt64])
        throws(ClientError) -> (gpadl: UInt32, actions: [ClientAction])
    {
        guard version != nil else { throw .notConnected }
        guard let index = channelIndex(relID) else { throw .unknownChannel(relID) }
        guard channels[index].state != .rescinded else { throw .wrongChannelState(relID) }
        guard gpadls.count < configuration.maximumGPADLs else { throw .tooManyGPADLs }
        let handle = unusedGPADLHandle()
        guard !pageNumbers.isEmpty,
              let messages = GPADLHeader.messages(gpadl: handle, childRelID: relID, pfns: pageNumbers) else {
            throw .invalidPageList(count: pageNumbers.count)
        }
        var actions: [ClientAction] = []
        try enqueue(messages, .createGPADL(handle), &actions)
        nextGPADL = handle &+ 1
        gpadls.append(GPADLRecord(handle: handle, channel: relID, pageCount: pageNumbers.count, state: .creating))
        return (handle, finish(actions))
    }

    /// OPENCHANNEL: opens `channel` with its ring GPADL `gpadl`, whose pages before
    /// `downstreamPageOffset` are the guest→host ring and the rest the host→guest ring; the
    /// channel's events go to processor `targetVP`. The answer is `opened(channel:status:)`.
    public mutating func openChannel(_ relID: UInt32, gpadl handle: UInt32, targetVP: UInt32,
                                     downstreamPageOffset: UInt32,
                                     userData: [UInt8] = .zeros(OpenChannel.userDataSize))
        throws(ClientError) -> [ClientAction]
    {
        guard version != nil else { throw .notConnected }
        guard let index = channelIndex(relID) else { throw .unknownChannel(relID) }
        guard channels[index].state == .closed else { throw .wrongChannelState(relID) }
        guard let gpadl = gpadlIndex(handle).map({ gpadls[$0] }) else { throw .unknownGPADL(handle) }
        guard gpadl.state == .created, gpadl.channel == relID else { throw .wrongGPADLState(handle) }
        // Each ring needs its control page and at least one data page (the server's rule too).
        guard downstreamPageOffset >= 2, Int(downstreamPageOffset) <= gpadl.pageCount - 2 else {
            throw .invalidRingLayout(downstreamPageOffset: downstreamPageOffset, pages: gpadl.pageCount)
        }
        guard userData.count <= OpenChannel.userDataSize else { throw .userDataTooLong(userData.count) }
        let open = OpenChannel(childRelID: relID, openID: relID, ringBufferGPADL: handle, targetVP: targetVP,
                               downstreamRingBufferPageOffset: downstreamPageOffset,
                               userData: userData + .zeros(OpenChannel.userDataSize - userData.count))
        var actions: [ClientAction] = []
        try enqueue([.openChannel(open)], .openChannel(relID), &actions)
        channels[index].state = .opening(gpadl: handle)
        return finish(actions)
    }

    /// CLOSECHANNEL: the host stops using the rings; it does not answer. The ring GPADL stays
    /// until `teardownGPADL`.
    public mutating func closeChannel(_ relID: UInt32) throws(ClientError) -> [ClientAction] {
        guard version != nil else { throw .notConnected }
        guard let index = channelIndex(relID) else { throw .unknownChannel(relID) }
        guard case .open = channels[index].state else { throw .wrongChannelState(relID) }
        var actions: [ClientAction] = []
        try enqueue([.closeChannel(CloseChannel(childRelID: relID))], .closeChannel(relID), &actions)
        channels[index].state = .closed
        return finish(actions)
    }

    /// GPADL_TEARDOWN: the answer is `gpadlTornDown(gpadl:)`, after which the pages are the
    /// guest's alone. A channel whose ring it is gets closed by the host first, so it counts as
    /// closed from now on.
    public mutating func teardownGPADL(_ handle: UInt32) throws(ClientError) -> [ClientAction] {
        guard version != nil else { throw .notConnected }
        guard let index = gpadlIndex(handle) else { throw .unknownGPADL(handle) }
        guard gpadls[index].state == .created else { throw .wrongGPADLState(handle) }
        let relID = gpadls[index].channel
        var actions: [ClientAction] = []
        try enqueue([.gpadlTeardown(GPADLTeardown(childRelID: relID, gpadl: handle))], .teardownGPADL(handle), &actions)
        gpadls[index].state = .tearingDown
        if let channel = channelIndex(relID), channels[channel].state == .open(gpadl: handle) {
            channels[channel].state = .closed
        }
        return finish(actions)
    }

    /// RELID_RELEASED, the answer to a rescind: the channel and its GPADLs are gone on both
    /// sides (Linux skips GPADL_TEARDOWN for rescinded channels; the host releases them).
    public mutating func releaseRelID(_ relID: UInt32) throws(ClientError) -> [ClientAction] {
        guard version != nil else { throw .notConnected }
        guard let index = channelIndex(relID) else { throw .unknownChannel(relID) }
        guard channels[index].state == .rescinded else { throw .wrongChannelState(relID) }
        var actions: [ClientAction] = []
        try enqueue([.relIDReleased(RelIDReleased(childRelID: relID))], .releaseRelID(relID), &actions)
        channels.remove(at: index)
        gpadls.removeAll { $0.channel == relID && $0.state != .tearingDown }
        return finish(actions)
    }

    /// UNLOAD: the host closes every channel and drops every GPADL; the answer is `unloaded`.
    public mutating func unload() throws(ClientError) -> [ClientAction] {
        guard let version else { throw .notConnected }
        var actions: [ClientAction] = []
        try enqueue([.unload(Unload())], .unload, &actions)
        connection = .unloading(version)
        return finish(actions)
    }

    // MARK: Inputs

    /// A SynIC message payload from the message SINT (header included).
    public mutating func handle(_ payload: [UInt8], now: UInt64) -> [ClientAction] {
        let message: ChannelMessage
        do throws(VMBusError) {
            message = try ChannelMessage(parsing: payload)
        } catch {
            return finish([.event(.ignored(.malformed(error)))])
        }
        return handle(message, now: now)
    }

    /// A channel message from the host.
    public mutating func handle(_ message: ChannelMessage, now: UInt64) -> [ClientAction] {
        var actions: [ClientAction] = []
        switch message {
        case .versionResponse(let response):
            versionResponse(response, &actions)
        case .offerChannel(let offer):
            offerChannel(offer, now, &actions)
        case .allOffersDelivered:
            if awaitingOffers {
                awaitingOffers = false
                offersDeadline = nil
                actions.append(.event(.allOffersDelivered))
            } else {
                actions.append(.event(.ignored(.unexpected(message.type))))
            }
        case .gpadlCreated(let created):
            gpadlCreated(created, &actions)
        case .openResult(let result):
            openResult(result, &actions)
        case .rescindOffer(let rescind):
            rescindOffer(rescind.childRelID, &actions)
        case .gpadlTorndown(let torndown):
            if let index = gpadlIndex(torndown.gpadl), gpadls[index].state == .tearingDown, version != nil {
                gpadls.remove(at: index)
                actions.append(.event(.gpadlTornDown(gpadl: torndown.gpadl)))
            } else {
                actions.append(.event(.ignored(.unknownGPADL(message.type, gpadl: torndown.gpadl))))
            }
        case .unloadResponse:
            if case .unloading = connection {
                reset()
                actions.append(.event(.unloaded))
            } else {
                actions.append(.event(.ignored(.unexpected(message.type))))
            }
        default:
            // Guest → host types, MODIFYCHANNEL_RESPONSE (never asked for) and unknown types.
            actions.append(.event(.ignored(.unexpected(message.type))))
        }
        return finish(actions)
    }

    /// The hypercall status of the post the last `.post` action asked for.
    public mutating func postCompleted(_ status: HypercallStatus, now: UInt64) -> [ClientAction] {
        guard var current = inFlight, let outgoing = outbox.first else { return finish([]) }
        var actions: [ClientAction] = []
        let first = current.firstReport ?? now
        current.firstReport = first
        if current.abandoned {
            outbox.removeFirst()
            inFlight = nil
        } else if status == .success {
            outbox.removeFirst()
            inFlight = nil
            posted(outgoing, now)
        } else if PostRetryPolicy.isTransient(status), now &- first < configuration.retry.window {
            actions.append(.post(outgoing.message, connection: outgoing.connection, delay: current.pause))
            let longest = configuration.retry.longestPause
            current.pause = current.pause >= longest / 2 ? longest : current.pause * 2
            inFlight = current
            return finish(actions)
        } else {
            outbox.removeFirst()
            inFlight = nil
            postFailed(outgoing, status, &actions)
        }
        startNextPost(&actions)
        return finish(actions)
    }

    /// Time passed: requests whose answer is overdue fail with `.timedOut`.
    public mutating func tick(now: UInt64) -> [ClientAction] {
        var actions: [ClientAction] = []
        if let deadline = connectDeadline, now >= deadline {
            connectDeadline = nil
            connection = .disconnected
            abandon { $0 == .connect }
            actions.append(.event(.failed(.connect, .timedOut)))
        }
        if let deadline = offersDeadline, now >= deadline {
            offersDeadline = nil
            awaitingOffers = false
            actions.append(.event(.failed(.requestOffers, .timedOut)))
        }
        if let deadline = unloadDeadline, now >= deadline {
            // The host never confirmed: the client forgets the connection all the same.
            reset()
            actions.append(.event(.failed(.unload, .timedOut)))
        }
        for index in channels.indices {
            guard let deadline = channels[index].deadline, now >= deadline else { continue }
            channels[index].deadline = nil
            channels[index].state = .closed
            actions.append(.event(.failed(.openChannel(channels[index].offer.childRelID), .timedOut)))
        }
        var index = 0
        while index < gpadls.count {
            let gpadl = gpadls[index]
            guard let deadline = gpadl.deadline, now >= deadline else {
                index += 1
                continue
            }
            // The host may still hold the pages: the program must not reuse them.
            gpadls.remove(at: index)
            let request = gpadl.state == .creating ? ClientRequest.createGPADL(gpadl.handle) : .teardownGPADL(gpadl.handle)
            actions.append(.event(.failed(request, .timedOut)))
        }
        return finish(actions)
    }

    // MARK: Connection

    private mutating func proposeVersion(_ actions: inout [ClientAction]) {
        let version = configuration.versions[versionIndex]
        let contact = InitiateContact(
            version: version, targetVP: configuration.targetVP,
            interruptPageOrTargetInfo: version.usesMessageConnectionID4
                ? UInt64(configuration.messageSINT) : contactPages.interrupt,
            monitorPage1: contactPages.monitor1, monitorPage2: contactPages.monitor2)
        let connectionID = version.usesMessageConnectionID4
            ? VMBusConstants.initiateContactConnectionID : VMBusConstants.messageConnectionID
        connection = .negotiating(version)
        // The queue had room for this when `connect` checked, and negotiation posts one at a time.
        outbox.append(Outgoing(message: .initiateContact(contact), connection: connectionID, request: .connect))
        startNextPost(&actions)
    }

    /// Proposes the next older version; `failure` if none is left.
    private mutating func nextVersion(after failure: ClientFailure, _ actions: inout [ClientAction]) {
        versionIndex += 1
        guard versionIndex < configuration.versions.count else {
            connection = .disconnected
            actions.append(.event(.failed(.connect, failure)))
            return
        }
        proposeVersion(&actions)
    }

    private mutating func versionResponse(_ response: VersionResponse, _ actions: inout [ClientAction]) {
        guard case .negotiating(let version) = connection else {
            actions.append(.event(.ignored(.unexpected(VersionResponse.messageType))))
            return
        }
        connectDeadline = nil
        // An answer that overtook its post's status: the status no longer matters.
        abandon { $0 == .connect }
        if response.versionSupported {
            connection = .connected(version)
            messageConnection = version.usesMessageConnectionID4
                ? ConnectionID(response.messageConnectionID.rawValue & ConnectionID.mask)
                : VMBusConstants.messageConnectionID
            actions.append(.event(.connected(version)))
        } else {
            actions.append(.event(.versionRefused(version)))
            nextVersion(after: .noVersionAccepted, &actions)
        }
    }

    /// Forgets the connection, every channel and every GPADL (UNLOAD answered or overdue).
    private mutating func reset() {
        connection = .disconnected
        messageConnection = VMBusConstants.messageConnectionID
        connectDeadline = nil
        awaitingOffers = false
        offersDeadline = nil
        unloadDeadline = nil
        channels.removeAll()
        gpadls.removeAll()
        abandon { _ in true }
    }

    // MARK: Channels

    private mutating func offerChannel(_ offer: OfferChannel, _ now: UInt64, _ actions: inout [ClientAction]) {
        let relID = offer.childRelID
        guard version != nil else {
            actions.append(.event(.ignored(.unexpected(OfferChannel.messageType))))
            return
        }
        guard relID >= 1, relID <= VMBusConstants.maximumChildRelID else {
            actions.append(.event(.ignored(.invalidRelID(relID))))
            return
        }
        let position = insertionIndex(relID)
        guard position == channels.count || channels[position].offer.childRelID != relID else {
            actions.append(.event(.ignored(.duplicateOffer(relID))))
            return
        }
        guard channels.count < configuration.maximumOffers else {
            actions.append(.event(.ignored(.tooManyOffers(relID))))
            return
        }
        channels.insert(Channel(offer: offer, state: .closed), at: position)
        // Offers keep coming: the wait for ALLOFFERS_DELIVERED restarts with each.
        if offersDeadline != nil { offersDeadline = deadline(from: now) }
        actions.append(.event(.offer(offer)))
    }

    private mutating func openResult(_ result: OpenResult, _ actions: inout [ClientAction]) {
        guard let index = channelIndex(result.childRelID), case .opening(let gpadl) = channels[index].state else {
            actions.append(.event(.ignored(.unknownChannel(OpenResult.messageType, relID: result.childRelID))))
            return
        }
        guard result.openID == result.childRelID else {
            actions.append(.event(.ignored(.openIDMismatch(relID: result.childRelID, openID: result.openID))))
            return
        }
        abandon { $0 == .openChannel(result.childRelID) }
        channels[index].deadline = nil
        channels[index].state = result.status == 0 ? .open(gpadl: gpadl) : .closed
        actions.append(.event(.opened(channel: result.childRelID, status: result.status)))
    }

    private mutating func rescindOffer(_ relID: UInt32, _ actions: inout [ClientAction]) {
        guard version != nil, let index = channelIndex(relID), channels[index].state != .rescinded else {
            actions.append(.event(.ignored(.unknownChannel(RescindOffer.messageType, relID: relID))))
            return
        }
        if case .opening = channels[index].state {
            abandon { $0 == .openChannel(relID) }
            actions.append(.event(.failed(.openChannel(relID), .rescinded)))
        }
        var gpadl = 0
        while gpadl < gpadls.count {
            let record = gpadls[gpadl]
            if record.channel == relID && record.state == .creating {
                abandon { $0 == .createGPADL(record.handle) }
                gpadls.remove(at: gpadl)
                actions.append(.event(.failed(.createGPADL(record.handle), .rescinded)))
            } else {
                gpadl += 1
            }
        }
        channels[index].state = .rescinded
        channels[index].deadline = nil
        actions.append(.event(.rescinded(channel: relID)))
    }

    // MARK: GPADLs

    private mutating func gpadlCreated(_ created: GPADLCreated, _ actions: inout [ClientAction]) {
        guard version != nil, let index = gpadlIndex(created.gpadl), gpadls[index].state == .creating,
              gpadls[index].channel == created.childRelID else {
            actions.append(.event(.ignored(.unknownGPADL(GPADLCreated.messageType, gpadl: created.gpadl))))
            return
        }
        // A refusal can come before the last body was posted: the rest is not sent.
        abandon { $0 == .createGPADL(created.gpadl) }
        if created.status == 0 {
            gpadls[index].state = .created
            gpadls[index].deadline = nil
        } else {
            gpadls.remove(at: index)
        }
        actions.append(.event(.gpadlCreated(gpadl: created.gpadl, channel: created.childRelID, status: created.status)))
    }

    /// The next handle at or after `nextGPADL` that is neither 0 nor in use.
    private func unusedGPADLHandle() -> UInt32 {
        var handle = nextGPADL
        // At most `maximumGPADLs` handles are in use, so this ends within that many steps.
        while handle == 0 || gpadlIndex(handle) != nil { handle &+= 1 }
        return handle
    }

    // MARK: Posting

    /// Queues `messages` for `request`, all or none.
    private mutating func enqueue(_ messages: [ChannelMessage], _ request: ClientRequest,
                                  _ actions: inout [ClientAction]) throws(ClientError) {
        guard outbox.count + messages.count <= configuration.maximumQueuedMessages else { throw .queueFull }
        for message in messages {
            outbox.append(Outgoing(message: message, connection: messageConnection, request: request))
        }
        startNextPost(&actions)
    }

    private mutating func startNextPost(_ actions: inout [ClientAction]) {
        guard inFlight == nil, let next = outbox.first else { return }
        inFlight = InFlight(firstReport: nil, pause: configuration.retry.firstPause)
        actions.append(.post(next.message, connection: next.connection, delay: 0))
    }

    /// Drops queued messages of requests matching `matches`, except the one being posted.
    private mutating func dropQueued(_ matches: (ClientRequest) -> Bool) {
        let keep = inFlight == nil ? 0 : 1
        guard outbox.count > keep else { return }
        let rest = outbox[keep...].filter { !matches($0.request) }
        outbox.removeSubrange(keep...)
        outbox.append(contentsOf: rest)
    }

    /// Drops queued messages of requests matching `matches`, and marks the one being posted
    /// abandoned if its request matches: the driver still reports its status, which then only
    /// lets the next post go.
    private mutating func abandon(_ matches: (ClientRequest) -> Bool) {
        dropQueued(matches)
        if inFlight != nil, let head = outbox.first, matches(head.request) { inFlight?.abandoned = true }
    }

    /// A message reached the host: its request now waits for the answer, if it has one.
    private mutating func posted(_ outgoing: Outgoing, _ now: UInt64) {
        let more = outbox.contains { $0.request == outgoing.request }
        switch outgoing.request {
        case .connect:
            if case .initiateContact(let contact) = outgoing.message, connection == .negotiating(contact.version) {
                connectDeadline = deadline(from: now)
            }
        case .requestOffers:
            if awaitingOffers { offersDeadline = deadline(from: now) }
        case .createGPADL(let handle):
            if !more, let index = gpadlIndex(handle), gpadls[index].state == .creating {
                gpadls[index].deadline = deadline(from: now)
            }
        case .teardownGPADL(let handle):
            if let index = gpadlIndex(handle), gpadls[index].state == .tearingDown {
                gpadls[index].deadline = deadline(from: now)
            }
        case .openChannel(let relID):
            if let index = channelIndex(relID), case .opening = channels[index].state {
                channels[index].deadline = deadline(from: now)
            }
        case .unload:
            if case .unloading = connection { unloadDeadline = deadline(from: now) }
        case .closeChannel, .releaseRelID:
            break
        }
    }

    /// A post failed for good: its request fails, and what it left behind is undone.
    private mutating func postFailed(_ outgoing: Outgoing, _ status: HypercallStatus, _ actions: inout [ClientAction]) {
        let request = outgoing.request
        let failure = ClientFailure.postFailed(status)
        switch request {
        case .connect:
            // As Linux's vmbus_connect: a version whose contact cannot be posted is skipped. A
            // contact whose version was answered meanwhile no longer matters.
            if case .initiateContact(let contact) = outgoing.message, connection == .negotiating(contact.version) {
                nextVersion(after: failure, &actions)
            }
            return
        case .requestOffers:
            awaitingOffers = false
            offersDeadline = nil
        case .createGPADL(let handle):
            gpadls.removeAll { $0.handle == handle && $0.state == .creating }
        case .teardownGPADL(let handle):
            // The host never heard of it: the GPADL still exists.
            if let index = gpadlIndex(handle), gpadls[index].state == .tearingDown {
                gpadls[index].state = .created
                gpadls[index].deadline = nil
            }
        case .openChannel(let relID):
            if let index = channelIndex(relID), case .opening = channels[index].state {
                channels[index].state = .closed
                channels[index].deadline = nil
            }
        case .unload:
            if case .unloading(let version) = connection {
                connection = .connected(version)
                unloadDeadline = nil
            }
        case .closeChannel, .releaseRelID:
            break
        }
        dropQueued { $0 == request }
        actions.append(.event(.failed(request, failure)))
    }

    // MARK: Helpers

    private func deadline(from now: UInt64) -> UInt64 {
        let (sum, overflow) = now.addingReportingOverflow(configuration.answerTimeout)
        return overflow ? .max : sum
    }

    private func finish(_ actions: [ClientAction]) -> [ClientAction] {
        guard let deadline = nextDeadline else { return actions }
        return actions + [.wait(until: deadline)]
    }

    private func channelIndex(_ relID: UInt32) -> Int? {
        let index = insertionIndex(relID)
        return index < channels.count && channels[index].offer.childRelID == relID ? index : nil
    }

    /// Where relid `relID` is or would go in `channels` (binary search).
    private func insertionIndex(_ relID: UInt32) -> Int {
        var low = 0
        var high = channels.count
        while low < high {
            let middle = (low + high) / 2
            if channels[middle].offer.childRelID < relID { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private func gpadlIndex(_ handle: UInt32) -> Int? {
        gpadls.firstIndex { $0.handle == handle }
    }
}
