import HyperV
import Testing
import VMBusProtocol
@testable import VMBusServer

/// Drives a server the way a Linux guest would.
struct Guest {
    var server: VMBusServer

    init(memoryMiB: UInt64 = 64, processors: UInt32 = 2, offers: [String] = ["heartbeat", "bench"]) {
        server = VMBusServer(configuration: .init(memorySize: memoryMiB << 20, processorCount: processors))
        for (index, name) in offers.enumerated() {
            let type = GUID("57164f39-9115-4e78-ab55-382f3bd5422d")!
            var instance = GUID("00000000-0000-0000-0000-000000000000")!.wireBytes
            instance[15] = UInt8(index + 1)
            _ = server.addOffer(ChannelOffer(interfaceType: type, interfaceInstance: GUID(wireBytes: instance)!, name: name))
        }
    }

    mutating func send(_ message: ChannelMessage, connection: UInt32 = 1, vp: UInt32 = 0) -> [ServerAction] {
        server.handle(message.bytes, connectionID: ConnectionID(connection), from: vp)
    }

    mutating func connect(_ version: VMBusVersion = .v5_3, targetVP: UInt32 = 0) -> [ServerAction] {
        let contact = InitiateContact(version: version, targetVP: targetVP, interruptPageOrTargetInfo: 2,
                                      monitorPage1: 0x1000, monitorPage2: 0x2000)
        return send(.initiateContact(contact), connection: version.usesMessageConnectionID4 ? 4 : 1)
    }

    /// Creates a GPADL of `pages` pages (starting at `firstPage`) the way Linux splits it.
    mutating func createGPADL(_ id: UInt32, channel: UInt32, pages: [UInt64]) -> [ServerAction] {
        (GPADLHeader.messages(gpadl: id, childRelID: channel, pfns: pages) ?? []).flatMap { send($0) }
    }

    static func posted(_ actions: [ServerAction]) -> [ChannelMessage] {
        actions.compactMap { if case .post(_, _, let message) = $0 { message } else { nil } }
    }
}

