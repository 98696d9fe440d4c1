import NetworkProtocol
import NetworkVSP
import Testing
import VMBusProtocol

/// Transmit shapes A/B/C (`netvsc_send`), receive sub-allocations and their recycling
/// (`netvsc_receive`, `enq_receive_complete`), per-channel completions (`netvsc_send_completion`), link
/// indications.
@Suite struct DataPathTests {
    static let mac = LinuxInitSequenceTests.mac
    static let peer = MACAddress(0x00, 0x15, 0x5D, 0x99, 0x88, 0x77)

    /// A guest through its whole bring-up.
    static func readyGuest(subchannels: Int = 0, receivePages: Int = 64) -> NetvscTestGuest {
        var guest = NetvscTestGuest(configuration: LinuxInitSequenceTests.configuration(subchannels: subchannels),
                                    receivePageCount: receivePages)
        let version = LinuxInitSequenceTests.negotiate(&guest, expect: .v61) ?? .v61
        LinuxInitSequenceTests.rndisBringUp(&guest, version: version)
        return guest
    }

    static func packet(_ frame: [UInt8], _ infos: [PerPacketInfo] = [], alignment: Int = 1) -> [UInt8] {
        RNDISPacket(data: frame, perPacketInfo: infos).bytes(alignment: alignment)
    }

