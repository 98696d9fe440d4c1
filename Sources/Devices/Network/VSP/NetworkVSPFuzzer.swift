import FuzzSupport
import HyperV
import NetworkProtocol
import VMBusProtocol

/// A seeded fuzzer for the network VSP: generated NVSP and RNDIS traffic (valid messages with
/// random fields, Linux's init sequence, batched and partial-copy transmits) and mutations of it
/// (bit flips, truncation, corrupted lengths, offsets and indices), plus receive deliveries,
/// completions, link changes, buffer revocations and channel re-opens, all against flat guest
/// memory. It checks the VSP's promises after every step: no trap, every packet for the guest
/// within netvsc's limits, completions only for requests that asked, receive ranges inside the
/// buffer and never larger than a sub-allocation.
///
/// The unit tests run it briefly; `run(seed:iterations:)` is the entry point for long runs.
public struct NetworkVSPFuzzer {
    /// What a run did and any broken promise.
    public struct Report: Sendable {
        public var steps = 0
        public var packets = 0
        public var transmittedFrames = 0
        public var deliveredFrames = 0
        /// Broken promises, empty when the VSP behaved.
        public var violations: [String] = []
        public var counters = NetworkVSPCounters()
    }

    /// The fuzzers' seeded generator, so a seed replays exactly.
    public typealias Generator = FuzzRandom

    private final class Table: GPADLTable {
        var table: [UInt32: GuestBufferDescriptor] = [:]
        func buffer(forGPADL handle: UInt32) -> GuestBufferDescriptor? { table[handle] }
    }

    static let pageSize = 4096
    static let receivePages = 16
    static let sendPages = 16
    static let scratchPages = 40

