import HyperV
import VMBusProtocol

/// The VMBus control plane of one child partition, as a state machine with no I/O inside
/// (Docs/hyperv-interface.md §6-§7; the shape follows openvmm's `channels::Server`).
///
/// It is driven by the guest's channel messages and by the devices' answers, and emits
/// `ServerAction`s: messages to post, channels to open or close, GPADLs to release. Every request
/// is answered, negatively if it must be, because Linux waits forever for most answers
/// (Docs/hyperv-interface.md §6.8). Guest input is hostile: every relid, GPADL handle, page number,
/// processor index and count is validated before it is used.
public struct VMBusServer: Sendable {
    /// Limits that keep a hostile guest from growing the server's state without bound.
    public struct Configuration: Sendable {
        /// Bytes of guest RAM; GPADL pages must lie inside it.
        public var memorySize: UInt64
        public var processorCount: UInt32
        /// The most pages one GPADL may describe (default: 64 MiB worth).
        public var maximumGPADLPages: Int
        /// The most GPADLs (complete or being assembled) at once.
        public var maximumGPADLs: Int
        /// The most pages all GPADLs together may describe (default: 1 GiB worth), which bounds
        /// the server's saved state (`ServerState`).
        public var maximumTotalGPADLPages: Int

        public init(memorySize: UInt64, processorCount: UInt32, maximumGPADLPages: Int = 16_384, maximumGPADLs: Int = 1024,
                    maximumTotalGPADLPages: Int = 262_144) {
            self.memorySize = memorySize
            self.processorCount = processorCount
            self.maximumGPADLPages = maximumGPADLPages
            self.maximumGPADLs = maximumGPADLs
            self.maximumTotalGPADLPages = maximumTotalGPADLPages
        }
    }

    /// The negotiated connection.
    public struct Connection: Hashable, Sendable {
        public var version: VMBusVersion
        /// The processor and SINT channel messages go to.
        public var targetVP: UInt32
        public var sint: UInt8
    }

    /// Where a channel is in its life.
    public enum ChannelState: Hashable, Sendable {
        /// Offered by a device, not yet sent to the guest.
        case pending
        /// Sent in OFFERCHANNEL; closed.
        case offered
        /// OPENCHANNEL accepted by the server, waiting for the device.
        case opening(OpenRequest)
        case open(OpenRequest)
        /// RESCIND_CHANNELOFFER sent while open, and the device still serves the channel: the
        /// guest's driver tears down over it (it waits for answers to what it sent) and then
        /// closes it; `finishWithdrawal` closes it for a guest that never does.
        case withdrawing(OpenRequest)
        /// RESCIND_CHANNELOFFER sent and the channel closed; waiting for RELID_RELEASED.
        case rescinded
        /// Gone for good; its relid may be given to a new offer.
        case released
    }

    struct Channel {
        var offer: ChannelOffer
        var state: ChannelState
    }

    enum GPADLState {
        case assembling(GPADL, needed: Int)
        case created(GPADL)

        var gpadl: GPADL {
            switch self {
            case .assembling(let gpadl, _), .created(let gpadl): gpadl
            }
        }
    }

    public let configuration: Configuration
    public internal(set) var connection: Connection?
    // Internal rather than private: ServerState.swift saves and restores them.
    var channels: [UInt32: Channel] = [:]
    var nextRelID: UInt32 = 1
    var gpadls: [UInt32: GPADLState] = [:]

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// The state of channel `relID`, if it exists.
    public func state(of relID: UInt32) -> ChannelState? { channels[relID]?.state }

    /// The GPADL `id`, once complete.
    public func gpadl(_ id: UInt32) -> GPADL? {
        if case .created(let gpadl)? = gpadls[id] { return gpadl }
        return nil
    }

    /// Every complete GPADL, by ID: what a restored server's devices may use, and what new ones
    /// must not overlap.
    public var createdGPADLs: [GPADL] {
        gpadls.keys.sorted().compactMap { gpadl($0) }
    }

    // MARK: Device side