    @Test("shape A: one INBAND message naming a section with several batched, padded PACKETs")
    func shapeA() {
        var guest = Self.readyGuest()
        let frames = (0..<5).map { ethernetFrame(from: Self.mac, to: Self.peer, count: 60 + $0 * 7, fill: UInt8($0)) }
        var section: [UInt8] = []
        for (index, frame) in frames.enumerated() {
            section += Self.packet(frame, [PerPacketInfo(type: .hashValue, value: UInt32(index))],
                                   alignment: index == frames.count - 1 ? 1 : 8)
        }
        guest.fillSection(42, with: section)
        let actions = guest.inbandSection(42, size: UInt32(section.count))
        #expect(transmittedFrames(actions).map(\.bytes) == frames)
        #expect(transmittedFrames(actions).map(\.offload.hash) == (0..<5).map { UInt32($0) })
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .success)])
        #expect(guest.vsp.counters.transmittedFrames == 5)
    }

    @Test("packets of changing lengths carry only their own frames (the transmit stream's storage is reused)")
    func shortAfterLong() {
        var guest = Self.readyGuest()
        let long = (0..<3).map { ethernetFrame(from: Self.mac, to: Self.peer, count: 1400, fill: UInt8(0x10 + $0)) }
        var section: [UInt8] = []
        for frame in long { section += Self.packet(frame, alignment: 8) }
        let short = ethernetFrame(from: Self.mac, to: Self.peer, count: 60, fill: 0xAB)
        let packet = Self.packet(short)
        guest.fillSection(3, with: section)
        guest.fillSection(4, with: packet)
        // Short, long (the stream grows), short (it shrinks), long again.
        for (index, frames, size) in [(4, [short], packet.count), (3, long, section.count), (4, [short], packet.count),
                                      (3, long, section.count)] {
            let actions = guest.inbandSection(UInt32(index), size: UInt32(size))
            #expect(transmittedFrames(actions).map(\.bytes) == frames)
            #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .success)])
        }
        #expect(guest.vsp.counters.transmittedFrames == 8 && guest.vsp.counters.badRNDISMessages == 0)
    }

    @Test("shape B: GPA-direct without a section, the message spread over several ranges with a zero-length one")
    func shapeB() {
        var guest = Self.readyGuest()
        var frame = ethernetFrame(from: Self.mac, to: Self.peer, count: 1514)
        frame[100] = 0x42
        let lso = LargeSendInfo.version2(maximumSegmentSize: 1448, transportHeaderOffset: 34, ipv6: false)
        let stream = Self.packet(frame, [PerPacketInfo(type: .largeSend, value: lso.rawValue),
                                         PerPacketInfo(type: .ieee8021Q, value: VLANInfo(priority: 0, vlanID: 7).rawValue)])
        let actions = guest.gpaDirect(stream: stream, channelType: .data, pieceSize: 700)
        let sent = transmittedFrames(actions)
        #expect(sent.map(\.bytes) == [frame])
        #expect(sent.first?.offload.segmentation == FrameOffload.SegmentationRequest(
            maximumSegmentSize: 1448, transportOffset: 34, isIPv6: false))
        #expect(sent.first?.offload.vlan?.vlanID == 7)
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .success)])
    }

    @Test("shape C: section holds earlier PACKETs and this one's header; its frame continues in the GPA ranges")
    func shapeC() {
        var guest = Self.readyGuest()
        let early = ethernetFrame(from: Self.mac, to: Self.peer, count: 100, fill: 1)
        let late = ethernetFrame(from: Self.mac, to: Self.peer, count: 1400, fill: 2)
        let lateMessage = Self.packet(late)
        let headerCount = lateMessage.count - late.count
        let sectionBytes = Self.packet(early, alignment: 8) + Array(lateMessage.prefix(headerCount))
        guest.fillSection(3, with: sectionBytes)
        let actions = guest.gpaDirect(stream: late, channelType: .data, section: 3,
                                      sectionSize: UInt32(sectionBytes.count), pieceSize: 512)
        #expect(transmittedFrames(actions).map(\.bytes) == [early, late])
        #expect(completions(actions).map(\.message) == [.sendRNDISPacketComplete(status: .success)])
    }

    @Test("a transmit is completed on the channel it came from, with its transaction ID (netvsc's per-channel request table)")
    func completionOnSameChannel() {
        var guest = Self.readyGuest(subchannels: 2, receivePages: 128)
        _ = guest.inband(.subchannelRequest(operation: 1, count: 2))
        guest.vsp.channelOpened(1)
        guest.vsp.channelOpened(2)
        let frame = ethernetFrame(from: Self.mac, to: Self.peer)
        let actions = guest.gpaDirect(stream: Self.packet(frame), channelType: .data, channel: 2, transactionID: 0x55)
        #expect(completions(actions).map { ($0.channel, $0.id) }.elementsEqual([(2, UInt64(0x55))]) { $0 == $1 })
        guard case .transmit(let channel, _)? = actions.first(where: { if case .transmit = $0 { true } else { false } })
        else { Issue.record("no transmit"); return }
        #expect(channel == 2)
    }

    @Test("receive: one range per frame in its own sub-allocation, RNDIS PACKET with the receive PPIs")
    func receive() throws {
        var guest = Self.readyGuest()
        let frames = (0..<3).map { NetworkFrame(
            bytes: ethernetFrame(from: Self.peer, to: Self.mac, count: 64 + $0, fill: UInt8($0)),
            offload: FrameOffload(vlan: VLANInfo(priority: 1, vlanID: 9),
                                  receiveChecksum: .init(transportValid: true, ipv4HeaderValid: true))) }
        let (consumed, actions) = guest.vsp.deliver(frames, on: 0)
        #expect(consumed == 3)
        let packets = receivedPackets(actions, guest: guest)
        #expect(packets.count == 1)
        guard let packet = packets.first else { return }
        #expect(packet.header.pageSetID == 0xCAFE && !packet.header.senderOwns)
        #expect(packet.nvsp == .sendRNDISPacket(channel: .data, sectionIndex: 0xFFFF_FFFF, sectionSize: 0))
        let size = guest.vsp.receiveLayout?.subAllocationSize ?? 0
        for range in packet.header.ranges {
            #expect(Int(range.byteOffset) % size == 0)
            #expect(Int(range.byteCount) <= size, "count ≤ sub_alloc_size (netvsc_receive drops larger ranges)")
        }
        let parsed = try packet.messages.map { bytes -> RNDISPacket in
            guard case .packet(let rndis) = try RNDISMessage.parse(bytes).message else { throw NetworkProtocolError.invalidValue("type") }
            return rndis
        }
        #expect(parsed.map(\.data) == frames.map(\.bytes))
        let checksum = parsed.first?.perPacketInfo.first { $0.type == .checksum }?.value.map(ChecksumInfo.init(rawValue:))
        #expect(checksum?.tcpSucceeded == true && checksum?.ipSucceeded == true)
        #expect(parsed.first?.perPacketInfo.contains { $0.type == .ieee8021Q } == true)
    }

    @Test("receive: frames with and without PPIs mixed in one packet each get their own header, byte for byte")
    func receiveHeadersOfMixedFrames() throws {
        var guest = Self.readyGuest()
        let tagged = FrameOffload(vlan: VLANInfo(priority: 0, vlanID: 5))
        let offloads: [FrameOffload] = [.none, .none, tagged, .none, .none, tagged, tagged, .none]
        let frames = offloads.enumerated().map { index, offload in
            NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac, count: 60 + 97 * index, fill: UInt8(index)),
                         offload: offload)
        }
        let (consumed, actions) = guest.vsp.deliver(frames, on: 0)
        #expect(consumed == frames.count)
        let messages = receivedPackets(actions, guest: guest).flatMap(\.messages)
        #expect(messages.count == frames.count)
        for (message, frame) in zip(messages, frames) {
            let header = RNDISPacketLayout.header(dataCount: frame.bytes.count, perPacketInfo: frame.offload.receivePerPacketInfo)
            #expect(Array(message.prefix(header.count)) == header)
            #expect(Array(message.dropFirst(header.count)) == frame.bytes)
        }
    }

    @Test("receive sub-allocations run out, the rest wait, and the 8-byte completion recycles them")
    func exhaustionAndRecycling() {
        var guest = Self.readyGuest(receivePages: 4)  // 16 KiB: 9 sub-allocations of 1728 bytes
        let slots = guest.vsp.freeReceiveSlots(on: 0)
        #expect(slots == 9)
        let frames = (0..<20).map { NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac, fill: UInt8($0))) }
        var sentIDs: [UInt64] = []
        var remaining = frames
        // One frame per call: one packet per frame, as many as there are sub-allocations.
        while let first = remaining.first {
            let (consumed, actions) = guest.vsp.deliver([first], on: 0)
            if consumed == 0 { break }
            remaining.removeFirst()
            sentIDs += receivedPackets(actions, guest: guest).map(\.transactionID)
        }
        #expect(sentIDs.count == 9)
        #expect(Set(sentIDs).count == 9 && !sentIDs.contains(0))
        #expect(guest.vsp.receivePacketsInFlight(on: 0) == 9)
        #expect(guest.vsp.counters.receiveNoBuffer == 1)
        // A completion for an unknown id or on the wrong channel frees nothing.
        _ = guest.completeReceive(0xDEAD)
        #expect(guest.vsp.freeReceiveSlots(on: 0) == 0)
        #expect(guest.vsp.counters.unknownCompletions == 1)
        // Completing two packets frees two sub-allocations; a FAIL completion still frees (and counts).
        _ = guest.completeReceive(sentIDs[0])
        _ = guest.completeReceive(sentIDs[1], status: .failure)
        #expect(guest.vsp.freeReceiveSlots(on: 0) == 2)
        #expect(guest.vsp.counters.failedCompletions == 1)
        let (consumed, actions) = guest.vsp.deliver(Array(remaining), on: 0)
        #expect(consumed == 2)
        #expect(receivedPackets(actions, guest: guest).first?.header.ranges.count == 2)
        // A completion is accepted once.
        _ = guest.completeReceive(sentIDs[0])
        #expect(guest.vsp.counters.unknownCompletions == 2)
    }

    @Test("frames larger than a sub-allocation, runts, and frames before RNDIS is up are dropped and counted")
    func receiveDrops() {
        var guest = Self.readyGuest()
        let (consumed, actions) = guest.vsp.deliver([
            NetworkFrame(bytes: [UInt8](repeating: 1, count: 9000)), NetworkFrame(bytes: [1, 2, 3]),
        ], on: 0)
        #expect(consumed == 2 && receivedPackets(actions, guest: guest).isEmpty)
        #expect(guest.vsp.counters.receiveDrops == 2)
        var fresh = NetvscTestGuest(configuration: LinuxInitSequenceTests.configuration())
        #expect(fresh.vsp.deliver([NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac))], on: 0).consumed == 1)
        #expect(fresh.vsp.counters.receiveDrops == 1)
    }

    @Test("link down and up reach the guest as INDICATE_STATUS MEDIA_DISCONNECT / MEDIA_CONNECT")
    func linkIndications() {
        var guest = Self.readyGuest()
        var down = guest.vsp.setLinkConnected(false)
        #expect(controlResponses(down, guest: &guest) == [.indicateStatus(status: .mediaDisconnect, buffer: [])])
        down = guest.vsp.setLinkConnected(false)
        #expect(down.isEmpty)
        let query = guest.control(.query(RNDISRequest(requestID: 900, oid: .mediaConnectStatus)))
        #expect(controlResponses(query, guest: &guest) == [.queryComplete(requestID: 900, status: .success, information: u32le(1))])
        #expect(controlResponses(guest.vsp.setLinkConnected(true), guest: &guest)
                == [.indicateStatus(status: .mediaConnect, buffer: [])])
    }

    @Test("a disconnected NIC sends nothing, though its guest ignores MEDIA_DISCONNECT; the send is completed and the frame counted as dropped")
    func noTransmitWhileDisconnected() {
        var guest = Self.readyGuest()
        let frame = ethernetFrame(from: Self.mac, to: Self.peer)
        _ = guest.vsp.setLinkConnected(false)
        let down = guest.gpaDirect(stream: Self.packet(frame), channelType: .data)
        #expect(transmittedFrames(down).isEmpty)
        #expect(completions(down).count == 1)
        #expect(guest.vsp.counters.transmitDrops == 1 && guest.vsp.counters.transmittedFrames == 0)
        _ = guest.vsp.setLinkConnected(true)
        #expect(transmittedFrames(guest.gpaDirect(stream: Self.packet(frame), channelType: .data)).map(\.bytes) == [frame])
    }

    @Test("control responses wait for a free sub-allocation instead of being lost")
    func controlBackpressure() {
        var guest = Self.readyGuest(receivePages: 1)  // 2 sub-allocations
        let (_, busy) = guest.vsp.deliver([NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac)),
                                           NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac))], on: 0)
        let ids = receivedPackets(busy, guest: guest).map(\.transactionID)
        let waiting = guest.control(.keepalive(requestID: 5))
        #expect(receivedPackets(waiting, guest: guest).isEmpty)
        #expect(completions(waiting).count == 1)
        let released = guest.completeReceive(ids[0])
        #expect(controlResponses(released, guest: &guest) == [.keepaliveComplete(requestID: 5, status: .success)])
    }

    /// A packet of many control messages fills the response queue to its limit; the responses
    /// then go out in order, one per sub-allocation the guest gives back, and the queue's bytes
    /// are counted down as they go, so the next round fits again. (A response used to copy the
    /// whole queue and the receive buffer's tables: time quadratic in the queue's length.)
    @Test("queued control responses go out in order as sub-allocations return, and the queue's limit is counted down")
    func queuedControlResponsesDrainInOrder() {
        let round = 600
        var configuration = LinuxInitSequenceTests.configuration()
        configuration.controlQueueLimit = round * 16  // KEEPALIVE_CMPLT is 16 bytes
        var guest = NetvscTestGuest(configuration: configuration, receivePageCount: 1)  // 2 sub-allocations
        let version = LinuxInitSequenceTests.negotiate(&guest, expect: .v61) ?? .v61
        LinuxInitSequenceTests.rndisBringUp(&guest, version: version)
        let dropsBefore = guest.vsp.counters.controlResponsesDropped
        let (_, busy) = guest.vsp.deliver([NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac)),
                                           NetworkFrame(bytes: ethernetFrame(from: Self.peer, to: Self.mac))], on: 0)
        var inFlight = receivedPackets(busy, guest: guest).map(\.transactionID)
        #expect(inFlight.count == 1, "both frames in one packet, which holds both sub-allocations")
        for (first, count) in [(1, round), (10_001, round + 1)] {
            let requests = (0..<count).flatMap { RNDISMessage.keepalive(requestID: UInt32(first + $0)).bytes }
            #expect(receivedPackets(guest.gpaDirect(stream: requests, channelType: .control), guest: guest).isEmpty,
                    "no sub-allocation is free")
            var answered: [UInt32] = []
            var steps = 0
            while !inFlight.isEmpty, steps < 10 * count {
                steps += 1
                for packet in receivedPackets(guest.completeReceive(inFlight.removeFirst()), guest: guest) {
                    inFlight.append(packet.transactionID)
                    for bytes in packet.messages {
                        if case .keepaliveComplete(let id, .success)? = (try? RNDISMessage.parse(bytes))?.0 {
                            answered.append(id)
                        }
                    }
                }
                if answered.count == min(count, round) { break }
            }
            #expect(answered == (0..<min(count, round)).map { UInt32(first + $0) })
        }
        #expect(guest.vsp.counters.controlResponsesDropped - dropsBefore == 1, "only the one past the limit")
    }
}

