import BenchProtocol
import BenchVSP
import Glibc
import HyperV
import LinuxSupport
import Testing
import TestSupport
import VMBusHost
import VMBusProtocol
import VSPTestSupport

/// The bench device driven by a guest played in memory over the real ring code and channel
/// worker (Docs/benchmarks.md): every mode, its reports, and guests that break the protocol.
@Suite("Bench VSP over a channel")
struct BenchVSPChannelTests {
    /// A guest of the bench device: builds packets as the bench VSC does.
    struct BenchGuest {
        let host: FakeVSPHost
        let guest: FakeGuest

        init(targetVP: UInt32 = 1) throws {
            let host = FakeVSPHost(partitionName: "bench")
            try self.init(device: BenchVSP(host: host), host: host, targetVP: targetVP)
        }

        /// A channel of `device`, whose host is `host`.
        init(device: BenchVSP, host: FakeVSPHost, targetVP: UInt32 = 1) throws {
            self.host = host
            guest = try FakeGuest(device: device, relID: 3, targetVP: targetVP)
        }

        func packet(_ kind: BenchKind, phase: UInt32, sequence: UInt32 = 0, body: [UInt8] = []) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: BenchHeader.size)
            BenchHeader(kind: kind, phase: phase, sequence: sequence).store(into: &bytes)
            return bytes + body
        }

        /// One data or ping message of `size` bytes carrying the pattern for `sequence`.
        func message(_ kind: BenchKind, phase: UInt32, sequence: UInt32, size: Int) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: size)
            BenchHeader(kind: kind, phase: phase, sequence: sequence).store(into: &bytes)
            BenchPattern.fill(&bytes, from: BenchHeader.size, to: size, sequence: sequence)
            return bytes
        }

        func start(_ phase: UInt32, _ parameters: BenchPhase) {
            #expect(guest.send(packet(.phaseStart, phase: phase, body: parameters.bytes)))
        }

        func end(_ phase: UInt32, messages: UInt64, checksum: UInt64 = 0, p50: UInt64 = 0, p99: UInt64 = 0) {
            let end = BenchPhaseEnd(messages: messages, checksum: checksum, guestNanoseconds: 1_000, p50Nanoseconds: p50,
                                    p99Nanoseconds: p99)
            #expect(guest.send(packet(.phaseEnd, phase: phase, body: end.bytes)))
        }

        /// The host's result of `phase`.
        func result(_ phase: UInt32) throws -> BenchPhaseResult {
            let packet = try #require(guest.receive(), "a phase result")
            let header = try #require(BenchHeader(parsing: packet.payload[...]))
            #expect(header.kind == .phaseResult && header.phase == phase)
            return try #require(BenchPhaseResult(parsing: packet.payload.dropFirst(BenchHeader.size)))
        }
    }

    @Test func aThroughputPhaseCountsVerifiesAndReportsTheGuestsData() throws {
        let bench = try BenchGuest()
        defer { bench.guest.close() }
        #expect(bench.host.facts["bench.state"] == "open")
        let size = 1000
        bench.start(1, BenchPhase(mode: .throughput, messageSize: UInt32(size), count: 300, flags: BenchPhase.verifyFlag))
        var checksum = BenchPattern.seed
        for sequence in UInt32(0)..<300 {
            let message = bench.message(.data, phase: 1, sequence: sequence, size: size)
            checksum = BenchPattern.checksum(checksum, message[BenchHeader.size...])
            #expect(bench.guest.send(message, transactionID: UInt64(sequence)))
        }
        bench.end(1, messages: 300, checksum: checksum)
        let result = try bench.result(1)
        #expect(result.messages == 300 && result.intact)
        let facts = bench.host.facts
        #expect(facts["bench.throughput.1000.messages"] == "300")
        #expect(facts["bench.throughput.1000.intact"] == "true")
        #expect(facts["bench.throughput.1000.runs"] == "1")
        #expect(facts["bench.phases"] == "1")
        #expect(bench.guest.failure == nil)
    }

    @Test func dataThatChangedOnTheWayOrCameOutOfOrderIsNotIntact() throws {
        let bench = try BenchGuest()
        defer { bench.guest.close() }
        let size = 64
        for (phase, damage) in [(UInt32(1), "flipped byte"), (2, "reordered")] {
            bench.start(phase, BenchPhase(mode: .throughput, messageSize: UInt32(size), count: 20, flags: BenchPhase.verifyFlag))
            var checksum = BenchPattern.seed
            for index in UInt32(0)..<20 {
                let sequence = damage == "reordered" && index == 5 ? 6 : damage == "reordered" && index == 6 ? 5 : index
                var message = bench.message(.data, phase: phase, sequence: sequence, size: size)
                checksum = BenchPattern.checksum(checksum, message[BenchHeader.size...])
                if damage == "flipped byte" && index == 7 { message[40] ^= 0x10 }
                #expect(bench.guest.send(message))
            }
            bench.end(phase, messages: 20, checksum: checksum)
            let result = try bench.result(phase)
            #expect(result.messages == 20)
            #expect(!result.intact, "\(damage)")
        }
        #expect(bench.host.facts["bench.throughput.64.intact"] == "false")
        #expect(bench.host.facts["bench.throughput.64.runs"] == "2")
    }

    /// Source phases move more than the ring holds: the host stops at a full ring and goes on
    /// when the guest frees room (pending_send_sz).
    @Test func aSourcePhaseProducesWhatWasAskedForWithThePattern() throws {
        let bench = try BenchGuest()
        defer { bench.guest.close() }
        let size = 4096
        let count: UInt32 = 64
        bench.start(2, BenchPhase(mode: .source, messageSize: UInt32(size), count: count, flags: BenchPhase.verifyFlag))
        var checksum = BenchPattern.seed
        for sequence in 0..<count {
            let packet = try #require(bench.guest.receive(), "message \(sequence)")
            let message = Array(packet.payload.prefix(size))
            #expect(BenchHeader(parsing: message[...]) == BenchHeader(kind: .sourceData, phase: 2, sequence: sequence))
            #expect(message == bench.message(.sourceData, phase: 2, sequence: sequence, size: size), "message \(sequence)")
            checksum = BenchPattern.checksum(checksum, message[BenchHeader.size...])
        }
        bench.end(2, messages: UInt64(count), checksum: checksum)
        let result = try bench.result(2)
        #expect(result.messages == UInt64(count) && result.intact)
        #expect(bench.host.facts["bench.source.4096.intact"] == "true")
        #expect(bench.guest.hostSignals > 0, "the host signalled the guest")
    }

    @Test(arguments: [BenchMode.signalledRoundTrip, .polledRoundTrip])
    func pingsComeBackAsPongsWithTheirTransactionIDs(_ mode: BenchMode) throws {
        let bench = try BenchGuest()
        defer { bench.guest.close() }
        bench.start(4, BenchPhase(mode: mode, messageSize: 64, count: 50))
        for sequence in UInt32(0)..<50 {
            let ping = bench.message(.ping, phase: 4, sequence: sequence, size: 64)
            #expect(bench.guest.send(ping, transactionID: 0xABC0 + UInt64(sequence)))
            let pong = try #require(bench.guest.receive())
            #expect(pong.descriptor.transactionID == 0xABC0 + UInt64(sequence))
            var expected = ping
            BenchHeader(kind: .pong, phase: 4, sequence: sequence).store(into: &expected)
            #expect(Array(pong.payload.prefix(64)) == expected)
        }
        bench.end(4, messages: 50, p50: 7_000, p99: 9_000)
        let result = try bench.result(4)
        #expect(result.messages == 50 && result.intact)
        let prefix = "bench.\(mode.name).64."
        #expect(bench.host.facts[prefix + "p50_ns"] == "7000" && bench.host.facts[prefix + "p99_ns"] == "9000")
    }

    /// The raw-chain baseline: the guest's HvSignalEvent on relid|0x4000 rings the target
    /// processor's SINT 2, with no ring in the way.
    @Test func theRawChainRingsTheTargetProcessorsSINT() throws {
        let bench = try BenchGuest(targetVP: 1)
        let connection = BenchProtocol.rawChainConnectionID(childRelID: 3)
        let event = try #require(bench.host.eventConnections[connection], "the raw chain's event connection")
        bench.start(5, BenchPhase(mode: .rawChain, messageSize: 64, count: 3))
        for _ in 0..<3 { event.signal() }
        var rings = 0
        for _ in 0..<10_000 where rings == 0 {
            rings = bench.host.raised.count
            usleep(1000)
        }
        #expect(rings > 0)
        #expect(bench.host.raised.allSatisfy { $0.vp == 1 && $0.sint == UInt8(VMBusConstants.messageSINT) })
        bench.guest.close()
        #expect(bench.host.eventConnections[connection] == nil, "closing the channel unregisters the raw chain")
    }

    /// A guest that breaks the bench protocol loses the channel; the host hears the close.
    @Test(arguments: [
        ("malformed packet", [UInt8](repeating: 0, count: 8)),
        ("data outside a phase", BenchGuest.dataOutsideAPhase),
        ("phase end outside a phase", BenchGuest.phaseEndOutsideAPhase),
        ("bad phase parameters", BenchGuest.tinyMessages),
        ("unexpected kind", BenchGuest.unknownKind),
    ])
    func aGuestThatBreaksTheProtocolLosesTheChannel(_ name: String, _ packet: [UInt8]) throws {
        let bench = try BenchGuest()
        let connection = BenchProtocol.rawChainConnectionID(childRelID: 3)
        #expect(bench.host.eventConnections[connection] != nil)
        #expect(bench.guest.send(packet))
        let failure = bench.guest.waitForFailure()
        #expect(failure?.hasPrefix("device protocol violation: bench: ") == true, "\(name): \(String(describing: failure))")
        #expect(bench.host.eventConnections[connection] == nil, "the device heard the channel close")
        bench.guest.close()
    }

    @Test func aPacketThatIsNotInBandLosesTheChannel() throws {
        let bench = try BenchGuest()
        defer { bench.guest.close() }
        #expect(bench.guest.send(bench.packet(.ping, phase: 0), type: .completion))
        #expect(bench.guest.waitForFailure()?.contains("bench: malformed packet") == true)
    }

    /// A guest that scribbles over its ring loses the channel, not the parent.
    @Test(arguments: ["write index beyond the ring", "misaligned write index", "descriptor longer than the data"])
    func aCorruptRingClosesTheChannel(_ corruption: String) throws {
        let bench = try BenchGuest()
        let connection = BenchProtocol.rawChainConnectionID(childRelID: 3)
        switch corruption {
        case "write index beyond the ring":
            try bench.guest.overwrite(.writeIndex, of: .guestToHost, with: 0x10_0000)
        case "misaligned write index":
            try bench.guest.overwrite(.writeIndex, of: .guestToHost, with: 12)
        default:
            // A packet whose descriptor (len8 at byte 4) claims 4 KiB when 24 bytes were written.
            try bench.guest.writer.write(type: .inband, transactionID: 1, payload: [1, 2, 3, 4, 5, 6, 7, 8])
            try bench.guest.overwriteData(of: .guestToHost, at: 4, with: [0x00, 0x02])
            _ = bench.guest.writer.commit()
        }
        bench.guest.signalHost()
        let failure = bench.guest.waitForFailure()
        #expect(failure?.hasPrefix("corrupt ring") == true, "\(corruption): \(String(describing: failure))")
        #expect(bench.host.eventConnections[connection] == nil)
        bench.guest.close()
    }

    /// Seeded mutations of valid bench packets: each is served or closes the channel, never
    /// anything else.
    @Test func mutatedBenchPacketsAreServedOrCloseTheChannel() throws {
        var generator = SeededGenerator(seed: 0xBE_4C4)
        var bench = try BenchGuest()
        let valid: [[UInt8]] = [
            bench.packet(.phaseStart, phase: 1, body: BenchPhase(mode: .throughput, messageSize: 64, count: 4).bytes),
            bench.message(.data, phase: 1, sequence: 0, size: 64),
            bench.message(.ping, phase: 1, sequence: 0, size: 64),
            bench.packet(.phaseEnd, phase: 1, body: BenchPhaseEnd(messages: 1, checksum: 0, guestNanoseconds: 1,
                                                                  p50Nanoseconds: 0, p99Nanoseconds: 0).bytes),
            bench.packet(.phaseStart, phase: 2, body: BenchPhase(mode: .source, messageSize: 64, count: 2).bytes),
        ]
        var closed = 0
        for _ in 0..<200 {
            var packet = valid[Int.random(in: 0..<valid.count, using: &generator)]
            switch Int.random(in: 0..<3, using: &generator) {
            case 0: packet[Int.random(in: 0..<packet.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
            case 1: packet.removeLast(Int.random(in: 1..<packet.count, using: &generator))
            default: packet += generator.bytes(Int.random(in: 1...64, using: &generator))
            }
            #expect(bench.guest.send(packet))
            // A ping (from any phase) is answered; anything else the device rejects closes the channel.
            // (Source data carries its sequence number as transaction ID, never this one.)
            let probeID: UInt64 = 0xFFFF_FFFF_0000_9999
            let probe = bench.message(.ping, phase: 9, sequence: 0, size: 64)
            _ = bench.guest.send(probe, transactionID: probeID)
            var answered = false
            while let answer = bench.guest.receive(within: 10) {
                if answer.descriptor.transactionID == probeID { answered = true; break }
            }
            if !answered {
                #expect(bench.guest.failure?.hasPrefix("device protocol violation: bench:") == true,
                        "\(String(describing: bench.guest.failure))")
                closed += 1
                bench.guest.close()
                bench = try BenchGuest()
            }
        }
        #expect(closed > 0)
        bench.guest.close()
    }
}

