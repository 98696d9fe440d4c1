import Foundation
import HyperV
import TestSupport
import Testing
import VMBusProtocol
@testable import VMBusServer

/// Saving and restoring the server (Docs/architecture.md, "A parent that restarts"): what a
/// restored server does next is what the saved one would have done, each save carries only
/// what changed, and records that come back altered are refused or restored consistently,
/// never a trap.
@Suite("VMBus server: saved state")
struct ServerStateTests {
    /// A server in the middle of things: connected at 5.3, three channels offered, relid 1 open
    /// on an 8-page ring and retargeted to processor 1, a GPADL of relid 2 half assembled,
    /// relid 3 rescinded and not yet released.
    static func busyGuest() -> Guest {
        var guest = Guest(offers: ["heartbeat", "bench", "timesync"])
        _ = guest.connect(.v5_3)
        _ = guest.send(.requestOffers(RequestOffers()))
        _ = guest.createGPADL(0xE1E10, channel: 1, pages: (0..<8).map { 0x100 + $0 })
        _ = guest.send(.openChannel(OpenChannel(childRelID: 1, openID: 1, ringBufferGPADL: 0xE1E10, targetVP: 0,
                                                downstreamRingBufferPageOffset: 4, userData: [UInt8](repeating: 7, count: 120))))
        _ = guest.server.completeOpen(channel: 1, accepted: true)
        _ = guest.send(.modifyChannel(ModifyChannel(childRelID: 1, targetVP: 1)))
        let messages = GPADLHeader.messages(gpadl: 0xE1E11, childRelID: 2, pfns: (0..<100).map { 0x400 + $0 }) ?? []
        for message in messages.prefix(2) { _ = guest.send(message) }
        _ = guest.server.rescind(channel: 3)
        return guest
    }

    static func save(_ server: VMBusServer) -> [UInt64: [UInt8]] {
        var ledger = ServerStateLedger()
        var records: [UInt64: [UInt8]] = [:]
        for record in ledger.changes(in: server) { records[record.key] = record.bytes }
        return records
    }

    /// What a server's state looks like from outside, for comparing two servers.
    static func view(_ server: VMBusServer) -> String {
        let channels = server.liveChannels.map { "\($0.relID):\($0.offer):\($0.state)" }
        let gpadls = server.gpadls.keys.sorted().map { "\($0):\(server.gpadls[$0].map { "\($0)" } ?? "")" }
        return "\(String(describing: server.connection)) next=\(server.nextRelID) delivered=\(server.offersDelivered)\n"
            + channels.joined(separator: "\n") + "\n" + gpadls.joined(separator: "\n")
    }

    @Test func aRestoredServerCarriesOnExactlyWhereTheSavedOneStood() throws {
        var original = Self.busyGuest()
        var restored = Guest(offers: [])
        restored.server = try VMBusServer(configuration: original.server.configuration, restoring: Self.save(original.server))
        #expect(Self.view(restored.server) == Self.view(original.server))
        // The parent publishes them again for its devices' leases and overlap checks.
        #expect(!original.server.createdGPADLs.isEmpty)
        #expect(restored.server.createdGPADLs == original.server.createdGPADLs)

        // The same guest messages and device events from here on give the same answers.
        let rest = (GPADLHeader.messages(gpadl: 0xE1E11, childRelID: 2, pfns: (0..<100).map { 0x400 + $0 }) ?? []).dropFirst(2)
        var steps: [(inout Guest) -> [ServerAction]] = rest.map { message in { $0.send(message) } }
        steps += [
            { $0.send(.openChannel(OpenChannel(childRelID: 2, openID: 2, ringBufferGPADL: 0xE1E11, targetVP: 0,
                                               downstreamRingBufferPageOffset: 50))) },
            { $0.server.completeOpen(channel: 2, accepted: true) },
            { $0.send(.relIDReleased(RelIDReleased(childRelID: 3))) },
            { $0.send(.closeChannel(CloseChannel(childRelID: 1))) },
            { $0.send(.gpadlTeardown(GPADLTeardown(childRelID: 1, gpadl: 0xE1E10))) },
            { guest in guest.server.addOffer(ChannelOffer(interfaceType: .heartbeat, interfaceInstance: .heartbeat, name: "late"))?.actions ?? [] },
            { $0.send(.unload(Unload())) },
            { $0.connect(.v5_2) },
        ]
        for (index, step) in steps.enumerated() {
            #expect(step(&original) == step(&restored), "step \(index)")
        }
        #expect(Self.view(restored.server) == Self.view(original.server))
    }