    /// Adds a device's channel to the bus; if the guest already asked for offers, it is offered now.
    ///
    /// It takes the lowest relid no channel holds: a relid the guest has released (or that was
    /// never offered) is used again, as Hyper-V does, so a guest that reopens a device over and
    /// over (Linux's netvsc asks for new sub-channels on every re-init) never runs out.
    /// - Returns: `nil` while every child relid is held.
    public mutating func addOffer(_ offer: ChannelOffer) -> (relID: UInt32, actions: [ServerAction])? {
        guard let relID = freeRelID() else { return nil }
        if relID == nextRelID { nextRelID += 1 }
        channels[relID] = Channel(offer: offer, state: .pending)
        var actions: [ServerAction] = []
        if let connection, offersDelivered {
            deliverOffer(relID, connection, &actions)
        }
        return (relID, actions)
    }

    /// The lowest relid no channel holds (released ones included), if any is left.
    private func freeRelID() -> UInt32? {
        for id in 1..<nextRelID where channels[id].map({ $0.state == .released }) ?? true { return id }
        return nextRelID <= VMBusConstants.maximumChildRelID ? nextRelID : nil
    }

    var offersDelivered = false

    /// The device's answer to an `.open` action.
    public mutating func completeOpen(channel relID: UInt32, accepted: Bool) -> [ServerAction] {
        guard case .opening(let request)? = channels[relID]?.state, let connection else { return [] }
        channels[relID]?.state = accepted ? .open(request) : .offered
        let status = accepted ? ServerStatus.success : ServerStatus.unsuccessful
        return [reply(connection, .openResult(OpenResult(childRelID: relID, openID: request.openID, status: status)))]
    }

    /// Withdraws a channel, and its sub-channels, with RESCIND_CHANNELOFFER.
    /// - Parameter untilGuestCloses: an open channel stays open, served by its device, until the
    ///   guest closes it (CLOSECHANNEL, RELID_RELEASED, GPADL_TEARDOWN of its ring, UNLOAD) or
    ///   `finishWithdrawal` gives up on it. That is how a device goes away in good order:
    ///   Linux's drivers, rescinded, still wait for the host to answer every request they sent
    ///   (netvsc for each send, storvsc for each I/O) before they close. `false` closes it at
    ///   once, for a channel whose guest broke it.
    public mutating func rescind(channel relID: UInt32, untilGuestCloses: Bool = false) -> [ServerAction] {
        var actions: [ServerAction] = []
        withdraw(relID, untilGuestCloses: untilGuestCloses, &actions)
        for sub in subChannels(of: relID) { withdraw(sub, untilGuestCloses: untilGuestCloses, &actions) }
        return actions
    }

    /// Closes a withdrawn channel that its guest has not closed yet (its deadline passed).
    public mutating func finishWithdrawal(channel relID: UInt32) -> [ServerAction] {
        guard case .withdrawing? = channels[relID]?.state else { return [] }
        channels[relID]?.state = .rescinded
        return [.close(channel: relID)]
    }

    /// The sub-channels of primary channel `relID` that are still offered: not rescinded (nor
    /// being withdrawn), not released. A guest may hold rescinded ones as long as it likes
    /// before it releases them; the sub-channels offered next take their indices again.
    public func offeredSubChannels(of relID: UInt32) -> [UInt32] {
        subChannels(of: relID).filter { id in
            switch channels[id]?.state {
            case .pending?, .offered?, .opening?, .open?: true
            default: false
            }
        }
    }

    /// The live sub-channels of primary channel `relID` (offered by a device, not yet released).
    public func subChannels(of relID: UInt32) -> [UInt32] {
        guard let primary = channels[relID]?.offer, primary.subChannelIndex == 0 else { return [] }
        return channels.keys.sorted().filter { id in
            guard let channel = channels[id], channel.offer.subChannelIndex != 0,
                  channel.offer.interfaceType == primary.interfaceType,
                  channel.offer.interfaceInstance == primary.interfaceInstance else { return false }
            if case .released = channel.state { return false }
            return true
        }
    }

