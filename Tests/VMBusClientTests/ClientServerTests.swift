import HyperV
import Testing
import VMBusClient
import VMBusProtocol
import VMBusServer

@Suite("VMBus client against the real server: connection (Docs/hyperv-interface.md §6)")
struct ClientConnectionTests {
    /// A host that accepts only `version` and older: the client walks down from the newest.
    @Test(arguments: VMBusVersion.supported)
    func negotiatesEverySupportedVersionNewestFirst(_ version: VMBusVersion) throws {
        var loop = Loopback()
        loop.intercept = { message, _ in
            guard case .initiateContact(let contact) = message, contact.version > version else { return nil }
            return [.versionResponse(VersionResponse(versionSupported: false))]
        }
        try loop.connectAndRequestOffers()
        let newer = VMBusVersion.supported.filter { $0 > version }
        let expected = newer.map { ClientEvent.versionRefused($0) } + [.connected(version)]
        #expect(Array(loop.events.prefix(expected.count)) == expected)
        #expect(loop.client.version == version)
        #expect(loop.server.connection?.version == version)
        // Each contact went on connection 4 from 5.0 on, on connection 1 before.
        let contacts = loop.attempts.compactMap { attempt -> (VMBusVersion, UInt32)? in
            guard case .initiateContact(let contact) = attempt.message else { return nil }
            return (contact.version, attempt.connection.rawValue)
        }
        #expect(contacts.map(\.0) == newer + [version])
        #expect(contacts.allSatisfy { $0.1 == ($0.0 >= .v5_0 ? 4 : 1) })
        // From 5.0 on the contact carries the message SINT, so host messages come on SINT 2.
        #expect(loop.server.connection?.sint == 2)
        // Then the offers, on the message connection.
        #expect(loop.attempts.last?.message.type == .requestOffers && loop.attempts.last?.connection.rawValue == 1)
        #expect(loop.events.suffix(4) == loop.client.offers.map { .offer($0) } + [.allOffersDelivered])
    }

    @Test(arguments: VMBusVersion.supported)
    func aClientProposingOnlyOneVersionGetsIt(_ version: VMBusVersion) throws {
        var loop = Loopback(configuration: .init(versions: [version]))
        try loop.connectAndRequestOffers()
        #expect(loop.events.first == .connected(version))
        #expect(loop.server.connection?.version == version)
        #expect(loop.client.offers.count == 3)
    }

    @Test func anUnsupportedVersionIsRefusedAndTheNextTried() throws {
        let future = VMBusVersion(major: 6, minor: 0)
        var loop = Loopback(configuration: .init(versions: [future, .v5_3]))
        try loop.connectAndRequestOffers()
        #expect(loop.events.prefix(2) == [.versionRefused(future), .connected(.v5_3)])
    }

    @Test func aClientWithOnlyUnsupportedVersionsFails() throws {
        let versions = [VMBusVersion(major: 6, minor: 0), VMBusVersion(major: 1, minor: 0)]
        var loop = Loopback(configuration: .init(versions: versions))
        let events = try loop.run { client throws(ClientError) in
            try client.connect(monitorPage1: 0, monitorPage2: 0)
        }
        #expect(events == versions.map { .versionRefused($0) } + [.failed(.connect, .noVersionAccepted)])
        #expect(loop.client.connection == .disconnected)
        #expect(loop.server.connection == nil)
        #expect(loop.client.nextDeadline == nil)
        // It may try again.
        let again = try loop.run { c throws(ClientError) in try c.connect(monitorPage1: 0, monitorPage2: 0) }
        #expect(again.last == .failed(.connect, .noVersionAccepted))
    }

    @Test func versionResponseIsAwaitedOnlyOnceThePostSucceeded() throws {
        var client = VMBusClient()
        let actions = try client.connect(monitorPage1: 0, monitorPage2: 0)
        guard case .post(.initiateContact, let connection, 0)? = actions.first, actions.count == 1 else {
            Issue.record("\(actions)")
            return
        }
        #expect(connection.rawValue == 4)
        #expect(client.nextDeadline == nil)
        let answered = client.postCompleted(.success, now: 500)
        #expect(answered == [.wait(until: 500 + client.configuration.answerTimeout)])
    }