    /// A channel rescinded while its device still serves it is restored as such, and the guest's
    /// close then ends it the same way.
    @Test func aWithdrawingChannelIsRestoredWithdrawing() throws {
        var original = Self.busyGuest()
        _ = original.server.rescind(channel: 1, untilGuestCloses: true)
        var restored = Guest(offers: [])
        restored.server = try VMBusServer(configuration: original.server.configuration, restoring: Self.save(original.server))
        #expect(Self.view(restored.server) == Self.view(original.server))
        guard case .withdrawing? = restored.server.state(of: 1) else {
            Issue.record("state \(String(describing: restored.server.state(of: 1)))")
            return
        }
        let close = ChannelMessage.closeChannel(CloseChannel(childRelID: 1))
        #expect(original.send(close) == restored.send(close))
        #expect(restored.server.state(of: 1) == .rescinded)
    }

    @Test func eachSaveCarriesOnlyWhatChanged() throws {
        var guest = Guest(offers: ["heartbeat", "bench"])
        var ledger = ServerStateLedger()
        #expect(Set(ledger.changes(in: guest.server).map(\.key)) == [ServerState.headerKey, ServerState.key(.channel, id: 1),
                                                                     ServerState.key(.channel, id: 2)])
        #expect(ledger.changes(in: guest.server).isEmpty, "nothing changed, nothing to save")
        _ = guest.connect(.v5_3)
        #expect(ledger.changes(in: guest.server).map(\.key) == [ServerState.headerKey])
        // A GPADL of 8,000 pages (about as many as one GPADL_HEADER can announce): two chunks;
        // each body rewrites chunk 0 and the chunk it extends, never the whole list again.
        let pages = (0..<8000).map { UInt64($0) }
        let messages = try #require(GPADLHeader.messages(gpadl: 5, childRelID: 1, pfns: pages))
        _ = guest.send(.requestOffers(RequestOffers()))
        _ = ledger.changes(in: guest.server)
        _ = guest.send(messages[0])
        let chunk0 = ServerState.key(.gpadlChunk, id: 5)
        let chunk1 = ServerState.key(.gpadlChunk, id: 5, chunk: 1)
        #expect(ledger.changes(in: guest.server).map(\.key) == [chunk0])
        for message in messages.dropFirst().prefix(100) { _ = guest.send(message) }
        #expect(ledger.changes(in: guest.server).map(\.key) == [chunk0], "26 + 100 × 28 pages: still in chunk 0")
        for message in messages.dropFirst(101).prefix(100) { _ = guest.send(message) }
        #expect(ledger.changes(in: guest.server).map(\.key) == [chunk0, chunk1], "5,626 pages: chunk 1 began")
        for message in messages.dropFirst(201) { _ = guest.send(message) }
        let last = ledger.changes(in: guest.server)
        #expect(last.map(\.key) == [chunk0, chunk1], "chunk 0's page list did not change, but its summary did")
        #expect(last.allSatisfy { ($0.bytes?.count ?? 0) <= 4 + 4096 * 8 + 64 }, "each record fits a control message")
        let restored = try VMBusServer(configuration: guest.server.configuration, restoring: Self.save(guest.server))
        #expect(restored.gpadl(5)?.pageNumbers == pages)
        // Torn down: every chunk is deleted.
        _ = guest.send(.gpadlTeardown(GPADLTeardown(childRelID: 1, gpadl: 5)))
        let deleted = ledger.changes(in: guest.server)
        #expect(deleted.filter { $0.bytes == nil }.map(\.key) == [chunk0, chunk1])
    }

    @Test func recordsThatContradictTheConfigurationAreRefused() throws {
        let guest = Self.busyGuest()
        let saved = Self.save(guest.server)
        let configuration = guest.server.configuration
        #expect(throws: ServerStateError.missingHeader) {
            _ = try VMBusServer(configuration: configuration, restoring: saved.filter { $0.key != ServerState.headerKey })
        }
        var future = saved
        future[ServerState.headerKey]?[0] = 9
        #expect(throws: ServerStateError.unsupportedVersion(9)) { _ = try VMBusServer(configuration: configuration, restoring: future) }
        // The ring's pages lie beyond a smaller guest's RAM.
        var small = configuration
        small.memorySize = 1 << 20
        #expect(throws: ServerStateError.self) { _ = try VMBusServer(configuration: small, restoring: saved) }
        // Relid 1 is open on processor 1, which a one-processor partition does not have.
        var uniprocessor = configuration
        uniprocessor.processorCount = 1
        #expect(throws: ServerStateError.self) { _ = try VMBusServer(configuration: uniprocessor, restoring: saved) }
        // An open channel whose ring GPADL is gone.
        #expect(throws: ServerStateError.self) {
            _ = try VMBusServer(configuration: configuration, restoring: saved.filter { $0.key != ServerState.key(.gpadlChunk, id: 0xE1E10) })
        }
        // A record of someone else's.
        var foreign = saved
        foreign[0x0200_0000_0000_0001] = [1, 0]
        #expect(throws: ServerStateError.self) { _ = try VMBusServer(configuration: configuration, restoring: foreign) }
    }

    @Test func allGPADLsTogetherStayWithinTheirLimit() {
        var guest = Guest(offers: ["heartbeat"])
        guest.server = VMBusServer(configuration: .init(memorySize: 64 << 20, processorCount: 2, maximumTotalGPADLPages: 100))
        _ = guest.server.addOffer(ChannelOffer(interfaceType: .heartbeat, interfaceInstance: .heartbeat, name: "heartbeat"))
        _ = guest.connect()
        _ = guest.send(.requestOffers(RequestOffers()))
        #expect(Guest.posted(guest.createGPADL(1, channel: 1, pages: (0..<60).map { UInt64($0) }))
            == [.gpadlCreated(GPADLCreated(childRelID: 1, gpadl: 1, status: ServerStatus.success))])
        #expect(Guest.posted(guest.createGPADL(2, channel: 1, pages: (0..<60).map { UInt64($0) }))
            == [.gpadlCreated(GPADLCreated(childRelID: 1, gpadl: 2, status: ServerStatus.invalidParameter))])
    }

    /// Saved records mutated at random (bytes flipped, cut, records dropped, keys moved) are
    /// refused with a typed error or restored into a server that holds its invariants and
    /// carries on; none traps. HV_STATE_FUZZ_ITERATIONS runs the long form.
    @Test func mutatedSavedStateNeverTrapsTheParent() throws {
        let iterations = Int(ProcessInfo.processInfo.environment["HV_STATE_FUZZ_ITERATIONS"] ?? "") ?? 3000
        let guest = Self.busyGuest()
        let configuration = guest.server.configuration
        let saved = Self.save(guest.server)
        let keys = saved.keys.sorted()
        var generator = SeededGenerator(seed: 0x5EED_57A7E)
        var refused = 0
        var restoredCount = 0
        for _ in 0..<iterations {
            var records = saved
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let key = keys[Int.random(in: 0..<keys.count, using: &generator)]
                switch Int.random(in: 0..<5, using: &generator) {
                case 0:
                    if var bytes = records[key], !bytes.isEmpty {
                        bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                        records[key] = bytes
                    }
                case 1:
                    if let bytes = records[key] { records[key] = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
                case 2:
                    records[key] = nil
                case 3:
                    let moved = key ^ (UInt64(1) << UInt64.random(in: 0..<64, using: &generator))
                    records[moved] = records[key]
                default:
                    records[key]?.append(contentsOf: generator.bytes(Int.random(in: 1...16, using: &generator)))
                }
            }
            do throws(ServerStateError) {
                var server = try VMBusServer(configuration: configuration, restoring: records)
                restoredCount += 1
                let memoryPages = configuration.memorySize / 4096
                for id in server.gpadls.keys {
                    #expect(server.gpadls[id]?.gpadl.pageNumbers.allSatisfy { $0 < memoryPages } == true)
                }
                for channel in server.liveChannels {
                    if case .open(let request) = channel.state {
                        #expect(server.gpadl(request.ring.id) != nil && request.targetVP < configuration.processorCount)
                    }
                }
                // It carries on like any server.
                _ = server.handle(ChannelMessage.closeChannel(CloseChannel(childRelID: 1)).bytes, connectionID: ConnectionID(1), from: 0)
                _ = server.handle(ChannelMessage.requestOffers(RequestOffers()).bytes, connectionID: ConnectionID(1), from: 0)
                _ = server.rescind(channel: 2)
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0 && restoredCount > 0, "both outcomes were exercised (\(refused) refused, \(restoredCount) restored)")
    }
}