    private mutating func withdraw(_ relID: UInt32, untilGuestCloses: Bool, _ actions: inout [ServerAction]) {
        guard let channel = channels[relID] else { return }
        var next = ChannelState.rescinded
        switch channel.state {
        case .open(let request) where untilGuestCloses:
            next = .withdrawing(request)
        case .opening, .open:
            actions.append(.close(channel: relID))
        case .withdrawing:
            if !untilGuestCloses {
                channels[relID]?.state = .rescinded
                actions.append(.close(channel: relID))
            }
            return
        case .rescinded, .released:
            return
        case .pending:
            channels[relID]?.state = .released
            actions.append(.released(channel: relID))
            return
        case .offered:
            break
        }
        channels[relID]?.state = next
        if let connection {
            actions.append(reply(connection, .rescindOffer(RescindOffer(childRelID: relID))))
        }
    }

    // MARK: Guest side

    /// Handles a message the guest posted on `connectionID` from processor `vp`.
    public mutating func handle(_ payload: [UInt8], connectionID: ConnectionID, from vp: UInt32) -> [ServerAction] {
        let message: ChannelMessage
        do {
            message = try ChannelMessage(parsing: payload)
        } catch {
            return [.protocolViolation("malformed channel message: \(error)")]
        }
        if case .initiateContact(let contact) = message {
            return initiateContact(contact, connectionID: connectionID)
        }
        guard let connection else {
            return [.protocolViolation("\(message.type) before INITIATE_CONTACT")]
        }
        var actions: [ServerAction] = []
        switch message {
        case .requestOffers:
            offersDelivered = true
            for relID in channels.keys.sorted() where channels[relID]?.state == .pending {
                deliverOffer(relID, connection, &actions)
            }
            actions.append(reply(connection, .allOffersDelivered(AllOffersDelivered())))
        case .gpadlHeader(let header):
            gpadlHeader(header, connection, &actions)
        case .gpadlBody(let body):
            gpadlBody(body, connection, &actions)
        case .gpadlTeardown(let teardown):
            gpadlTeardown(teardown, connection, &actions)
        case .openChannel(let open):
            openChannel(open, connection, &actions)
        case .closeChannel(let close):
            closeChannel(close.childRelID, &actions)
        case .relIDReleased(let released):
            if case .withdrawing? = channels[released.childRelID]?.state {
                channels[released.childRelID]?.state = .rescinded
                actions.append(.close(channel: released.childRelID))
            }
            if channels[released.childRelID]?.state == .rescinded {
                channels[released.childRelID]?.state = .released
                actions.append(.released(channel: released.childRelID))
                // Linux skips GPADL_TEARDOWN for rescinded channels: release their GPADLs here.
                for (id, state) in gpadls where state.gpadl.channel == released.childRelID {
                    gpadls[id] = nil
                    if case .created(let gpadl) = state { actions.append(.releaseGPADL(gpadl)) }
                }
            } else {
                actions.append(.protocolViolation("RELID_RELEASED for relid \(released.childRelID), which was not rescinded"))
            }
        case .modifyChannel(let modify):
            modifyChannel(modify, connection, &actions)
        case .unload:
            reset(&actions)
            self.connection = nil
            actions.append(.disconnected)
            actions.append(reply(connection, .unloadResponse(UnloadResponse())))
        default:
            actions.append(.protocolViolation("unexpected \(message.type) from the guest; ignored"))
        }
        return actions
    }