@Suite("VMBus server: connection (Docs/hyperv-interface.md §6.3-§6.4)")
struct ConnectionTests {
    @Test func newestVersionIsAcceptedOnConnection4() {
        var guest = Guest()
        let actions = guest.connect(.v5_3, targetVP: 1)
        #expect(actions.contains(.connected(.v5_3)))
        #expect(actions.contains(.post(vp: 1, sint: 2, .versionResponse(VersionResponse(
            versionSupported: true, connectionState: 0, messageConnectionID: ConnectionID(1))))))
    }

    @Test(arguments: VMBusVersion.supported)
    func everySupportedVersionIsAccepted(_ version: VMBusVersion) {
        var guest = Guest()
        #expect(guest.connect(version).contains(.connected(version)))
        #expect(guest.server.connection?.version == version)
    }

    @Test func unknownVersionsAreRefusedSoTheGuestFallsBack() {
        var guest = Guest()
        let contact = InitiateContact(version: VMBusVersion(rawValue: 0x0006_0000), targetVP: 0,
                                      interruptPageOrTargetInfo: 2, monitorPage1: 0, monitorPage2: 0)
        let actions = guest.send(.initiateContact(contact), connection: 4)
        #expect(Guest.posted(actions) == [.versionResponse(VersionResponse(
            versionSupported: false, connectionState: 0, messageConnectionID: ConnectionID(1)))])
        #expect(guest.server.connection == nil)
        // The guest then tries 5.3 and succeeds.
        #expect(guest.connect(.v5_3).contains(.connected(.v5_3)))
    }

    @Test func version5OnConnection1IsRefused() {
        var guest = Guest()
        let contact = InitiateContact(version: .v5_0, targetVP: 0, interruptPageOrTargetInfo: 2, monitorPage1: 0, monitorPage2: 0)
        let actions = guest.send(.initiateContact(contact), connection: 1)
        #expect(Guest.posted(actions).first == .versionResponse(VersionResponse(
            versionSupported: false, connectionState: 0, messageConnectionID: ConnectionID(1))))
    }

    @Test func messagesBeforeContactAreDropped() {
        var guest = Guest()
        let actions = guest.send(.requestOffers(RequestOffers()))
        #expect(Guest.posted(actions).isEmpty)
        #expect(actions.count == 1)
    }

    @Test func contactNamingAMissingProcessorIsDropped() {
        var guest = Guest(processors: 1)
        #expect(Guest.posted(guest.connect(.v5_3, targetVP: 3)).isEmpty)
    }

    @Test func malformedMessagesAreReportedNotFatal() {
        var guest = Guest()
        let actions = guest.server.handle([1, 0, 0], connectionID: ConnectionID(1), from: 0)
        #expect(actions.count == 1)
        if case .protocolViolation = actions[0] {} else { Issue.record("expected a violation") }
    }

    @Test func offersCarryUniqueRelidsAndConnectionIDsThenAllOffersDelivered() {
        var guest = Guest()
        _ = guest.connect()
        let messages = Guest.posted(guest.send(.requestOffers(RequestOffers())))
        #expect(messages.count == 3)
        guard case .offerChannel(let first) = messages[0], case .offerChannel(let second) = messages[1] else {
            Issue.record("expected offers")
            return
        }
        #expect(first.childRelID == 1 && second.childRelID == 2)
        #expect(first.connectionID == ConnectionID(0x2001) && second.connectionID == ConnectionID(0x2002))
        #expect(!first.monitorAllocated && first.isDedicatedInterrupt)
        #expect(first.bytes.count == 196)
        #expect(messages[2] == .allOffersDelivered(AllOffersDelivered()))
    }

    @Test func offersAddedLaterAreOfferedImmediately() throws {
        var guest = Guest(offers: [])
        _ = guest.connect()
        _ = guest.send(.requestOffers(RequestOffers()))
        let added = guest.server.addOffer(ChannelOffer(interfaceType: .heartbeat, interfaceInstance: .heartbeat, name: "late"))
        let (relID, actions) = try #require(added)
        #expect(relID == 1)
        #expect(Guest.posted(actions).count == 1)
    }

    @Test func unloadClosesEverythingAndAnswers() {
        var guest = Guest()
        _ = guest.connect(.v5_3, targetVP: 1)
        _ = guest.send(.requestOffers(RequestOffers()))
        _ = guest.createGPADL(0xE1E10, channel: 1, pages: Array(100..<104))
        _ = guest.send(.openChannel(OpenChannel(childRelID: 1, openID: 1, ringBufferGPADL: 0xE1E10, targetVP: 0,
                                                downstreamRingBufferPageOffset: 2, userData: [UInt8](repeating: 0, count: 120))))
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let actions = guest.send(.unload(Unload()))
        #expect(actions.contains(.close(channel: 1)))
        #expect(actions.contains { if case .releaseGPADL(let gpadl) = $0 { gpadl.id == 0xE1E10 } else { false } })
        #expect(actions.contains(.post(vp: 1, sint: 2, .unloadResponse(UnloadResponse()))))
        #expect(guest.server.connection == nil)
        // A new kernel connects again and gets the offers again.
        _ = guest.connect()
        #expect(Guest.posted(guest.send(.requestOffers(RequestOffers()))).count == 3)
    }
}

@Suite("VMBus server: GPADLs (Docs/hyperv-interface.md §7)")
struct GPADLTests {
    func connected() -> Guest {
        var guest = Guest()
        _ = guest.connect()
        _ = guest.send(.requestOffers(RequestOffers()))
        return guest
    }

    func created(_ actions: [ServerAction], _ id: UInt32) -> UInt32? {
        for message in Guest.posted(actions) {
            if case .gpadlCreated(let created) = message, created.gpadl == id { return created.status }
        }
        return nil
    }