    @Test func unloadClosesEverythingAndTheClientCanConnectAgain() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(8))
        try loop.run { c throws(ClientError) in try c.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 4) }
        #expect(loop.server.state(of: 1) != .offered)
        let events = try loop.run { c throws(ClientError) in try c.unload() }
        #expect(events == [.unloaded])
        #expect(loop.client.connection == .disconnected && loop.client.offers.isEmpty)
        #expect(loop.client.state(ofGPADL: gpadl) == nil)
        #expect(loop.serverActions.contains(.disconnected) && loop.serverActions.contains(.close(channel: 1)))
        #expect(loop.server.connection == nil)
        // Reconnect: the same devices are offered again.
        try loop.connectAndRequestOffers()
        #expect(loop.client.version == .v5_3)
        #expect(loop.client.offers.map(\.childRelID) == [1, 2, 3])
        #expect(loop.client.state(ofChannel: 1) == .closed)
    }

    @Test func requestsInTheWrongStateAreRefusedWithoutPosting() throws {
        var loop = Loopback()
        #expect(throws: ClientError.notConnected) { try loop.client.requestOffers() }
        #expect(throws: ClientError.notConnected) { try loop.client.unload() }
        try loop.connectAndRequestOffers()
        let attempts = loop.attempts.count
        #expect(throws: ClientError.alreadyConnected) { try loop.client.connect(monitorPage1: 0, monitorPage2: 0) }
        #expect(throws: ClientError.unknownChannel(9)) { try loop.client.createGPADL(channel: 9, pageNumbers: [1]) }
        #expect(throws: ClientError.invalidPageList(count: 0)) { try loop.client.createGPADL(channel: 1, pageNumbers: []) }
        #expect(throws: ClientError.invalidPageList(count: 9000)) {
            try loop.client.createGPADL(channel: 1, pageNumbers: Loopback.pages(9000))
        }
        #expect(throws: ClientError.unknownGPADL(5)) {
            try loop.client.openChannel(1, gpadl: 5, targetVP: 0, downstreamPageOffset: 2)
        }
        #expect(throws: ClientError.wrongChannelState(1)) { try loop.client.closeChannel(1) }
        #expect(throws: ClientError.wrongChannelState(1)) { try loop.client.releaseRelID(1) }
        #expect(throws: ClientError.unknownGPADL(5)) { try loop.client.teardownGPADL(5) }
        #expect(loop.attempts.count == attempts)
    }
}