    /// INITIATE_CONTACT: accept a supported version posted on the right connection (4 for 5.0
    /// and later, 1 before), else answer "not supported" so the guest tries an older one.
    private mutating func initiateContact(_ contact: InitiateContact, connectionID: ConnectionID) -> [ServerAction] {
        let targetVP = contact.targetVP
        guard targetVP < configuration.processorCount else {
            return [.protocolViolation("INITIATE_CONTACT names processor \(targetVP) of \(configuration.processorCount)")]
        }
        let expected = contact.version.usesMessageConnectionID4
            ? VMBusConstants.initiateContactConnectionID : VMBusConstants.messageConnectionID
        let sint = contact.version.usesMessageConnectionID4 ? contact.messageSINT : UInt8(VMBusConstants.messageSINT)
        let supported = VMBusVersion.supported.contains(contact.version)
            && connectionID.rawValue & ConnectionID.mask == expected.rawValue && Int(sint) < SynIC.sintCount
        let response = Connection(version: contact.version, targetVP: targetVP, sint: Int(sint) < SynIC.sintCount ? sint : 2)
        guard supported else {
            return [reply(response, .versionResponse(VersionResponse(versionSupported: false, connectionState: 0,
                                                                     messageConnectionID: VMBusConstants.messageConnectionID)))]
        }
        var actions: [ServerAction] = []
        if self.connection != nil { reset(&actions) }
        self.connection = response
        actions.append(.connected(contact.version))
        actions.append(reply(response, .versionResponse(VersionResponse(
            versionSupported: true, connectionState: 0, messageConnectionID: VMBusConstants.messageConnectionID))))
        return actions
    }

    private mutating func deliverOffer(_ relID: UInt32, _ connection: Connection, _ actions: inout [ServerAction]) {
        guard let channel = channels[relID] else { return }
        channels[relID]?.state = .offered
        // monitor_allocated = 0: the guest signals with HvSignalEvent, never monitor pages
        // (Docs/hyperv-interface.md §6.4).
        let offer = OfferChannel(
            interfaceType: channel.offer.interfaceType, interfaceInstance: channel.offer.interfaceInstance,
            childRelID: relID, connectionID: VMBusConstants.eventConnectionID(childRelID: relID),
            channelFlags: 0, mmioMegabytes: 0, userDefined: channel.offer.userDefined,
            subChannelIndex: channel.offer.subChannelIndex,
            monitorID: 0xFF, monitorAllocated: false, isDedicatedInterrupt: true)
        actions.append(reply(connection, .offerChannel(offer)))
    }

    // MARK: GPADLs

    private func isLive(_ relID: UInt32) -> Bool {
        switch channels[relID]?.state {
        case .offered?, .opening?, .open?: true
        default: false
        }
    }

    private mutating func gpadlHeader(_ header: GPADLHeader, _ connection: Connection, _ actions: inout [ServerAction]) {
        func refuse(_ reason: String) {
            actions.append(.protocolViolation("GPADL \(header.gpadl): \(reason)"))
            actions.append(reply(connection, .gpadlCreated(GPADLCreated(childRelID: header.childRelID, gpadl: header.gpadl,
                                                                       status: ServerStatus.invalidParameter))))
        }
        guard isLive(header.childRelID) else { return refuse("relid \(header.childRelID) is not an offered channel") }
        guard gpadls[header.gpadl] == nil else { return refuse("the handle is already in use") }
        guard gpadls.count < configuration.maximumGPADLs else { return refuse("too many GPADLs") }
        guard header.rangeCount == 1 else { return refuse("\(header.rangeCount) ranges (only one is supported)") }
        guard header.byteCount > 0, header.byteOffset < UInt32(VMBusConstants.pageSize) else {
            return refuse("empty range or offset \(header.byteOffset) beyond the first page")
        }
        let needed = header.requiredPFNCount
        guard needed <= configuration.maximumGPADLPages else { return refuse("\(needed) pages exceed the limit") }
        guard totalGPADLPages + needed <= configuration.maximumTotalGPADLPages else {
            return refuse("\(needed) more pages would pass the limit of all GPADLs together")
        }
        guard header.announcedPFNCount == needed else {
            return refuse("range buffer announces \(header.announcedPFNCount) pages for a \(needed)-page range")
        }
        let gpadl = GPADL(id: header.gpadl, channel: header.childRelID, byteOffset: header.byteOffset,
                          byteCount: header.byteCount, pageNumbers: [])
        gpadls[header.gpadl] = .assembling(gpadl, needed: needed)
        append(header.pfns, to: header.gpadl, connection, &actions)
    }