/// A NIC withdrawn after a parent restart (its state died with the parent) still answers what
/// Linux's netvsc waits for before it closes the rescinded channel: every send in flight.
@Suite struct WithdrawalAnswerTests {
    static func packet(_ message: NVSPMessage, type: PacketType = .inband, flags: PacketFlags = .completionRequested,
                       transactionID: UInt64 = 0x77) -> ([UInt8], PacketDescriptor) {
        let payload = message.bytes()
        let descriptor = PacketDescriptor(type: type, dataOffset8: 2, length8: UInt16(2 + (payload.count + 7) / 8),
                                          flags: flags, transactionID: transactionID)
        var bytes = [UInt8](repeating: 0, count: 16) + payload
        bytes.storeLittleEndian(type.rawValue, at: 0)
        return (bytes, descriptor)
    }

    @Test func everySendAwaitingCompletionIsCompletedAsFailed() throws {
        for channel in [RNDISChannelType.data, .control] {
            let (bytes, descriptor) = Self.packet(.sendRNDISPacket(channel: channel, sectionIndex: 3, sectionSize: 60))
            let answer = try #require(NetworkVSP<FlatGuestMemory>.withdrawalAnswer(to: bytes, descriptor: descriptor))
            #expect(answer.type == .completion)
            #expect(answer.transactionID == 0x77)
            #expect(try NVSPMessage(parsing: answer.payload, completion: true) == .sendRNDISPacketComplete(status: .failure))
        }
    }