    @Test func gpadlAssembledAcrossManyBodiesWithMessageNumberZero() {
        var guest = connected()
        let pages = (1000..<(1000 + 4096)).map { UInt64($0) }  // netvsc's 16 MiB receive buffer
        let actions = guest.createGPADL(0xE1E10, channel: 1, pages: pages)
        #expect(created(actions, 0xE1E10) == 0)
        #expect(Guest.posted(actions).count == 1, "GPADL_CREATED only once, after the last body")
        #expect(guest.server.gpadl(0xE1E10)?.pageNumbers == pages)
    }

    @Test func headerOnlyGPADLCompletesAtOnce() {
        var guest = connected()
        #expect(created(guest.createGPADL(7, channel: 2, pages: [1, 2, 3]), 7) == 0)
    }

    @Test func pagesOutsideGuestRAMAreRefused() {
        var guest = connected()
        let outside = UInt64(64 << 20) / 4096
        #expect(created(guest.createGPADL(1, channel: 1, pages: [5, outside]), 1) == ServerStatus.invalidParameter)
        #expect(guest.server.gpadl(1) == nil)
        // In a body, too.
        let pages = (0..<40).map { UInt64($0) } + [outside + 100]
        #expect(created(guest.createGPADL(2, channel: 1, pages: pages), 2) == ServerStatus.invalidParameter)
    }

    @Test func emptyRangeIsRefused() {
        var guest = connected()
        let actions = guest.send(.gpadlHeader(GPADLHeader(childRelID: 1, gpadl: 3, rangeBufferLength: 8, byteCount: 0,
                                                          byteOffset: 0, pfns: [])))
        #expect(created(actions, 3) == ServerStatus.invalidParameter)
    }

    @Test func tooManyPagesAreRefused() throws {
        var guest = Guest()
        guest.server = VMBusServer(configuration: .init(memorySize: 64 << 20, processorCount: 2, maximumGPADLPages: 1024))
        _ = guest.server.addOffer(ChannelOffer(interfaceType: .heartbeat, interfaceInstance: .heartbeat, name: "one"))
        _ = guest.connect()
        _ = guest.send(.requestOffers(RequestOffers()))
        let actions = guest.send(.gpadlHeader(GPADLHeader(
            childRelID: 1, gpadl: 4, rangeBufferLength: try #require(GPADLHeader.rangeBufferLength(pfnCount: 2000)),
            byteCount: 2000 * 4096, byteOffset: 0, pfns: [1, 2])))
        #expect(created(actions, 4) == ServerStatus.invalidParameter)
    }

    @Test func moreBodyPagesThanTheRangeNeedsAreRefused() {
        var guest = connected()
        _ = guest.send(.gpadlHeader(GPADLHeader(childRelID: 1, gpadl: 5, rangeBufferLength: GPADLHeader.rangeBufferLength(pfnCount: 30)!,
                                                byteCount: 30 * 4096, byteOffset: 0, pfns: Array(1...26))))
        let actions = guest.send(.gpadlBody(GPADLBody(messageNumber: 0, gpadl: 5, pfns: Array(27...40))))
        #expect(created(actions, 5) == ServerStatus.invalidParameter)
    }

    @Test func inconsistentRangeBufferLengthIsRefused() {
        var guest = connected()
        let actions = guest.send(.gpadlHeader(GPADLHeader(childRelID: 1, gpadl: 6, rangeBufferLength: GPADLHeader.rangeBufferLength(pfnCount: 5)!,
                                                          byteCount: 2 * 4096, byteOffset: 0, pfns: [1, 2])))
        #expect(created(actions, 6) == ServerStatus.invalidParameter)
    }

    @Test func duplicateHandlesAndUnknownChannelsAreRefused() {
        var guest = connected()
        #expect(created(guest.createGPADL(9, channel: 1, pages: [1, 2]), 9) == 0)
        #expect(created(guest.createGPADL(9, channel: 1, pages: [3, 4]), 9) == ServerStatus.invalidParameter)
        #expect(created(guest.createGPADL(10, channel: 77, pages: [3, 4]), 10) == ServerStatus.invalidParameter)
    }