@Suite("VMBus client against the real server: GPADLs and channels (§6.1 steps 6-9)")
struct ClientChannelTests {
    /// 26 PFNs fit the header, 28 each body: the edges of the split.
    @Test(arguments: [1, 2, 26, 27, 54, 55, 256, 1000])
    func gpadlsAreCreatedAcrossHeaderAndBodies(_ count: Int) throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let pages = Loopback.pages(count)
        let before = loop.attempts.count
        let gpadl = try loop.createGPADL(channel: 2, pages: pages)
        #expect(gpadl == 0xE1E10)
        let sent = loop.attempts[before...].map(\.message.type)
        let bodies = count <= 26 ? 0 : (count - 26 + 27) / 28
        #expect(sent == [.gpadlHeader] + Array(repeating: .gpadlBody, count: bodies))
        #expect(loop.events.last == .gpadlCreated(gpadl: gpadl, channel: 2, status: 0))
        #expect(loop.client.state(ofGPADL: gpadl) == .created)
        #expect(loop.server.gpadl(gpadl)?.pageNumbers == pages)
        #expect(loop.client.nextDeadline == nil)
    }

    @Test func handlesAreLinuxsAndNeverReusedWhileLive() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let first = try loop.createGPADL(channel: 1, pages: [0x300])
        let second = try loop.createGPADL(channel: 1, pages: [0x301])
        #expect([first, second] == [0xE1E10, 0xE1E11])
        var wrapping = Loopback(configuration: .init(firstGPADLHandle: .max))
        try wrapping.connectAndRequestOffers()
        let last = try wrapping.createGPADL(channel: 1, pages: [0x300])
        let next = try wrapping.createGPADL(channel: 1, pages: [0x301])
        #expect([last, next] == [.max, 1])
    }

    @Test func aGPADLTheServerRefusesIsDroppedWithItsRemainingBodies() throws {
        var loop = Loopback(memoryMiB: 1)
        try loop.connectAndRequestOffers()
        // The first page lies outside the 1 MiB of guest RAM: refused at the header.
        let pages = [UInt64(0x1_0000)] + Loopback.pages(200, from: 1)
        let before = loop.attempts.count
        let gpadl = try loop.createGPADL(channel: 1, pages: pages)
        #expect(loop.events.last == .gpadlCreated(gpadl: gpadl, channel: 1, status: ServerStatus.invalidParameter))
        #expect(loop.client.state(ofGPADL: gpadl) == nil)
        // The answer came after the header: at most the body already in flight followed it.
        #expect(loop.attempts.count - before <= 2)
        #expect(loop.client.queuedMessages == 0)
    }

    @Test func teardownIsAnsweredAndReleasesThePages() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 3, pages: Loopback.pages(40))
        let events = try loop.run { c throws(ClientError) in try c.teardownGPADL(gpadl) }
        #expect(events == [.gpadlTornDown(gpadl: gpadl)])
        #expect(loop.client.state(ofGPADL: gpadl) == nil)
        #expect(loop.server.gpadl(gpadl) == nil)
        #expect(loop.serverActions.contains { if case .releaseGPADL(let released) = $0 { released.id == gpadl } else { false } })
    }

    @Test func channelsOpenCloseAndReopen() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 2, pages: Loopback.pages(8))
        let opened = try loop.run { c throws(ClientError) in
            try c.openChannel(2, gpadl: gpadl, targetVP: 1, downstreamPageOffset: 4)
        }
        #expect(opened == [.opened(channel: 2, status: 0)])
        #expect(loop.client.state(ofChannel: 2) == .open(gpadl: gpadl))
        guard case .open(let request)? = loop.server.state(of: 2) else {
            Issue.record("server state \(String(describing: loop.server.state(of: 2)))")
            return
        }
        #expect(request.targetVP == 1 && request.downstreamPageOffset == 4 && request.openID == 2)
        #expect(Array(request.incomingRingPages) == Loopback.pages(4))
        try loop.run { c throws(ClientError) in try c.closeChannel(2) }
        #expect(loop.client.state(ofChannel: 2) == .closed)
        #expect(loop.server.state(of: 2) == .offered)
        #expect(loop.serverActions.last == .close(channel: 2))
        let again = try loop.run { c throws(ClientError) in
            try c.openChannel(2, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2)
        }
        #expect(again == [.opened(channel: 2, status: 0)])
    }

    @Test func aDeviceThatRefusesTheOpenLeavesTheChannelClosed() throws {
        var loop = Loopback()
        loop.acceptOpens = false
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        let events = try loop.run { c throws(ClientError) in
            try c.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2)
        }
        #expect(events == [.opened(channel: 1, status: ServerStatus.unsuccessful)])
        #expect(loop.client.state(ofChannel: 1) == .closed)
    }

    @Test func ringLayoutsWithoutAControlAndADataPageEachAreRefusedLocally() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(5))
        for offset: UInt32 in [0, 1, 4, 5, 99] {
            #expect(throws: ClientError.invalidRingLayout(downstreamPageOffset: offset, pages: 5)) {
                try loop.client.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: offset)
            }
        }
        // Another channel's GPADL is not a ring of this one.
        #expect(throws: ClientError.wrongGPADLState(gpadl)) {
            try loop.client.openChannel(2, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2)
        }
    }

    @Test func tearingDownAnOpenRingClosesItsChannel() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        try loop.run { c throws(ClientError) in try c.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2) }
        let events = try loop.run { c throws(ClientError) in try c.teardownGPADL(gpadl) }
        #expect(events == [.gpadlTornDown(gpadl: gpadl)])
        #expect(loop.client.state(ofChannel: 1) == .closed)
        #expect(loop.server.state(of: 1) == .offered)
    }

    @Test func aRescindIsAnsweredWithRelIDReleased() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 2, pages: Loopback.pages(6))
        try loop.run { c throws(ClientError) in try c.openChannel(2, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 3) }
        loop.toGuest += loop.posted(loop.server.rescind(channel: 2))
        loop.pump([])
        #expect(loop.events.last == .rescinded(channel: 2))
        #expect(loop.client.state(ofChannel: 2) == .rescinded)
        #expect(throws: ClientError.wrongChannelState(2)) { try loop.client.createGPADL(channel: 2, pageNumbers: [1]) }
        try loop.run { c throws(ClientError) in try c.releaseRelID(2) }
        #expect(loop.attempts.last?.message == .relIDReleased(RelIDReleased(childRelID: 2)))
        #expect(loop.server.state(of: 2) == .released)
        #expect(loop.server.gpadl(gpadl) == nil)
        #expect(loop.client.state(ofChannel: 2) == nil && loop.client.state(ofGPADL: gpadl) == nil)
        #expect(loop.client.offers.map(\.childRelID) == [1, 3])
    }

    @Test func aRescindFailsAnOpenAndAGPADLInProgress() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let ring = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        // The host answers OPENCHANNEL and a GPADL header with a rescind instead.
        loop.intercept = { message, _ in
            switch message {
            case .openChannel(let open): [.rescindOffer(RescindOffer(childRelID: open.childRelID))]
            case .gpadlHeader: []
            default: nil
            }
        }
        let pending = try loop.createGPADL(channel: 1, pages: Loopback.pages(60, from: 0x900))
        let events = try loop.run { c throws(ClientError) in
            try c.openChannel(1, gpadl: ring, targetVP: 0, downstreamPageOffset: 2)
        }
        #expect(events == [.failed(.openChannel(1), .rescinded), .failed(.createGPADL(pending), .rescinded),
                           .rescinded(channel: 1)])
        #expect(loop.client.state(ofGPADL: pending) == nil)
        #expect(loop.client.nextDeadline == nil)
    }

    @Test func devicesAddedLaterAreOfferedToo() throws {
        var loop = Loopback(devices: 1)
        try loop.connectAndRequestOffers()
        loop.addDevice(7)
        #expect(loop.client.offers.map(\.childRelID) == [1, 2])
        #expect(loop.events.last.map { if case .offer(let offer) = $0 { offer.childRelID == 2 } else { false } } == true)
    }
}