    /// Runs `iterations` steps from `seed`.
    public static func run(seed: UInt64, iterations: Int) -> Report {
        var random = Generator(seed: seed)
        var report = Report()
        let memory = FlatGuestMemory(size: (receivePages + sendPages + scratchPages) * pageSize)
        var configuration = NetworkVSPConfiguration(macAddress: MACAddress(0x00, 0x15, 0x5D, 0, 0, 1))
        configuration.maximumSubchannels = 2
        var vsp = NetworkVSP(configuration: configuration, memory: memory)
        let table = Table()
        let receiveGPADL: UInt32 = 10
        let sendGPADL: UInt32 = 11
        let overlapGPADL: UInt32 = 12
        table.table[receiveGPADL] = GuestBufferDescriptor(
            byteOffset: 0, byteCount: UInt32(receivePages * pageSize), pageNumbers: (0..<receivePages).reversed().map { UInt64($0) })
        table.table[sendGPADL] = GuestBufferDescriptor(
            byteOffset: 0, byteCount: UInt32(sendPages * pageSize),
            pageNumbers: (0..<sendPages).map { UInt64(receivePages + $0) })
        table.table[overlapGPADL] = GuestBufferDescriptor(byteOffset: 0, byteCount: UInt32(2 * pageSize), pageNumbers: [3, 4])
        vsp.channelOpened(0)
        var nextID: UInt64 = 1
        var corpus: [(PacketDescriptor, [UInt8])] = []
        var receiveIDs: [(Int, UInt64)] = []

        func check(_ actions: [NetworkVSPAction], request: PacketDescriptor?, report: inout Report) {
            for action in actions {
                switch action {
                case .send(let channel, let packet):
                    let size = PacketDescriptor.size + packet.header.count + packet.payload.count
                    if size > NetvscReceivePacket.maximumGuestPacketSize {
                        report.violations.append("packet of \(size) bytes exceeds NETVSC_MAX_PKT_SIZE")
                    }
                    if packet.type == .completion {
                        guard let request, request.flags.contains(.completionRequested),
                            request.transactionID == packet.transactionID
                        else {
                            report.violations.append("completion \(packet.transactionID) nobody asked for")
                            continue
                        }
                        if packet.payload.count < 8 { report.violations.append("completion shorter than 8 bytes") }
                    }
                    if packet.type == .transferPages {
                        guard let header = try? TransferPageHeader(parsing: packet.header, from: 0, to: packet.header.count),
                            let layout = vsp.receiveLayout
                        else {
                            report.violations.append("unparseable transfer-page header")
                            continue
                        }
                        for range in header.ranges {
                            if Int(range.byteCount) > layout.subAllocationSize
                                || Int(range.byteOffset) + Int(range.byteCount) > layout.subAllocationSize * layout.count {
                                report.violations.append("receive range outside its sub-allocation")
                            }
                        }
                        if packet.transactionID == 0 || packet.transactionID >= UInt64.max - 3 {
                            report.violations.append("receive packet uses a reserved transaction ID")
                        }
                        receiveIDs.append((channel, packet.transactionID))
                    }
                case .transmit(_, let frame):
                    report.transmittedFrames += 1
                    if frame.bytes.count > NetworkFrame.largestSegmentedFrameSize {
                        report.violations.append("oversized frame reached the switch")
                    }
                case .offerSubchannels(let count):
                    if count > configuration.maximumSubchannels { report.violations.append("offered too many sub-channels") }
                case .packetFilterChanged, .macAddressChanged, .multicastListChanged:
                    break
                }
            }
            for channel in 0..<vsp.channelCount {
                if let layout = vsp.receiveLayout, vsp.receivePacketsInFlight(on: channel) > layout.count {
                    report.violations.append("more receive packets in flight than sub-allocations")
                }
            }
        }

        func packet(_ type: PacketType, flags: PacketFlags, header: [UInt8], payload: [UInt8]) -> (PacketDescriptor, [UInt8]) {
            let offset = PacketDescriptor.size + header.count
            let total = (offset + payload.count + 7) / 8 * 8
            defer { nextID += 1 }
            let descriptor = PacketDescriptor(type: type, dataOffset8: UInt16(offset / 8), length8: UInt16(total / 8),
                                              flags: flags, transactionID: nextID)
            var bytes = descriptor.bytes + header + payload
            bytes += [UInt8](repeating: 0, count: total - bytes.count)
            return (descriptor, bytes)
        }

        func randomRNDIS(_ random: inout Generator) -> [UInt8] {
            let frame = random.bytes(Int.random(in: 0...1600, using: &random))
            switch Int.random(in: 0..<10, using: &random) {
            case 0: return RNDISMessage.initialize(requestID: 1, majorVersion: 1, minorVersion: 0, maximumTransferSize: 0x4000).bytes
            case 1:
                let oids: [RNDISObjectID] = [.maximumFrameSize, .permanentAddress, .friendlyName, .tcpOffloadHardwareCapabilities,
                                             .mediaConnectStatus, .linkSpeed, .receiveScaleCapabilities, .supportedList,
                                             RNDISObjectID(rawValue: UInt32.random(in: 0...UInt32.max, using: &random))]
                return RNDISMessage.query(RNDISRequest(requestID: 2, oid: oids[Int.random(in: 0..<oids.count, using: &random)],
                                                       information: random.bytes(Int.random(in: 0...160, using: &random)))).bytes
            case 2:
                let sets: [(RNDISObjectID, [UInt8])] = [
                    (.currentPacketFilter, [0x0D, 0, 0, 0]), (.tcpOffloadParameters, NDISOffloadParameters().bytes),
                    (.rndisConfigParameter, RNDISConfigParameter.networkAddress(MACAddress(rawValue: random.next() & ~(1 << 40))).bytes),
                    (.receiveScaleParameters, RSSParameters(flags: 0, hashInformation: 1, indirectionTable: [0, 1, 2, 5],
                                                            key: random.bytes(40)).bytes),
                    (.multicastList, random.bytes(12)), (RNDISObjectID(rawValue: UInt32.random(in: 0...UInt32.max, using: &random)), random.bytes(8)),
                ]
                let (oid, information) = sets[Int.random(in: 0..<sets.count, using: &random)]
                return RNDISMessage.set(RNDISRequest(requestID: 3, oid: oid, information: information)).bytes
            case 3: return RNDISMessage.keepalive(requestID: 4).bytes
            case 4: return RNDISMessage.reset.bytes
            case 5: return RNDISMessage.halt(requestID: 5).bytes
            default:
                var offload = FrameOffload()
                if Bool.random(using: &random) {
                    offload.checksum = .init(transport: .tcp, transportOffset: Int.random(in: 0...1023, using: &random), isIPv6: false)
                }
                if Bool.random(using: &random) {
                    offload.segmentation = .init(maximumSegmentSize: Int.random(in: 0...9000, using: &random),
                                                 transportOffset: 34, isIPv6: Bool.random(using: &random))
                }
                if Bool.random(using: &random) { offload.vlan = VLANInfo(rawValue: UInt32.random(in: 0...0xFFFF, using: &random)) }
                return RNDISPacket(data: frame, perPacketInfo: offload.transmitPerPacketInfo).bytes(alignment: 8)
            }
        }

        func mutate(_ bytes: [UInt8], _ random: inout Generator) -> [UInt8] {
            var bytes = bytes
            guard !bytes.isEmpty else { return random.bytes(Int.random(in: 0...64, using: &random)) }
            switch Int.random(in: 0..<5, using: &random) {
            case 0:
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &random)
                }
            case 1: bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &random)))
            case 2:
                // Corrupt an aligned 32-bit field with an extreme value.
                let field = Int.random(in: 0..<max(bytes.count / 4, 1), using: &random) * 4
                let extremes: [UInt32] = [0, 1, 0xFFFF_FFFF, 0x8000_0000, 0xFFFF, UInt32(bytes.count), UInt32(bytes.count) + 1]
                let value = extremes[Int.random(in: 0..<extremes.count, using: &random)]
                for index in 0..<4 where field + index < bytes.count { bytes[field + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
            case 3: bytes += random.bytes(Int.random(in: 1...64, using: &random))
            default: bytes = random.bytes(bytes.count)
            }
            return bytes
        }

        // Linux's own opening, so the deeper states are reached.
        var opening: [NVSPMessage] = [
            .initialize(minimum: .v61, maximum: .v61), .sendNDISConfig(mtu: 1514, capabilities: [.ieee8021q]),
            .sendNDISVersion(major: 6, minor: 30), .sendReceiveBuffer(gpadl: receiveGPADL, id: 0xCAFE),
            .sendSendBuffer(gpadl: sendGPADL, id: 0),
        ]
        for step in 0..<iterations {
            report.steps += 1
            let choice = Int.random(in: 0..<100, using: &random)
            var actions: [NetworkVSPAction] = []
            var request: PacketDescriptor?
            if !opening.isEmpty {
                let message = opening.removeFirst()
                let built = packet(.inband, flags: .completionRequested, header: [], payload: message.bytes())
                corpus.append(built)
                request = built.0
                actions = vsp.handle(built.1, descriptor: built.0, on: 0, gpadls: table)
                report.packets += 1
            } else if choice < 25 {
                // An RNDIS stream over GPA ranges, sometimes starting in a send section (shape C).
                var stream: [UInt8] = []
                for _ in 0..<Int.random(in: 1...3, using: &random) { stream += randomRNDIS(&random) }
                if Int.random(in: 0..<4, using: &random) == 0 { stream = mutate(stream, &random) }
                var section = NetvscConstants.noSection
                var sectionSize: UInt32 = 0
                if Bool.random(using: &random), stream.count > 8 {
                    let split = Int.random(in: 0...min(stream.count, 6144), using: &random)
                    section = UInt32.random(in: 0...20, using: &random)
                    sectionSize = UInt32(split)
                    let base = (receivePages * pageSize) + Int(section % 16) * 6144 % (sendPages * pageSize - 6144)
                    memory.store(Array(stream.prefix(split)), at: UInt64(base))
                    stream = Array(stream.dropFirst(split))
                }
                var ranges: [GPARange] = []
                var address = UInt64((receivePages + sendPages) * pageSize) + UInt64.random(in: 0...4095, using: &random)
                var offset = 0
                while offset < stream.count {
                    let count = min(Int.random(in: 0...3000, using: &random), stream.count - offset)
                    if address + UInt64(count) + 4096 > UInt64(memory.bytes.count) { break }
                    memory.store(Array(stream[offset..<(offset + count)]), at: address)
                    let within = UInt32(address % UInt64(pageSize))
                    let pages = VMBusConstants.pageCount(byteOffset: within, byteCount: UInt32(count))
                    var pfns = (0..<pages).map { address / UInt64(pageSize) + UInt64($0) }
                    if Int.random(in: 0..<20, using: &random) == 0 { pfns = pfns.map { $0 &+ 1_000_000 } }  // outside RAM
                    ranges.append(GPARange(byteCount: UInt32(count), byteOffset: within, pfns: pfns))
                    address += UInt64(count) + 8
                    offset += count
                }
                let message = NVSPMessage.sendRNDISPacket(channel: Bool.random(using: &random) ? .data : .control,
                                                          sectionIndex: section, sectionSize: sectionSize)
                let built = packet(ranges.isEmpty ? .inband : .gpaDirect, flags: .completionRequested,
                                   header: ranges.isEmpty ? [] : GPADirectHeader(ranges: ranges).bytes, payload: message.bytes())
                if corpus.count < 64 { corpus.append(built) } else { corpus[Int.random(in: 0..<64, using: &random)] = built }
                request = built.0
                let channel = Int.random(in: 0..<4, using: &random) == 0 ? Int.random(in: 0...3, using: &random) : 0
                actions = vsp.handle(built.1, descriptor: built.0, on: channel, gpadls: table)
                report.packets += 1
            } else if choice < 45, !corpus.isEmpty {
                // A mutated earlier packet, descriptor re-parsed as the ring reader would.
                let original = corpus[Int.random(in: 0..<corpus.count, using: &random)]
                let bytes = mutate(original.1, &random)
                if let descriptor = try? PacketDescriptor(parsing: bytes) {
                    request = descriptor
                    actions = vsp.handle(bytes, descriptor: descriptor, on: Int.random(in: 0...2, using: &random), gpadls: table)
                    report.packets += 1
                }
            } else if choice < 55 {
                // A random NVSP message of a known type with random fields.
                let types: [UInt32] = [1, 2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 125, 128, 129, 133, 134, 0, 9999]
                var payload = random.bytes(40)
                let type = types[Int.random(in: 0..<types.count, using: &random)]
                for index in 0..<4 { payload[index] = UInt8(truncatingIfNeeded: type >> (8 * index)) }
                if type == 101 || type == 104 {
                    let handles: [UInt32] = [receiveGPADL, sendGPADL, overlapGPADL, 99]
                    let handle = handles[Int.random(in: 0..<handles.count, using: &random)]
                    for index in 0..<4 { payload[4 + index] = UInt8(truncatingIfNeeded: handle >> (8 * index)) }
                }
                let flags: PacketFlags = Bool.random(using: &random) ? .completionRequested : []
                let built = packet(.inband, flags: flags, header: [], payload: payload)
                request = built.0
                actions = vsp.handle(built.1, descriptor: built.0, on: 0, gpadls: table)
                report.packets += 1
            } else if choice < 75 {
                let frames = (0..<Int.random(in: 1...8, using: &random)).map { _ in
                    NetworkFrame(bytes: random.bytes(Int.random(in: 0...1700, using: &random)),
                                 offload: FrameOffload(vlan: Bool.random(using: &random) ? VLANInfo(rawValue: 5) : nil,
                                                       hash: UInt32.random(in: 0...UInt32.max, using: &random)))
                }
                let (consumed, delivered) = vsp.deliver(frames, on: Int.random(in: 0...2, using: &random))
                if consumed > frames.count { report.violations.append("consumed more frames than offered") }
                report.deliveredFrames += consumed
                actions = delivered
            } else if choice < 92 {
                // Complete a receive packet (sometimes a wrong one, sometimes twice).
                if !receiveIDs.isEmpty {
                    let index = Int.random(in: 0..<receiveIDs.count, using: &random)
                    var (channel, id) = receiveIDs[index]
                    if Int.random(in: 0..<4, using: &random) != 0 { receiveIDs.remove(at: index) }
                    if Int.random(in: 0..<10, using: &random) == 0 { id &+= 1 }
                    if Int.random(in: 0..<10, using: &random) == 0 { channel = (channel + 1) % 3 }
                    let payload = NVSPMessage.sendRNDISPacketComplete(status: Bool.random(using: &random) ? .success : .failure)
                        .bytes(minimumSize: 8)
                    let built = packet(.completion, flags: [], header: [], payload: payload)
                    let completion = PacketDescriptor(type: .completion, dataOffset8: built.0.dataOffset8, length8: built.0.length8,
                                                      flags: [], transactionID: id)
                    var bytes = built.1
                    completion.store(into: &bytes, at: 0)
                    actions = vsp.handle(bytes, descriptor: completion, on: channel, gpadls: table)
                }
            } else if choice < 95 {
                actions = vsp.setLinkConnected(Bool.random(using: &random))
            } else if choice < 97 {
                vsp.channelOpened(Int.random(in: 1...2, using: &random))
            } else if choice < 98 {
                vsp.gpadlTornDown(Bool.random(using: &random) ? receiveGPADL : sendGPADL)
                receiveIDs.removeAll()
            } else {
                // Close and reopen the primary channel; Linux then re-runs its opening.
                vsp.channelClosed(0)
                vsp.channelOpened(0)
                receiveIDs.removeAll()
                opening = [.initialize(minimum: .v5, maximum: .v5), .sendReceiveBuffer(gpadl: receiveGPADL, id: 0xCAFE),
                           .sendSendBuffer(gpadl: sendGPADL, id: 0)]
            }
            check(actions, request: request, report: &report)
            if report.violations.count > 20 {
                report.violations.append("stopped at step \(step)")
                break
            }
        }
        report.counters = vsp.counters
        return report
    }
}