extension BenchVSPChannelTests.BenchGuest {
    static func header(_ kind: BenchKind, _ phase: UInt32, body: [UInt8] = []) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: BenchHeader.size)
        BenchHeader(kind: kind, phase: phase).store(into: &bytes)
        return bytes + body
    }

    static let dataOutsideAPhase = header(.data, 1, body: [UInt8](repeating: 0, count: 48))
    static let phaseEndOutsideAPhase = header(.phaseEnd, 1, body: [UInt8](repeating: 0, count: BenchPhaseEnd.size))
    static let tinyMessages = header(.phaseStart, 1, body: BenchPhase(mode: .throughput, messageSize: 8, count: 1).bytes)
    static let unknownKind = header(BenchKind(rawValue: 99), 1)
}

@Suite("Bench VSP bounds")
struct BenchBoundsTests {
    /// The guest picks the sizes the bench names its facts after; one channel measures at most
    /// `BenchVSP.pointLimit` points and is closed past them, so the facts (which the root keeps)
    /// stay bounded. Before: every new size added facts.
    @Test func aGuestCannotGrowTheBenchsFactsWithoutBound() throws {
        let bench = try BenchVSPChannelTests.BenchGuest()
        defer { bench.guest.close() }
        var phase: UInt32 = 0
        for size in stride(from: 32, to: 32 + 8 * (BenchVSP.pointLimit + 40), by: 8) {
            guard bench.guest.failure == nil else { break }
            phase += 1
            bench.start(phase, BenchPhase(mode: .rawChain, messageSize: UInt32(size), count: 1))
            bench.end(phase, messages: 1)
            _ = bench.guest.receive(within: 2)
        }
        #expect(bench.guest.waitForFailure(within: 10)?.contains("more than \(BenchVSP.pointLimit) distinct phase points") == true)
        #expect(bench.host.facts.count <= BenchVSP.factLimit)
        #expect(bench.host.facts.keys.filter { $0.hasSuffix(".messages") }.count == BenchVSP.pointLimit)
    }

    /// The bound is the device's, not a channel's: a guest that closes the channel and opens it
    /// again gets no new allowance. Before: each session counted its own points.
    @Test func openingTheChannelAgainGivesNoNewAllowance() throws {
        let host = FakeVSPHost(partitionName: "bench")
        let device = BenchVSP(host: host)
        var phase: UInt32 = 0
        for round in 0..<2 {
            let bench = try BenchVSPChannelTests.BenchGuest(device: device, host: host)
            for _ in 0..<(BenchVSP.pointLimit * 3 / 4) where bench.guest.failure == nil {
                phase += 1
                bench.start(phase, BenchPhase(mode: .rawChain, messageSize: 32 + 8 * phase, count: 1))
                bench.end(phase, messages: 1)
                _ = bench.guest.receive(within: 2)
            }
            if round == 0 {
                #expect(bench.guest.failure == nil)
            } else {
                #expect(bench.guest.waitForFailure(within: 10)?.contains("more than \(BenchVSP.pointLimit) distinct phase points") == true)
            }
            bench.guest.close()
        }
        #expect(host.facts.keys.filter { $0.hasSuffix(".messages") }.count == BenchVSP.pointLimit)
    }
}
