import Glibc
import LinuxSupport
import NetworkProtocol
import NetworkVSP
import TestSupport
import Testing
import VMBusProtocol

/// A hostile guest gets an error answer or a dropped frame and a counter, never a trap.
@Suite struct HostileInputTests {
    static let mac = LinuxInitSequenceTests.mac
    static let peer = DataPathTests.peer

    @Test("a send-buffer section index past the buffer, or a section size over the section, fails the transmit")
    func badSection() {
        var guest = DataPathTests.readyGuest()
        let actions = guest.inbandSection(170, size: 100)
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .failure)])
        #expect(transmittedFrames(actions).isEmpty)
        _ = guest.inbandSection(0, size: 6145)
        _ = guest.inbandSection(0xFFFF_FFFE, size: 10)
        #expect(guest.vsp.counters.badSendSections == 3)
    }

    @Test("GPA ranges outside guest RAM or with an offset past the first page fail the transmit")
    func badRanges() {
        var guest = DataPathTests.readyGuest()
        let nvsp = NVSPMessage.sendRNDISPacket(channel: .data, sectionIndex: 0xFFFF_FFFF, sectionSize: 0).bytes()
        for range in [GPARange(byteCount: 100, byteOffset: 0, pfns: [0xFFFF_FFFF]),
                      GPARange(byteCount: 100, byteOffset: 5000, pfns: [1, 2]),
                      GPARange(byteCount: 4096, byteOffset: 4000, pfns: [UInt64.max / 4096 + 1, 2]),
                      GPARange(byteCount: 4096, byteOffset: 4000, pfns: [UInt64.max / 4096 - 1, 2])] {
            let actions = guest.raw(ringPacket(.gpaDirect, transactionID: 9, header: GPADirectHeader(ranges: [range]).bytes,
                                               payload: nvsp))
            #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .failure)])
        }
        #expect(guest.vsp.counters.badGuestRanges == 4)
        // A range count larger than the header: refused by the header parser.
        var header = GPADirectHeader(ranges: [GPARange(byteCount: 8, byteOffset: 0, pfns: [1])]).bytes
        header.replaceSubrange(4..<8, with: u32le(1000))
        let actions = guest.raw(ringPacket(.gpaDirect, transactionID: 10, header: header, payload: nvsp))
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .failure)])
        // Streams over the transmit limit.
        let huge = GPARange(byteCount: 300 * 1024, byteOffset: 0, pfns: (0..<75).map { UInt64($0) })
        _ = guest.raw(ringPacket(.gpaDirect, transactionID: 11, header: GPADirectHeader(ranges: [huge]).bytes, payload: nvsp))
        #expect(guest.vsp.counters.badGuestRanges == 6)
    }

    @Test("RNDIS lengths and offsets that do not add up stop the stream; earlier messages still count")
    func badRNDIS() {
        var guest = DataPathTests.readyGuest()
        let good = RNDISPacket(data: ethernetFrame(from: Self.mac, to: Self.peer)).bytes(alignment: 8)
        var bad = RNDISPacket(data: ethernetFrame(from: Self.mac, to: Self.peer)).bytes()
        bad.replaceSubrange(8..<12, with: u32le(0xFFFF_FFF0))  // data_offset far away
        let actions = guest.gpaDirect(stream: good + bad, channelType: .data)
        #expect(transmittedFrames(actions).count == 1)
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .failure)])
        var zeroLength = good
        zeroLength.replaceSubrange(4..<8, with: u32le(0))
        _ = guest.gpaDirect(stream: zeroLength, channelType: .data)
        #expect(guest.vsp.counters.badRNDISMessages == 2)
    }

    @Test("oversized frames, runts, and frames before RNDIS INIT are dropped and counted")
    func badFrames() {
        var guest = DataPathTests.readyGuest()
        let oversized = ethernetFrame(from: Self.mac, to: Self.peer, count: 1600)
        let runt: [UInt8] = [1, 2, 3, 4]
        let actions = guest.gpaDirect(stream: RNDISPacket(data: oversized).bytes(alignment: 8) + RNDISPacket(data: runt).bytes(),
                                      channelType: .data)
        #expect(transmittedFrames(actions).isEmpty)
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .success)])
        #expect(guest.vsp.counters.transmitDrops == 2)

        var early = NetvscTestGuest(configuration: LinuxInitSequenceTests.configuration())
        _ = LinuxInitSequenceTests.negotiate(&early, expect: .v61)
        let beforeInit = early.gpaDirect(stream: RNDISPacket(data: ethernetFrame(from: Self.mac, to: Self.peer)).bytes(),
                                         channelType: .data)
        #expect(transmittedFrames(beforeInit).isEmpty)
        #expect(early.vsp.counters.transmitDrops == 1)
    }

    @Test("buffers: unknown GPADL, overlapping pages, a second handover, and buffers before INIT are refused")
    func badBuffers() {
        var guest = NetvscTestGuest(configuration: LinuxInitSequenceTests.configuration())
        #expect(completions(guest.inband(.sendReceiveBuffer(gpadl: NetvscTestGuest.receiveGPADL, id: 0xCAFE))).map(\.message)
                == [.sendReceiveBufferComplete(status: .failure, sections: [])], "before INIT")
        _ = guest.inband(.initialize(minimum: .v61, maximum: .v61))
        #expect(completions(guest.inband(.sendReceiveBuffer(gpadl: 0x9999, id: 0xCAFE))).first?.message
                == .sendReceiveBufferComplete(status: .failure, sections: []))
        _ = guest.inband(.sendReceiveBuffer(gpadl: NetvscTestGuest.receiveGPADL, id: 0xCAFE))
        #expect(completions(guest.inband(.sendReceiveBuffer(gpadl: NetvscTestGuest.receiveGPADL, id: 0xCAFE))).first?.message
                == .sendReceiveBufferComplete(status: .failure, sections: []), "second handover")
        guest.gpadls.table[77] = GuestBufferDescriptor(byteOffset: 0, byteCount: 8192,
                                                       pageNumbers: [guest.receivePages[3], guest.receivePages[4]])
        #expect(completions(guest.inband(.sendSendBuffer(gpadl: 77, id: 0))).first?.message
                == .sendSendBufferComplete(status: .failure, sectionSize: 0), "overlaps the receive buffer")
        #expect(completions(guest.inband(.sendSendBuffer(gpadl: NetvscTestGuest.receiveGPADL, id: 0))).first?.message
                == .sendSendBufferComplete(status: .failure, sectionSize: 0), "the receive buffer itself")
        guest.gpadls.table[78] = GuestBufferDescriptor(byteOffset: 0, byteCount: 100, pageNumbers: [])
        #expect(completions(guest.inband(.sendSendBuffer(gpadl: 78, id: 0))).first?.message
                == .sendSendBufferComplete(status: .failure, sectionSize: 0), "pages do not cover the size")
        #expect(guest.vsp.counters.refusedBuffers == 6)
        // A re-INIT once buffers exist is refused.
        #expect(completions(guest.inband(.initialize(minimum: .v5, maximum: .v5))).first.map {
            if case .initializeComplete(_, _, .failure) = $0.message { true } else { false } } == true)
    }

    @Test("messages that belong to the primary channel are ignored on a sub-channel; unknown packet types are counted")
    func wrongChannelAndType() {
        var guest = DataPathTests.readyGuest()
        guest.vsp.channelOpened(1)
        #expect(guest.inband(.initialize(minimum: .v61, maximum: .v61), channel: 1).isEmpty)
        #expect(guest.vsp.counters.badNVSPMessages == 1)
        #expect(guest.raw(ringPacket(PacketType(rawValue: 4), transactionID: 1, payload: [1, 2, 3, 4])).isEmpty)
        // A guest sending transfer-page packets of its own, with ranges anywhere: not netvsc's.
        let bogus = TransferPageHeader(pageSetID: 0xCAFE, ranges: [TransferPageRange(byteCount: 0xFFFF_FFFF,
                                                                                   byteOffset: 0xFFFF_FFF0)])
        #expect(guest.raw(ringPacket(.transferPages, transactionID: 3, header: bogus.bytes,
                                     payload: NVSPMessage.sendRNDISPacket(channel: .data, sectionIndex: 0xFFFF_FFFF,
                                                                          sectionSize: 0).bytes())).isEmpty)
        #expect(guest.vsp.counters.unexpectedPacketTypes == 2)
        // NVSP that does not parse.
        #expect(guest.raw(ringPacket(.inband, transactionID: 2, payload: [107, 0])).isEmpty)
        #expect(guest.vsp.counters.badNVSPMessages == 2)
    }

    @Test("unknown and malformed OIDs answer NOT_SUPPORTED / INVALID_DATA, never crash")
    func badOIDs() {
        var guest = DataPathTests.readyGuest()
        let sets: [(RNDISObjectID, [UInt8], RNDISStatus)] = [
            (.currentPacketFilter, [1], .invalidLength),
            (.tcpOffloadParameters, [0x12, 0, 0], .invalidData),
            (.rndisConfigParameter, [UInt8](repeating: 0xFF, count: 20), .invalidData),
            (.receiveScaleParameters, [], .notSupported),
            (.multicastList, [1, 2, 3], .invalidLength),
            (RNDISObjectID(rawValue: 0x1234), [], .notSupported),
        ]
        for (oid, information, status) in sets {
            let id = guest.requestID()
            #expect(controlResponses(guest.control(.set(RNDISRequest(requestID: id, oid: oid, information: information))),
                                     guest: &guest) == [.setComplete(requestID: id, status: status)])
        }
    }

    @Test("a seeded fuzz loop over NVSP and RNDIS keeps every promise (short form of NetworkVSPFuzzer)",
          arguments: [1, 2, 3, 0xC0FFEE] as [UInt64])
    func fuzz(seed: UInt64) {
        let report = NetworkVSPFuzzer.run(seed: seed, iterations: 1500)
        #expect(report.violations.isEmpty, "\(report.violations.prefix(5))")
        #expect(report.packets > 500)
        #expect(report.transmittedFrames > 0, "the generator reaches the data path")
        #expect(report.deliveredFrames > 0)
        #expect(report.counters.badRNDISMessages > 0 && report.counters.badNVSPMessages > 0, "and the error paths")
    }

    @Test("protocol parsers are total over random and mutated bytes")
    func parserFuzz() {
        var random = SeededGenerator(seed: 42)
        let seeds: [[UInt8]] = [
            RNDISPacket(data: [UInt8](repeating: 1, count: 80), perPacketInfo: FrameOffload(
                checksum: .init(transport: .udp, transportOffset: 34, isIPv6: false), vlan: VLANInfo(rawValue: 3),
                hash: 9).transmitPerPacketInfo).bytes(),
            RNDISMessage.query(RNDISRequest(requestID: 1, oid: .friendlyName, information: [1, 2, 3])).bytes,
            RNDISMessage.indicateStatus(status: .linkSpeedChange, buffer: u32le(5)).bytes,
            NVSPMessage.sendReceiveBufferComplete(status: .success, sections: [
                ReceiveBufferSection(offset: 0, subAllocationSize: 1, subAllocationCount: 2, endOffset: 3)]).bytes(),
            NVSPMessage.sendIndirectionTable(entries: [1, 2, 3]).bytes(),
            NDISOffload.checksumAndLargeSend(maximumLargeSend: 1000).bytes, RSSParameters(
                flags: 0, hashInformation: 0, indirectionTable: [1, 2], key: [3]).bytes,
            RNDISConfigParameter.networkAddress(.broadcast).bytes, NDISOffloadParameters().bytes,
        ]
        for iteration in 0..<20_000 {
            var bytes = seeds[iteration % seeds.count]
            if iteration % 3 == 0 {
                bytes = random.bytes(Int.random(in: 0...200, using: &random))
            } else {
                for _ in 0..<Int.random(in: 1...6, using: &random) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
                if Bool.random(using: &random) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random))) }
            }
            _ = try? RNDISMessage.parse(bytes)
            _ = try? NVSPMessage(parsing: bytes, completion: Bool.random(using: &random))
            _ = try? NDISOffload(parsing: bytes)
            _ = try? NDISOffloadParameters(parsing: bytes)
            _ = try? RSSParameters(parsing: bytes)
            _ = try? RSSCapabilities(parsing: bytes)
            _ = try? RNDISConfigParameter(parsing: bytes)
            if let (message, length) = try? RNDISMessage.parse(bytes) {
                #expect(length <= bytes.count)
                #expect(message.type.rawValue == bytes.littleEndianU32(at: 0))
            }
        }
    }
}