@Suite("VMBus client: posting and deadlines (drivers/hv/connection.c: vmbus_post_msg)")
struct ClientPostingTests {
    @Test func transientFailuresAreRetriedWithDoublingPauses() throws {
        var loop = Loopback()
        loop.postFailures = [.insufficientBuffers, .invalidConnectionID, .insufficientMemory, .insufficientBuffers]
        try loop.connectAndRequestOffers()
        #expect(loop.events.first == .connected(.v5_3))
        #expect(loop.attempts.prefix(5).map(\.delay) == [0, 100_000, 200_000, 400_000, 800_000])
        #expect(loop.attempts.prefix(5).allSatisfy { $0.message.type == .initiateContact })
    }

    @Test func retriesStopAfterTheWindowAndTheContactMovesOn() throws {
        var loop = Loopback(configuration: .init(versions: [.v5_3, .v5_2]))
        loop.postFailures = Array(repeating: .invalidConnectionID, count: 100_000)
        let events = try loop.run { c throws(ClientError) in try c.connect(monitorPage1: 0, monitorPage2: 0) }
        #expect(events == [.failed(.connect, .postFailed(.invalidConnectionID))])
        let retry = loop.client.configuration.retry
        #expect(loop.attempts.allSatisfy { $0.delay <= retry.longestPause })
        for version in [VMBusVersion.v5_3, .v5_2] {
            let tries = loop.attempts.filter {
                if case .initiateContact(let contact) = $0.message { contact.version == version } else { false }
            }
            let waited = tries.map(\.delay).reduce(0, +)
            #expect(waited >= retry.window - retry.longestPause && waited <= retry.window + retry.longestPause)
        }
        #expect(loop.client.connection == .disconnected)
    }

