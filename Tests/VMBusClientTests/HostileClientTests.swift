import HyperV
import TestSupport
import Testing
import VMBusClient
import VMBusProtocol
import VMBusServer

@Suite("VMBus server: a hostile guest, played by a real client gone wrong")
struct HostileClientTests {
    /// Everything a well-behaved client posts in a full session: contact, offers, GPADLs of
    /// several sizes, opens, a close, a teardown, a release after a rescind and an unload.
    static func session() throws -> [(ChannelMessage, ConnectionID)] {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let small = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        let large = try loop.createGPADL(channel: 2, pages: Loopback.pages(120, from: 0x800))
        try loop.run { c throws(ClientError) in try c.openChannel(1, gpadl: small, targetVP: 0, downstreamPageOffset: 2) }
        try loop.run { c throws(ClientError) in try c.openChannel(2, gpadl: large, targetVP: 1, downstreamPageOffset: 60) }
        try loop.run { c throws(ClientError) in try c.closeChannel(1) }
        try loop.run { c throws(ClientError) in try c.teardownGPADL(small) }
        loop.toGuest += loop.posted(loop.server.rescind(channel: 2))
        loop.pump([])
        try loop.run { c throws(ClientError) in try c.releaseRelID(2) }
        try loop.run { c throws(ClientError) in try c.unload() }
        #expect(loop.events.last == .unloaded)
        return loop.attempts.map { ($0.message, $0.connection) }
    }

    /// A server with the loopback's three devices, no guest yet.
    static func server() -> VMBusServer { Loopback().server }

    /// Each message of a real session, mutated at random (flipped, cut, grown, retyped, a small
    /// value in a word, or replaced), sometimes on the wrong connection: the server never traps,
    /// answers only with well-formed messages to a processor that exists, and hands devices only
    /// rings inside guest RAM.
    @Test(arguments: [UInt64(11), 12, 13, 14])
    func mutatedSessionsNeverTrapTheServer(seed: UInt64) throws {
        let session = try Self.session()
        var random = SeededGenerator(seed: seed)
        let memoryPages = UInt64(64 << 20) / 4096
        for _ in 0..<400 {
            var server = Self.server()
            for (message, connection) in session {
                let bytes = random.mutate(message.bytes)
                let onConnection = Int.random(in: 0..<10, using: &random) == 0
                    ? ConnectionID(UInt32.random(in: 0...5, using: &random)) : connection
                var pending = server.handle(bytes, connectionID: onConnection, from: UInt32.random(in: 0...2, using: &random))[...]
                while let action = pending.popFirst() {
                    switch action {
                    case .post(let vp, let sint, let answer):
                        #expect(vp < 2 && sint < 16)
                        #expect((try? ChannelMessage(parsing: answer.bytes)) == answer)
                    case .open(let request):
                        #expect(request.ring.pageNumbers.allSatisfy { $0 < memoryPages })
                        #expect(request.downstreamPageOffset >= 2 && request.ring.pageNumbers.count - request.downstreamPageOffset >= 2)
                        pending += server.completeOpen(channel: request.channel, accepted: Bool.random(using: &random))
                    default:
                        break
                    }
                }
            }
        }
    }

    /// A guest that keeps posting GPADL bodies for a handle it tore down, or opens a channel
    /// on a GPADL still being assembled, gets refusals, not a broken server.
    @Test func outOfOrderRequestsAreRefused() throws {
        var server = Self.server()
        func send(_ message: ChannelMessage, _ connection: UInt32 = 1) -> [ServerAction] {
            server.handle(message.bytes, connectionID: ConnectionID(connection), from: 0)
        }
        _ = send(.initiateContact(InitiateContact(version: .v5_3, targetVP: 0, interruptPageOrTargetInfo: 2,
                                                  monitorPage1: 0, monitorPage2: 0)), 4)
        _ = send(.requestOffers(RequestOffers()))
        let messages = try #require(GPADLHeader.messages(gpadl: 7, childRelID: 1, pfns: Loopback.pages(60)))
        _ = send(messages[0])
        // Opening on the half-built GPADL is refused.
        let open = send(.openChannel(OpenChannel(childRelID: 1, openID: 1, ringBufferGPADL: 7, targetVP: 0,
                                                 downstreamRingBufferPageOffset: 30,
                                                 userData: .zeros(OpenChannel.userDataSize))))
        #expect(open.contains(.post(vp: 0, sint: 2, .openResult(OpenResult(childRelID: 1, openID: 1,
                                                                           status: ServerStatus.unsuccessful)))))
        // Torn down halfway; the remaining bodies find nothing to extend.
        let teardown = send(.gpadlTeardown(GPADLTeardown(childRelID: 1, gpadl: 7)))
        #expect(teardown.contains(.post(vp: 0, sint: 2, .gpadlTorndown(GPADLTorndown(gpadl: 7)))))
        for body in messages.dropFirst() {
            let actions = send(body)
            #expect(actions.allSatisfy { if case .protocolViolation = $0 { true } else { false } })
        }
        #expect(server.gpadl(7) == nil)
        // Releasing a relid that was never rescinded, twice.
        for _ in 0..<2 {
            #expect(send(.relIDReleased(RelIDReleased(childRelID: 1))).allSatisfy {
                if case .protocolViolation = $0 { true } else { false }
            })
        }
        #expect(server.state(of: 1) == .offered)
    }

    /// A second INITIATE_CONTACT mid-session (a new kernel after kexec) resets the connection:
    /// open channels close and GPADLs are released before the new version is accepted.
    @Test func aNewContactMidSessionStartsOver() throws {
        var loop = Loopback()
        try loop.connectAndRequestOffers()
        let gpadl = try loop.createGPADL(channel: 1, pages: Loopback.pages(4))
        try loop.run { c throws(ClientError) in try c.openChannel(1, gpadl: gpadl, targetVP: 0, downstreamPageOffset: 2) }
        var fresh = VMBusClient(configuration: .init(versions: [.v4_0]))
        let actions = try fresh.connect(monitorPage1: 0, monitorPage2: 0)
        guard case .post(let contact, let connection, _)? = actions.first else {
            Issue.record("\(actions)")
            return
        }
        let reset = loop.server.handle(contact.bytes, connectionID: connection, from: 0)
        #expect(reset.contains(.close(channel: 1)))
        #expect(reset.contains { if case .releaseGPADL(let released) = $0 { released.id == gpadl } else { false } })
        #expect(reset.contains(.connected(.v4_0)))
        #expect(loop.server.connection?.version == .v4_0)
    }
}