    @Test func bodiesForUnknownGPADLsAreIgnored() {
        var guest = connected()
        let actions = guest.send(.gpadlBody(GPADLBody(messageNumber: 0, gpadl: 0xDEAD, pfns: [1])))
        #expect(Guest.posted(actions).isEmpty)
    }

    @Test func teardownIsAlwaysAnsweredAndReleasesTheGPADL() {
        var guest = connected()
        _ = guest.createGPADL(11, channel: 1, pages: [1, 2])
        let actions = guest.send(.gpadlTeardown(GPADLTeardown(childRelID: 1, gpadl: 11)))
        #expect(actions.contains { if case .releaseGPADL(let gpadl) = $0 { gpadl.id == 11 } else { false } })
        #expect(Guest.posted(actions) == [.gpadlTorndown(GPADLTorndown(gpadl: 11))])
        let unknown = guest.send(.gpadlTeardown(GPADLTeardown(childRelID: 1, gpadl: 12)))
        #expect(Guest.posted(unknown) == [.gpadlTorndown(GPADLTorndown(gpadl: 12))])
    }

    @Test func randomizedGPADLMessagesNeverTrapAndAlwaysAnswerHeaders() {
        var generator = SystemRandomNumberGenerator()
        var guest = connected()
        for round in 0..<3000 {
            let id = UInt32.random(in: 0..<32, using: &generator)
            let count = Int.random(in: 0..<40, using: &generator)
            let pfns = (0..<count).map { _ in UInt64.random(in: 0..<(UInt64(1) << 20), using: &generator) }
            if Bool.random(using: &generator) {
                let announced = Int.random(in: 0..<60, using: &generator)
                _ = guest.send(.gpadlHeader(GPADLHeader(
                    childRelID: UInt32.random(in: 0..<4, using: &generator), gpadl: id,
                    rangeBufferLength: UInt16(8 + announced * 8), rangeCount: UInt16.random(in: 0..<3, using: &generator),
                    byteCount: UInt32.random(in: 0..<(70 * 4096), using: &generator),
                    byteOffset: UInt32.random(in: 0..<5000, using: &generator), pfns: Array(pfns.prefix(26)))))
            } else {
                _ = guest.send(.gpadlBody(GPADLBody(messageNumber: UInt32(round), gpadl: id, pfns: Array(pfns.prefix(28)))))
            }
        }
    }
}

@Suite("VMBus server: channels (Docs/hyperv-interface.md §6.5-§6.7)")
struct ChannelTests {
    var guest: Guest

    init() {
        guest = Guest()
        _ = guest.connect(.v5_3, targetVP: 0)
        _ = guest.send(.requestOffers(RequestOffers()))
        _ = guest.createGPADL(0xE1E10, channel: 1, pages: Array(200..<208))
    }

    func open(_ guest: inout Guest, gpadl: UInt32 = 0xE1E10, offset: UInt32 = 4, vp: UInt32 = 1) -> [ServerAction] {
        guest.send(.openChannel(OpenChannel(childRelID: 1, openID: 1, ringBufferGPADL: gpadl, targetVP: vp,
                                            downstreamRingBufferPageOffset: offset, userData: [UInt8](repeating: 0, count: 120))))
    }