    @Test func nothingElseIsAnswered() {
        let cases: [([UInt8], PacketDescriptor)] = [
            Self.packet(.sendRNDISPacket(channel: .data, sectionIndex: 0, sectionSize: 60), flags: []),
            Self.packet(.revokeReceiveBuffer(id: 1)),
            Self.packet(.sendRNDISPacketComplete(status: .success), type: .completion),
            ([1, 2, 3], PacketDescriptor(type: .inband, dataOffset8: 2, length8: 2, flags: .completionRequested, transactionID: 1)),
        ]
        for (bytes, descriptor) in cases {
            #expect(NetworkVSP<FlatGuestMemory>.withdrawalAnswer(to: bytes, descriptor: descriptor) == nil)
        }
    }

    /// Only the packet's own bytes count: the worker reads every packet into one reused buffer,
    /// so a packet with no payload finds an earlier packet's send after its end.
    @Test func bytesPastThePacketsEndAreNotItsMessage() {
        var (bytes, _) = Self.packet(.sendRNDISPacket(channel: .data, sectionIndex: 3, sectionSize: 60))
        bytes += [UInt8](repeating: 0, count: 4096 - bytes.count)
        let empty = PacketDescriptor(type: .inband, dataOffset8: 2, length8: 2, flags: .completionRequested, transactionID: 9)
        #expect(NetworkVSP<FlatGuestMemory>.withdrawalAnswer(to: bytes, descriptor: empty) == nil)
    }
}