extension Array where Element == UInt8 {
    func littleEndianU32(at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[offset + $1]) << (8 * UInt32($1)) }
    }
}

/// The long form of the VSP fuzz loop: `HV_NETWORK_FUZZ_ITERATIONS=N swift test --filter
/// NetworkFuzzLongForm` runs N steps for each of 16 seeds (`HV_NETWORK_FUZZ_SEED` picks the first).
@Suite struct NetworkFuzzLongForm {
    static let iterations: Int? = getenv("HV_NETWORK_FUZZ_ITERATIONS").flatMap { Int(String(cString: $0)) }
    static let firstSeed: UInt64 = getenv("HV_NETWORK_FUZZ_SEED").flatMap { UInt64(String(cString: $0)) } ?? 1000

    @Test("long fuzz run of NetworkVSPFuzzer", .enabled(if: iterations != nil, "set HV_NETWORK_FUZZ_ITERATIONS to run"))
    func longRun() {
        let start = MonotonicClock.nanoseconds()
        var steps = 0
        var packets = 0
        for seed in Self.firstSeed..<(Self.firstSeed + 16) {
            let report = NetworkVSPFuzzer.run(seed: seed, iterations: Self.iterations ?? 0)
            #expect(report.violations.isEmpty, "seed \(seed): \(report.violations.prefix(5))")
            steps += report.steps
            packets += report.packets
        }
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        print("network fuzz: \(steps) steps (\(packets) guest packets) over 16 seeds in \(Int(seconds)) s, "
              + "\(Int(Double(steps) / seconds)) steps/s")
    }
}
