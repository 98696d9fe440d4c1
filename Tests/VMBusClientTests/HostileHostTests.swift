import HyperV
import TestSupport
import Testing
import VMBusClient
import VMBusProtocol

@Suite("VMBus client: the host is untrusted")
struct HostileHostTests {
    static let type = Loopback.heartbeat

    static func offer(_ relID: UInt32) -> ChannelMessage {
        .offerChannel(OfferChannel(interfaceType: type, interfaceInstance: type, childRelID: relID,
                                   connectionID: VMBusConstants.eventConnectionID(childRelID: relID)))
    }

    /// A client connected to the real server, offers collected, with a GPADL on channel 1.
    static func connected(_ configuration: VMBusClient.Configuration = .init()) throws -> (Loopback, UInt32) {
        var loop = Loopback(configuration: configuration)
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        return (loop, gpadl)
    }

    @Test func offersOutsideTheRelIDRangeAreDropped() throws {
        var (loop, _) = try Self.connected()
        #expect(loop.deliver(Self.offer(0)) == [.ignored(.invalidRelID(0))])
        #expect(loop.deliver(Self.offer(2048)) == [.ignored(.invalidRelID(2048))])
        #expect(loop.deliver(Self.offer(.max)) == [.ignored(.invalidRelID(.max))])
        #expect(loop.client.offers.count == 3)
    }

    @Test func aSecondOfferForARelIDIsDropped() throws {
        var (loop, _) = try Self.connected()
        #expect(loop.deliver(Self.offer(2)) == [.ignored(.duplicateOffer(2))])
        #expect(loop.client.offers.count == 3)
    }