/// When a NIC channel hands the frames it has read from the guest to the switch.
@Suite struct TransmitBatchTests {
    static func frame(_ size: Int, _ tag: UInt8) -> NetworkFrame {
        NetworkFrame(bytes: [UInt8](repeating: tag, count: size))
    }

    /// Frames of `size` bytes until the batch is full: 64 of 1514 bytes (as a receive delivery
    /// carries), but 15 of 9014 (128 KiB reached) and 2 LSO frames of 64 KiB.
    @Test("a batch is handed over at 64 frames, or once it holds 128 KiB", arguments: [(1514, 64), (9014, 15), (65_536, 2)])
    func aBatchIsFullByCountOrBytes(size: Int, fullAt: Int) {
        var batch = TransmitBatch()
        for index in 0..<(fullAt - 1) {
            batch.append(Self.frame(size, UInt8(truncatingIfNeeded: index)))
            #expect(!batch.isFull)
        }
        batch.append(Self.frame(size, 0xFF))
        #expect(batch.isFull)
        #expect(batch.bytes == fullAt * size)
    }

    @Test("handing over gives every frame in order and starts the count again")
    func handOverTakesEverythingInOrder() {
        var batch = TransmitBatch()
        for index in 0..<15 { batch.append(Self.frame(9014, UInt8(index))) }
        var taken: [NetworkFrame] = []
        batch.handOver { frames in
            taken = frames
            frames.removeAll(keepingCapacity: true)
        }
        #expect(taken.map { $0.bytes[0] } == (0..<15).map { UInt8($0) })
        #expect(batch.isEmpty && batch.bytes == 0 && !batch.isFull)
        batch.append(Self.frame(9014, 99))
        #expect(!batch.isFull && batch.bytes == 9014)
        // A taker that leaves frames behind: they stay, in order, and are counted.
        batch.append(Self.frame(1514, 100))
        batch.handOver { frames in frames.removeFirst() }
        #expect(batch.frames.map { $0.bytes[0] } == [100] && batch.bytes == 1514)
    }
}