    /// GPADL_BODY: Linux never fills msgnumber (Docs/hyperv-interface.md §7.1), so bodies are
    /// matched by handle and counted until the range's pages have all arrived.
    private mutating func gpadlBody(_ body: GPADLBody, _ connection: Connection, _ actions: inout [ServerAction]) {
        guard case .assembling? = gpadls[body.gpadl] else {
            actions.append(.protocolViolation("GPADL_BODY for GPADL \(body.gpadl), which is not being created"))
            return
        }
        append(body.pfns, to: body.gpadl, connection, &actions)
    }

    private mutating func append(_ pfns: [UInt64], to id: UInt32, _ connection: Connection, _ actions: inout [ServerAction]) {
        // Taken out of the dictionary so `gpadl.pageNumbers` is uniquely referenced and the
        // append below grows it in place instead of copying every page so far on each BODY.
        // Every path below either writes it back or leaves it removed (on failure).
        guard case .assembling? = gpadls[id],
              case .assembling(var gpadl, let needed)? = gpadls.removeValue(forKey: id) else { return }
        func fail(_ reason: String) {
            actions.append(.protocolViolation("GPADL \(id): \(reason)"))
            actions.append(reply(connection, .gpadlCreated(GPADLCreated(childRelID: gpadl.channel, gpadl: id,
                                                                       status: ServerStatus.invalidParameter))))
        }
        guard gpadl.pageNumbers.count + pfns.count <= needed else {
            return fail("more pages than the range needs")
        }
        let memoryPages = configuration.memorySize / UInt64(VMBusConstants.pageSize)
        if let outside = pfns.first(where: { $0 >= memoryPages }) {
            return fail("page 0x\(String(outside, radix: 16)) is outside guest RAM")
        }
        gpadl.pageNumbers += pfns
        if gpadl.pageNumbers.count == needed {
            gpadls[id] = .created(gpadl)
            actions.append(.gpadlCreated(gpadl))
            actions.append(reply(connection, .gpadlCreated(GPADLCreated(childRelID: gpadl.channel, gpadl: id,
                                                                       status: ServerStatus.success))))
        } else {
            gpadls[id] = .assembling(gpadl, needed: needed)
        }
    }

    private mutating func gpadlTeardown(_ teardown: GPADLTeardown, _ connection: Connection, _ actions: inout [ServerAction]) {
        // A ring still in use is closed first: the device must stop touching those pages.
        for (relID, channel) in channels {
            switch channel.state {
            case .opening(let request), .open(let request), .withdrawing(let request):
                if request.ring.id == teardown.gpadl { closeChannel(relID, &actions) }
            default:
                break
            }
        }
        if let state = gpadls.removeValue(forKey: teardown.gpadl), case .created(let gpadl) = state {
            actions.append(.releaseGPADL(gpadl))
        } else {
            actions.append(.protocolViolation("GPADL_TEARDOWN of unknown GPADL \(teardown.gpadl); answered anyway"))
        }
        actions.append(reply(connection, .gpadlTorndown(GPADLTorndown(gpadl: teardown.gpadl))))
    }

    /// The pages all GPADLs describe or will describe once assembled.
    var totalGPADLPages: Int {
        gpadls.values.reduce(0) { total, state in
            switch state {
            case .assembling(_, let needed): total + needed
            case .created(let gpadl): total + gpadl.pageNumbers.count
            }
        }
    }

    // MARK: Channels