    @Test func offersBeyondTheTableAreDropped() throws {
        var loop = Loopback(devices: 0, configuration: .init(maximumOffers: 4))
        try loop.connectAndRequestOffers()
        for relID: UInt32 in [9, 3, 7, 1] { #expect(loop.deliver(Self.offer(relID)).count == 1) }
        #expect(loop.deliver(Self.offer(5)) == [.ignored(.tooManyOffers(5))])
        #expect(loop.client.offers.map(\.childRelID) == [1, 3, 7, 9])
    }

    @Test func answersNobodyAskedForAreDropped() throws {
        var (loop, gpadl) = try Self.connected()
        let dropped: [(ChannelMessage, HostViolation)] = [
            (.gpadlCreated(GPADLCreated(childRelID: 1, gpadl: gpadl + 1)), .unknownGPADL(.gpadlCreated, gpadl: gpadl + 1)),
            // Already created: a second GPADL_CREATED is not an answer.
            (.gpadlCreated(GPADLCreated(childRelID: 1, gpadl: gpadl)), .unknownGPADL(.gpadlCreated, gpadl: gpadl)),
            (.gpadlTorndown(GPADLTorndown(gpadl: gpadl)), .unknownGPADL(.gpadlTorndown, gpadl: gpadl)),
            (.openResult(OpenResult(childRelID: 1, openID: 1, status: 0)), .unknownChannel(.openChannelResult, relID: 1)),
            (.openResult(OpenResult(childRelID: 77, openID: 77, status: 0)), .unknownChannel(.openChannelResult, relID: 77)),
            (.rescindOffer(RescindOffer(childRelID: 77)), .unknownChannel(.rescindChannelOffer, relID: 77)),
            (.versionResponse(VersionResponse(versionSupported: true)), .unexpected(.versionResponse)),
            (.allOffersDelivered(AllOffersDelivered()), .unexpected(.allOffersDelivered)),
            (.unloadResponse(UnloadResponse()), .unexpected(.unloadResponse)),
            (.modifyChannelResponse(ModifyChannelResponse(childRelID: 1, status: 0)), .unexpected(.modifyChannelResponse)),
            (.initiateContact(InitiateContact(version: .v5_3, targetVP: 0, interruptPageOrTargetInfo: 2, monitorPage1: 0,
                                              monitorPage2: 0)), .unexpected(.initiateContact)),
            (.requestOffers(RequestOffers()), .unexpected(.requestOffers)),
            (.unknown(type: 99, payload: [99, 0, 0, 0, 0, 0, 0, 0]), .unexpected(ChannelMessageType(rawValue: 99))),
        ]
        for (message, violation) in dropped {
            #expect(loop.deliver(message) == [.ignored(violation)], "\(message)")
        }
        #expect(loop.client.version == .v5_3 && loop.client.state(ofGPADL: gpadl) == .created)
        #expect(loop.client.state(ofChannel: 1) == .closed && loop.client.offers.count == 3)
    }

    @Test func anOpenResultForAnotherOpenIDOrAGPADLAnswerForAnotherChannelIsDropped() throws {
        var (loop, gpadl) = try Self.connected()
        loop.intercept = { _, _ in [] }
        try loop.run { c throws(ClientError) in try c.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2) }
        #expect(loop.deliver(.openResult(OpenResult(childRelID: 1, openID: 2, status: 0)))
                == [.ignored(.openIDMismatch(relID: 1, openID: 2))])
        #expect(loop.client.state(ofChannel: 1) == .opening(gpadl: gpadl))
        let other = try loop.createGPADL(channel: 2, pages: [9])
        #expect(loop.deliver(.gpadlCreated(GPADLCreated(childRelID: 3, gpadl: other)))
                == [.ignored(.unknownGPADL(.gpadlCreated, gpadl: other))])
        #expect(loop.client.state(ofGPADL: other) == .creating)
        #expect(loop.deliver(.openResult(OpenResult(childRelID: 1, openID: 1, status: 0))) == [.opened(channel: 1, status: 0)])
    }

    @Test func aRescindIsTakenOnce() throws {
        var (loop, _) = try Self.connected()
        #expect(loop.deliver(.rescindOffer(RescindOffer(childRelID: 3))) == [.rescinded(channel: 3)])
        #expect(loop.deliver(.rescindOffer(RescindOffer(childRelID: 3))) == [.ignored(.unknownChannel(.rescindChannelOffer, relID: 3))])
        #expect(loop.deliver(Self.offer(3)) == [.ignored(.duplicateOffer(3))])
    }

    @Test func nothingButAVersionResponseCountsBeforeConnecting() {
        var client = VMBusClient()
        for message in [Self.offer(1), .versionResponse(VersionResponse(versionSupported: true)),
                        .rescindOffer(RescindOffer(childRelID: 1)), .gpadlCreated(GPADLCreated(childRelID: 1, gpadl: 0xE1E10))] {
            let actions = client.handle(message.bytes, now: 0)
            #expect(actions.count == 1)
            guard case .event(.ignored)? = actions.first else {
                Issue.record("\(actions)")
                continue
            }
        }
        #expect(client.connection == .disconnected && client.offers.isEmpty)
    }

    @Test func malformedMessagesAreDroppedWithTheParsersReason() throws {
        var (loop, _) = try Self.connected()
        let truncated = Array(Self.offer(9).bytes.prefix(100))
        let actions = loop.client.handle(truncated, now: loop.now)
        #expect(actions == [.event(.ignored(.malformed(.truncated(.offerChannel, size: 100, minimum: 196))))])
        #expect(loop.client.handle([UInt8](repeating: 0, count: 241), now: 0).first == .event(.ignored(.malformed(.oversized(size: 241)))))
        #expect(loop.client.handle([], now: 0).count == 1)
    }

    /// Seeded random and mutated host messages, mixed with the program's requests, post statuses
    /// and time: the client never traps, posts only well-formed messages one at a time, and its
    /// tables stay within their limits.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func hostileMessagesNeverTrapAndTablesStayBounded(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let configuration = VMBusClient.Configuration(maximumOffers: 16, maximumGPADLs: 4, maximumQueuedMessages: 64)
        var client = VMBusClient(configuration: configuration)
        var now: UInt64 = 0
        var outstandingPosts = 0
        var handles: Set<UInt32> = []
        var channelOf: [UInt32: UInt32] = [:]

        func perform(_ actions: [ClientAction]) {
            for action in actions {
                guard case .post(let message, _, _) = action else { continue }
                outstandingPosts += 1
                #expect(outstandingPosts == 1, "a second post before the first completed")
                #expect(message.bytes.count <= VMBusConstants.maximumMessagePayload)
                #expect((try? ChannelMessage(parsing: message.bytes)) == message)
            }
        }
        // Mostly relids and handles the client knows, so answers often match something.
        func anyRelID() -> UInt32 {
            switch Int.random(in: 0..<4, using: &random) {
            case 0, 1: client.offers.randomElement(using: &random)?.childRelID ?? 1
            case 2: UInt32.random(in: 0...20, using: &random)
            default: UInt32.random(in: 0...UInt32.max, using: &random)
            }
        }
        func anyHandle() -> UInt32 {
            switch Int.random(in: 0..<4, using: &random) {
            case 0, 1: handles.randomElement(using: &random) ?? 0xE1E10
            case 2: 0xE1E10 + UInt32.random(in: 0...8, using: &random)
            default: UInt32.random(in: 0...UInt32.max, using: &random)
            }
        }

        for _ in 0..<10_000 {
            now += UInt64.random(in: 0...50_000_000, using: &random)
            switch Int.random(in: 0..<20, using: &random) {
            case 0..<10:
                let valid: ChannelMessage = switch Int.random(in: 0..<14, using: &random) {
                case 0: .versionResponse(VersionResponse(versionSupported: Bool.random(using: &random),
                                                         messageConnectionID: ConnectionID(UInt32.random(in: 0...5, using: &random))))
                case 1, 2: Self.offer(anyRelID())
                case 3: .allOffersDelivered(AllOffersDelivered())
                case 4: .rescindOffer(RescindOffer(childRelID: anyRelID()))
                case 5: .gpadlCreated(GPADLCreated(childRelID: anyRelID(), gpadl: anyHandle(),
                                                   status: Bool.random(using: &random) ? 0 : 0xC000_000D))
                case 6: .gpadlTorndown(GPADLTorndown(gpadl: anyHandle()))
                case 7: .openResult(OpenResult(childRelID: anyRelID(), openID: anyRelID(), status: UInt32.random(in: 0...1, using: &random)))
                case 8: Int.random(in: 0..<4, using: &random) == 0 ? .unloadResponse(UnloadResponse()) : Self.offer(anyRelID())
                case 9: .modifyChannelResponse(ModifyChannelResponse(childRelID: anyRelID(), status: 0))
                case 10: .gpadlBody(GPADLBody(gpadl: anyHandle(), pfns: [1, 2, 3]))
                case 11:
                    // The answer the client waits for, when it waits for one.
                    if let handle = handles.first(where: { client.state(ofGPADL: $0) == .creating }) {
                        .gpadlCreated(GPADLCreated(childRelID: anyRelID(), gpadl: handle, status: 0))
                    } else {
                        .gpadlTorndown(GPADLTorndown(gpadl: anyHandle()))
                    }
                case 12:
                    if let open = client.offers.first(where: {
                        if case .opening = client.state(ofChannel: $0.childRelID) { true } else { false }
                    }) {
                        .openResult(OpenResult(childRelID: open.childRelID, openID: open.childRelID, status: 0))
                    } else {
                        .allOffersDelivered(AllOffersDelivered())
                    }
                default:
                    .gpadlTorndown(GPADLTorndown(gpadl: handles.first { client.state(ofGPADL: $0) == .tearingDown } ?? anyHandle()))
                }
                perform(client.handle(Bool.random(using: &random) ? valid.bytes : random.mutate(valid.bytes), now: now))
            case 10..<14:
                let relID = client.offers.randomElement(using: &random)?.childRelID ?? anyRelID()
                let handle = handles.randomElement(using: &random) ?? anyHandle()
                let actions: [ClientAction]
                do throws(ClientError) {
                    switch Int.random(in: 0..<16, using: &random) {
                    case 0, 8, 9: actions = try client.connect(monitorPage1: 0, monitorPage2: 0)
                    case 1: actions = try client.requestOffers()
                    case 2, 10, 11:
                        let created = try client.createGPADL(channel: relID, pageNumbers: Loopback.pages(Int.random(in: 1...80, using: &random)))
                        handles.insert(created.gpadl)
                        channelOf[created.gpadl] = relID
                        actions = created.actions
                    case 3, 12, 13:
                        // Usually a ring that can open: a created GPADL on its own channel.
                        let ring = handles.filter { client.state(ofGPADL: $0) == .created }.randomElement(using: &random) ?? handle
                        actions = try client.openChannel(channelOf[ring] ?? relID, gpadl: ring, targetVP: 0,
                                                         downstreamPageOffset: UInt32.random(in: 0...3, using: &random))
                    case 4: actions = try client.closeChannel(relID)
                    case 5, 14: actions = try client.teardownGPADL(handle)
                    case 6: actions = try client.releaseRelID(relID)
                    default:
                        // Rarely: an unload ends the session the rest builds up.
                        actions = Int.random(in: 0..<8, using: &random) == 0
                            ? try client.unload() : try client.requestOffers()
                    }
                } catch {
                    continue
                }
                perform(actions)
            case 14..<18:
                guard outstandingPosts > 0 else { continue }
                outstandingPosts -= 1
                let statuses: [HypercallStatus] = [.success, .success, .success, .insufficientBuffers, .invalidConnectionID, .invalidParameter]
                perform(client.postCompleted(statuses.randomElement(using: &random)!, now: now))
            default:
                perform(client.tick(now: now))
            }
            let offers = client.offers.map(\.childRelID)
            #expect(offers.count <= configuration.maximumOffers)
            #expect(zip(offers, offers.dropFirst()).allSatisfy { $0 < $1 } && offers.allSatisfy { (1...2047).contains($0) })
            #expect(client.queuedMessages <= configuration.maximumQueuedMessages)
            #expect(handles.filter { client.state(ofGPADL: $0) != nil }.count <= configuration.maximumGPADLs)
            if let deadline = client.nextDeadline { #expect(deadline <= now + configuration.answerTimeout) }
        }
    }
}