    @Test func aPermanentFailureFailsTheRequestAtOnce() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        loop.postFailures = [.invalidParameter]
        let before = loop.attempts.count
        let created = try loop.client.createGPADL(channel: 1, pageNumbers: Loopback.pages(100))
        loop.pump(created.actions)
        #expect(loop.events.last == .failed(.createGPADL(created.gpadl), .postFailed(.invalidParameter)))
        #expect(loop.attempts.count == before + 1)
        #expect(loop.client.state(ofGPADL: created.gpadl) == nil && loop.client.queuedMessages == 0)
    }

    @Test func unansweredRequestsTimeOut() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        loop.intercept = { _, _ in [] }  // the host goes silent
        try loop.run { c throws(ClientError) in try c.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2) }
        let deadline = try #require(loop.client.nextDeadline)
        #expect(deadline == loop.now + loop.client.configuration.answerTimeout)
        #expect(loop.advance(to: deadline - 1).isEmpty)
        #expect(loop.advance(to: deadline) == [.failed(.openChannel(1), .timedOut)])
        #expect(loop.client.state(ofChannel: 1) == .closed)
        #expect(loop.client.nextDeadline == nil)
    }

    @Test func aSilentHostTimesTheConnectionOut() throws {
        var loop = Loopback()
        loop.intercept = { _, _ in [] }
        try loop.run { c throws(ClientError) in try c.connect(monitorPage1: 0, monitorPage2: 0) }
        let deadline = try #require(loop.client.nextDeadline)
        #expect(loop.advance(to: deadline) == [.failed(.connect, .timedOut)])
        #expect(loop.client.connection == .disconnected)
        // A late answer is dropped.
        #expect(loop.deliver(.versionResponse(VersionResponse(versionSupported: true)))
                == [.ignored(.unexpected(.versionResponse))])
    }

    @Test func offersKeepTheWaitForAllOffersAlive() throws {
        var loop = Loopback(devices: 0)
        try loop.run { c throws(ClientError) in try c.connect(monitorPage1: 0, monitorPage2: 0) }
        loop.intercept = { _, _ in [] }
        try loop.run { c throws(ClientError) in try c.requestOffers() }
        let first = try #require(loop.client.nextDeadline)
        loop.now = first - 10
        loop.deliver(.offerChannel(OfferChannel(interfaceType: Loopback.heartbeat, interfaceInstance: Loopback.heartbeat,
                                                childRelID: 5, connectionID: ConnectionID(0x2005))))
        let second = try #require(loop.client.nextDeadline)
        #expect(second > first)
        #expect(loop.advance(to: second) == [.failed(.requestOffers, .timedOut)])
        #expect(loop.client.offers.count == 1)
    }

    @Test func everyCallEndsWithTheDeadlineWhileAnAnswerIsAwaited() throws {
        var client = VMBusClient()
        var actions = try client.connect(monitorPage1: 0, monitorPage2: 0)
        actions = client.postCompleted(.success, now: 10)
        #expect(actions.last == .wait(until: 10 + client.configuration.answerTimeout))
        // A dropped message changes nothing, and says so.
        actions = client.handle([1, 2, 3], now: 20)
        #expect(actions.count == 2 && actions.last == .wait(until: 10 + client.configuration.answerTimeout))
        actions = client.handle(.versionResponse(VersionResponse(versionSupported: true)), now: 30)
        #expect(actions == [.event(.connected(.v5_3))])
    }

    @Test func tablesAndQueuesAreBounded() throws {
        var loop = Loopback(configuration: .init(maximumGPADLs: 2, maximumQueuedMessages: 8))
        try loop.connectAndRequestOffers()
        _ = try loop.createGPADL(channel: 1, pages: [1])
        _ = try loop.createGPADL(channel: 1, pages: [2])
        #expect(throws: ClientError.tooManyGPADLs) { try loop.client.createGPADL(channel: 1, pageNumbers: [3]) }
        var small = Loopback(configuration: .init(maximumQueuedMessages: 8))
        try small.connectAndRequestOffers()
        // 26 + 7 × 28 pages need 8 messages; one more page needs 9.
        #expect(throws: ClientError.queueFull) {
            try small.client.createGPADL(channel: 1, pageNumbers: Loopback.pages(26 + 7 * 28 + 1))
        }
        _ = try small.createGPADL(channel: 1, pages: Loopback.pages(26 + 7 * 28))
    }
}