    @Test mutating func openAsksTheDeviceThenAnswersWithItsVerdict() {
        let actions = open(&guest)
        guard case .open(let request)? = actions.first else {
            Issue.record("expected an open request: \(actions)")
            return
        }
        #expect(Array(request.incomingRingPages) == [200, 201, 202, 203])
        #expect(Array(request.outgoingRingPages) == [204, 205, 206, 207])
        #expect(request.targetVP == 1)
        #expect(Guest.posted(guest.server.completeOpen(channel: 1, accepted: true))
                == [.openResult(OpenResult(childRelID: 1, openID: 1, status: 0))])
        #expect(guest.server.state(of: 1) == .open(request))
    }

    @Test mutating func deviceRefusalIsAnsweredWithAFailureStatus() {
        _ = open(&guest)
        #expect(Guest.posted(guest.server.completeOpen(channel: 1, accepted: false))
                == [.openResult(OpenResult(childRelID: 1, openID: 1, status: ServerStatus.unsuccessful))])
        #expect(guest.server.state(of: 1) == .offered)
    }

    @Test mutating func hostileOpensAreRefusedNotPassedOn() {
        for actions in [
            open(&guest, gpadl: 0xBAD),        // no such GPADL
            open(&guest, offset: 1),           // incoming ring without a data page
            open(&guest, offset: 7),           // outgoing ring without a data page
            open(&guest, vp: 9),               // no such processor
        ] {
            #expect(!actions.contains { if case .open = $0 { true } else { false } })
            #expect(Guest.posted(actions) == [.openResult(OpenResult(childRelID: 1, openID: 1, status: ServerStatus.unsuccessful))])
        }
    }

    @Test mutating func ringsThatOverlapAreRefused() {
        _ = guest.createGPADL(0xE1E11, channel: 1, pages: [300, 301, 302, 300])
        let actions = open(&guest, gpadl: 0xE1E11, offset: 2)
        #expect(Guest.posted(actions) == [.openResult(OpenResult(childRelID: 1, openID: 1, status: ServerStatus.unsuccessful))])
    }

    @Test mutating func anotherChannelsGPADLCannotBeUsedAsARing() {
        _ = guest.createGPADL(0xE1E12, channel: 2, pages: Array(400..<408))
        let actions = open(&guest, gpadl: 0xE1E12)
        #expect(Guest.posted(actions).first == .openResult(OpenResult(childRelID: 1, openID: 1, status: ServerStatus.unsuccessful)))
    }

    @Test mutating func closeStopsTheDeviceWithoutAnAnswer() {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let actions = guest.send(.closeChannel(CloseChannel(childRelID: 1)))
        #expect(actions == [.close(channel: 1)])
        #expect(guest.server.state(of: 1) == .offered)
    }

    @Test mutating func tearingDownAnOpenRingClosesTheChannelFirst() {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let actions = guest.send(.gpadlTeardown(GPADLTeardown(childRelID: 1, gpadl: 0xE1E10)))
        #expect(actions.first == .close(channel: 1))
        #expect(Guest.posted(actions) == [.gpadlTorndown(GPADLTorndown(gpadl: 0xE1E10))])
    }

    @Test mutating func modifyChannelRetargetsAndAnswersOn5_3() {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let actions = guest.send(.modifyChannel(ModifyChannel(childRelID: 1, targetVP: 0)))
        #expect(actions.contains(.retarget(channel: 1, vp: 0)))
        #expect(Guest.posted(actions) == [.modifyChannelResponse(ModifyChannelResponse(childRelID: 1, status: 0))])
    }

    @Test mutating func rescindClosesAndWaitsForRelease() {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let actions = guest.server.rescind(channel: 1)
        #expect(actions.first == .close(channel: 1))
        #expect(Guest.posted(actions) == [.rescindOffer(RescindOffer(childRelID: 1))])
        #expect(guest.server.state(of: 1) == .rescinded)
        let released = guest.send(.relIDReleased(RelIDReleased(childRelID: 1)))
        #expect(released.contains { if case .releaseGPADL(let gpadl) = $0 { gpadl.id == 0xE1E10 } else { false } })
        #expect(guest.server.state(of: 1) == .released)
        // A released channel cannot be opened again.
        #expect(Guest.posted(open(&guest)).first == .openResult(OpenResult(childRelID: 1, openID: 1, status: ServerStatus.unsuccessful)))
    }

    /// Opens channel 1 and rescinds it as a device that goes away.
    mutating func withdrawOpenChannel() {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        _ = guest.server.rescind(channel: 1, untilGuestCloses: true)
    }

    /// A device going away in good order: the rescinded channel stays open, its device still
    /// answering, until the guest's driver closes it (Linux's netvsc and storvsc wait for answers
    /// to what they sent before they close); then RELID_RELEASED releases it.
    @Test mutating func rescindUntilTheGuestClosesKeepsTheChannelServed() {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let actions = guest.server.rescind(channel: 1, untilGuestCloses: true)
        #expect(!actions.contains(.close(channel: 1)))
        #expect(Guest.posted(actions) == [.rescindOffer(RescindOffer(childRelID: 1))])
        guard case .withdrawing? = guest.server.state(of: 1) else {
            Issue.record("state \(String(describing: guest.server.state(of: 1)))")
            return
        }
        #expect(guest.server.rescind(channel: 1, untilGuestCloses: true).isEmpty, "rescinding again changes nothing")
        #expect(guest.send(.closeChannel(CloseChannel(childRelID: 1))) == [.close(channel: 1)])
        #expect(guest.server.state(of: 1) == .rescinded)
        let released = guest.send(.relIDReleased(RelIDReleased(childRelID: 1)))
        #expect(released.contains(.released(channel: 1)))
        #expect(guest.server.state(of: 1) == .released)
    }

    /// A guest may answer a rescind with RELID_RELEASED alone; the channel is closed first.
    @Test mutating func releasingAWithdrawnChannelClosesItFirst() {
        withdrawOpenChannel()
        let actions = guest.send(.relIDReleased(RelIDReleased(childRelID: 1)))
        #expect(actions.first == .close(channel: 1))
        #expect(actions.contains(.released(channel: 1)))
        #expect(guest.server.state(of: 1) == .released)
    }

    /// The deadline: a guest that never closes a withdrawn channel has it closed for it, once.
    @Test mutating func finishingAWithdrawalClosesTheChannelOnce() {
        withdrawOpenChannel()
        #expect(guest.server.finishWithdrawal(channel: 1) == [.close(channel: 1)])
        #expect(guest.server.state(of: 1) == .rescinded)
        #expect(guest.server.finishWithdrawal(channel: 1).isEmpty)
    }

    @Test mutating func aBrokenChannelIsClosedAtOnceEvenWhileWithdrawing() {
        withdrawOpenChannel()
        #expect(guest.server.rescind(channel: 1) == [.close(channel: 1)])
        #expect(guest.server.state(of: 1) == .rescinded)
    }

    /// Opens channel 1 and offers it `count` sub-channels, the way a storvsc or netvsc VSP does
    /// after the guest asks for them.
    mutating func offerSubChannels(_ count: Int) throws -> [UInt32] {
        _ = open(&guest)
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        let primary = try #require(guest.server.state(of: 1))
        guard case .open = primary else { throw SubChannelError.primaryNotOpen }
        var relIDs: [UInt32] = []
        for index in 1...count {
            let offer = ChannelOffer(interfaceType: GUID("57164f39-9115-4e78-ab55-382f3bd5422d")!,
                                     interfaceInstance: GUID("00000000-0000-0000-0000-000000000001")!,
                                     name: "heartbeat", subChannelIndex: UInt16(index))
            let added = guest.server.addOffer(offer)
            let (relID, actions) = try #require(added)
            let offered = Guest.posted(actions)
            guard case .offerChannel(let message)? = offered.first else { throw SubChannelError.notOffered }
            #expect(message.subChannelIndex == UInt16(index) && message.childRelID == relID)
            #expect(message.interfaceInstance == GUID("00000000-0000-0000-0000-000000000001")!)
            relIDs.append(relID)
        }
        return relIDs
    }

    enum SubChannelError: Error { case primaryNotOpen, notOffered }

    @Test mutating func subChannelsAreOfferedWithTheirIndexAndThePrimarysIdentity() throws {
        let subChannels = try offerSubChannels(3)
        #expect(guest.server.subChannels(of: 1) == subChannels)
        #expect(guest.server.subChannels(of: 2).isEmpty)
    }

    @Test mutating func closingThePrimaryRescindsItsSubChannels() throws {
        let subChannels = try offerSubChannels(2)
        let actions = guest.send(.closeChannel(CloseChannel(childRelID: 1)))
        #expect(actions.first == .close(channel: 1))
        #expect(Guest.posted(actions) == subChannels.map { .rescindOffer(RescindOffer(childRelID: $0)) })
        for relID in subChannels {
            _ = guest.send(.relIDReleased(RelIDReleased(childRelID: relID)))
            #expect(guest.server.state(of: relID) == .released)
        }
        #expect(guest.server.subChannels(of: 1).isEmpty)
    }

    @Test mutating func aReconnectingGuestIsNotOfferedOldSubChannels() throws {
        let subChannels = try offerSubChannels(2)
        let actions = guest.connect()
        for relID in subChannels {
            #expect(actions.contains(.released(channel: relID)))
            #expect(guest.server.state(of: relID) == .released)
        }
        let offers = Guest.posted(guest.send(.requestOffers(RequestOffers())))
        #expect(offers.count == 3)  // the two primaries and ALLOFFERS_DELIVERED
    }

    /// A sub-channel the guest has not released yet still exists, but it is no longer offered:
    /// the indices its device hands out next start from 1 again.
    @Test mutating func rescindedSubChannelsAreNotAmongTheOfferedOnes() throws {
        let subChannels = try offerSubChannels(2)
        #expect(guest.server.offeredSubChannels(of: 1) == subChannels)
        _ = guest.send(.closeChannel(CloseChannel(childRelID: 1)))
        #expect(guest.server.subChannels(of: 1) == subChannels, "rescinded, not released")
        #expect(guest.server.offeredSubChannels(of: 1).isEmpty)
    }

    /// Relids the guest released are offered again (lowest first), so a guest that reopens a
    /// device for ever, asking for new sub-channels each time, never runs out of them.
    @Test mutating func releasedRelidsAreOfferedAgain() throws {
        let subChannels = try offerSubChannels(2)
        _ = guest.send(.closeChannel(CloseChannel(childRelID: 1)))
        for relID in subChannels.reversed() { _ = guest.send(.relIDReleased(RelIDReleased(childRelID: relID))) }
        let offer = ChannelOffer(interfaceType: .heartbeat, interfaceInstance: .heartbeat, name: "again")
        let added = guest.server.addOffer(offer)
        let first = try #require(added)
        #expect(first.relID == subChannels.min())
        #expect(Guest.posted(first.actions).contains { if case .offerChannel(let message) = $0 { message.childRelID == first.relID } else { false } })
        let addedAgain = guest.server.addOffer(offer)
        let second = try #require(addedAgain)
        #expect(second.relID == subChannels.max())
        let addedLast = guest.server.addOffer(offer)
        let third = try #require(addedLast)
        #expect(third.relID == (subChannels.max() ?? 0) + 1, "then past the highest used")
        // Reopened and closed a thousand times, two sub-channels each: still relids to spare.
        for _ in 0..<1000 {
            _ = open(&guest)
            _ = guest.server.completeOpen(channel: 1, accepted: true)
            var offered: [UInt32] = []
            for index in 1...2 {
                let sub = ChannelOffer(interfaceType: GUID("57164f39-9115-4e78-ab55-382f3bd5422d")!,
                                       interfaceInstance: GUID("00000000-0000-0000-0000-000000000001")!,
                                       name: "heartbeat", subChannelIndex: UInt16(index))
                let subAdded = guest.server.addOffer(sub)
                offered.append(try #require(subAdded).relID)
            }
            _ = guest.send(.closeChannel(CloseChannel(childRelID: 1)))
            for relID in offered { _ = guest.send(.relIDReleased(RelIDReleased(childRelID: relID))) }
        }
        #expect(guest.server.addOffer(offer) != nil)
    }

    @Test mutating func relidsRunOutWithoutATrap() {
        var added = 2
        while guest.server.addOffer(ChannelOffer(interfaceType: .heartbeat, interfaceInstance: .heartbeat, name: "x")) != nil {
            added += 1
        }
        #expect(added == Int(VMBusConstants.maximumChildRelID))
    }
}