    private mutating func openChannel(_ open: OpenChannel, _ connection: Connection, _ actions: inout [ServerAction]) {
        func refuse(_ reason: String) {
            actions.append(.protocolViolation("OPENCHANNEL relid \(open.childRelID): \(reason)"))
            actions.append(reply(connection, .openResult(OpenResult(childRelID: open.childRelID, openID: open.openID,
                                                                   status: ServerStatus.unsuccessful))))
        }
        guard case .offered? = channels[open.childRelID]?.state else {
            return refuse("the channel is not offered and closed")
        }
        guard let ring = gpadl(open.ringBufferGPADL), ring.channel == open.childRelID else {
            return refuse("GPADL \(open.ringBufferGPADL) is not a complete GPADL of this channel")
        }
        guard open.targetVP < configuration.processorCount else {
            return refuse("target processor \(open.targetVP) does not exist")
        }
        let offset = Int(open.downstreamRingBufferPageOffset)
        // Each ring needs its control page and at least one data page, must start on a page
        // and must not share a page with the other ring (or with itself).
        guard ring.byteOffset == 0, offset >= 2, ring.pageNumbers.count - offset >= 2 else {
            return refuse("rings of \(offset) and \(ring.pageNumbers.count - offset) pages are too small")
        }
        guard Set(ring.pageNumbers).count == ring.pageNumbers.count else {
            return refuse("the ring pages overlap")
        }
        let request = OpenRequest(channel: open.childRelID, openID: open.openID, ring: ring,
                                  downstreamPageOffset: offset, targetVP: open.targetVP, userData: open.userData)
        channels[open.childRelID]?.state = .opening(request)
        actions.append(.open(request))
    }

    /// Closing a primary channel ends its sub-channels too: they are rescinded, so the driver
    /// that opens the primary again asks for new ones (Linux's netvsc does on every re-init)
    /// and is offered them afresh.
    private mutating func closeChannel(_ relID: UInt32, _ actions: inout [ServerAction]) {
        switch channels[relID]?.state {
        case .opening?, .open?:
            channels[relID]?.state = .offered
            actions.append(.close(channel: relID))
            for sub in subChannels(of: relID) { withdraw(sub, untilGuestCloses: false, &actions) }
        case .withdrawing?:
            // Rescinded: it stays rescinded, waiting for RELID_RELEASED.
            channels[relID]?.state = .rescinded
            actions.append(.close(channel: relID))
        default:
            actions.append(.protocolViolation("CLOSECHANNEL of relid \(relID), which is not open"))
        }
    }

    private mutating func modifyChannel(_ modify: ModifyChannel, _ connection: Connection, _ actions: inout [ServerAction]) {
        var status = ServerStatus.success
        if case .open(var request)? = channels[modify.childRelID]?.state, modify.targetVP < configuration.processorCount {
            request.targetVP = modify.targetVP
            channels[modify.childRelID]?.state = .open(request)
            actions.append(.retarget(channel: modify.childRelID, vp: modify.targetVP))
        } else {
            status = ServerStatus.invalidParameter
            actions.append(.protocolViolation("MODIFYCHANNEL of relid \(modify.childRelID) to processor \(modify.targetVP)"))
        }
        // Only 5.3 and later wait for the response (Docs/hyperv-interface.md §6.5).
        if connection.version >= VMBusVersion.v5_3 {
            actions.append(reply(connection, .modifyChannelResponse(ModifyChannelResponse(childRelID: modify.childRelID,
                                                                                         status: status))))
        }
    }

    /// Closes every channel and drops every GPADL (UNLOAD, or a new INITIATE_CONTACT).
    private mutating func reset(_ actions: inout [ServerAction]) {
        for relID in channels.keys.sorted() {
            guard let channel = channels[relID] else { continue }
            switch channel.state {
            case .opening, .open, .withdrawing:
                actions.append(.close(channel: relID))
            case .pending, .offered, .rescinded, .released:
                break
            }
            switch channel.state {
            case .released:
                break
            case .rescinded, .withdrawing:
                channels[relID]?.state = .released
                actions.append(.released(channel: relID))
            case _ where channel.offer.subChannelIndex != 0:
                // A new connection starts with primary channels only: a driver asks for its
                // sub-channels again once it has opened the primary.
                channels[relID]?.state = .released
                actions.append(.released(channel: relID))
            default:
                channels[relID]?.state = .pending
            }
        }
        for id in gpadls.keys.sorted() {
            if case .created(let gpadl)? = gpadls[id] { actions.append(.releaseGPADL(gpadl)) }
        }
        gpadls.removeAll()
        offersDelivered = false
    }

    private func reply(_ connection: Connection, _ message: ChannelMessage) -> ServerAction {
        .post(vp: connection.targetVP, sint: connection.sint, message)
    }
}
