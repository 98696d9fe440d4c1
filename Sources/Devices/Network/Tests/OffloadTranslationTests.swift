import NetworkProtocol
import Testing
@testable import VirtualSwitch

/// Virtio-net headers ↔ switch offload metadata, and the software offloads, in both directions.
@Suite struct OffloadTranslationTests {
    @Test("virtio_net_hdr layout: flags @0, gso_type @1, hdr_len @2, gso_size @4, csum_start @6, csum_offset @8")
    func headerBytes() {
        let header = VirtioNetHeader(flags: 1, gsoType: 4, headerLength: 74, gsoSize: 1428, checksumStart: 54,
                                     checksumOffset: 16)
        #expect(header.bytes() == hexBytes("01 04 4a00 9405 3600 1000 0000"))
        #expect(header.bytes(size: 10).count == 10)
        #expect(VirtioNetHeader(bytes: header.bytes()) == header)
        #expect(VirtioNetHeader(bytes: [1, 2, 3]) == nil)
    }

    @Test("guest LSO → TAP: IPv4 total length and header checksum fixed, TCP seed gets the length (netvsc_xmit leaves them 0)")
    func largeSendIPv4ToVirtio() throws {
        let frame = PacketBuilder.ipv4TCP(payload: 4000, lsoStyle: true)
        #expect(frame[16] == 0 && frame[17] == 0, "Linux zeroes tot_len")
        let offload = FrameOffload(segmentation: .init(maximumSegmentSize: 1448, transportOffset: 34, isIPv6: false))
        let resolved = try #require(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: offload), for: .virtio))
        #expect(resolved.count == 1)
        let bytes = resolved[0].bytes
        #expect(Int(bytes[16]) << 8 | Int(bytes[17]) == frame.count - 14)
        #expect(PacketBuilder.fold(PacketBuilder.sum(Array(bytes[14..<34]))) == 0xFFFF, "IPv4 header checksum valid")
        // Seed = pseudo-header sum with the TCP length, not complemented (what tcp_gso_segment adjusts).
        let seed = PacketBuilder.fold(PacketBuilder.sum(Array(bytes[26..<34])) + 6 + UInt32(frame.count - 34))
        #expect(UInt16(bytes[50]) << 8 | UInt16(bytes[51]) == seed)
        let header = VirtioNetHeader(for: resolved[0])
        #expect(header == VirtioNetHeader(flags: 1, gsoType: 1, headerLength: 54, gsoSize: 1448, checksumStart: 34,
                                          checksumOffset: 16))
        // Completing the seeded checksum over the whole segment gives a valid packet: the seed is right.
        var completed = bytes
        #expect(SoftwareOffload.completeChecksum(&completed, .init(transport: .tcp, transportOffset: 34, isIPv6: false)))
        #expect(PacketBuilder.checksumsValid(completed))
    }

    @Test("guest LSO → TAP over IPv6: payload length fixed")
    func largeSendIPv6ToVirtio() throws {
        let frame = PacketBuilder.ipv6TCP(payload: 3000, lsoStyle: true)
        let offload = FrameOffload(segmentation: .init(maximumSegmentSize: 1428, transportOffset: 54, isIPv6: true))
        let resolved = try #require(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: offload), for: .virtio))
        #expect(Int(resolved[0].bytes[18]) << 8 | Int(resolved[0].bytes[19]) == 3020)
        #expect(VirtioNetHeader(for: resolved[0]).gsoType == VirtioNetHeader.gsoTCPv6)
    }

    @Test("guest LSO → another guest: segmented into MSS pieces, every checksum valid, flags and sequence right")
    func segmentation() throws {
        let frame = PacketBuilder.ipv4TCP(payload: 4000, flags: 0x19 | 0x80, lsoStyle: true)  // FIN|PSH|ACK + CWR
        let offload = FrameOffload(segmentation: .init(maximumSegmentSize: 1448, transportOffset: 34, isIPv6: false),
                                   vlan: VLANInfo(priority: 0, vlanID: 5))
        let resolved = try #require(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: offload), for: .guest))
        #expect(resolved.map(\.bytes.count) == [54 + 1448, 54 + 1448, 54 + 1104])
        for (index, segment) in resolved.enumerated() {
            #expect(PacketBuilder.checksumsValid(segment.bytes), "segment \(index)")
            let sequence = segment.bytes[38..<42].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            #expect(sequence == 1000 + UInt32(index * 1448))
            #expect(segment.offload.receiveChecksum?.transportValid == true)
            #expect(segment.offload.vlan?.vlanID == 5, "VLAN stays metadata for a guest")
        }
        #expect(resolved[0].bytes[47] == 0x90, "first keeps CWR, loses FIN/PSH")
        #expect(resolved[1].bytes[47] == 0x10)
        #expect(resolved[2].bytes[47] == 0x19, "last keeps FIN/PSH, loses CWR")
        #expect(resolved.map { Int($0.bytes[18]) << 8 | Int($0.bytes[19]) } == [0x1234, 0x1235, 0x1236])
        let six = PacketBuilder.ipv6TCP(payload: 3000, lsoStyle: true)
        let segments = try #require(SoftwareOffload.segment(six, .init(maximumSegmentSize: 1428, transportOffset: 54,
                                                                        isIPv6: true)))
        #expect(segments.count == 3 && segments.allSatisfy(PacketBuilder.checksumsValid))
    }

    @Test("a guest's LSO frame whose one segment would not fit IP's 16-bit length is refused, not cut")
    func segmentLongerThanIPLengthIsRefused() throws {
        // The largest LSO frame the VSP and the switch take (65,593 bytes) with an MSS that makes
        // one segment of it: its IPv4 total length would be 65579.
        let largest = NetworkFrame.largestSegmentedFrameSize
        let frame = PacketBuilder.ipv4TCP(payload: largest - 54, lsoStyle: true)
        let huge = FrameOffload.SegmentationRequest(maximumSegmentSize: 0xF_FFFF, transportOffset: 34, isIPv6: false)
        #expect(SoftwareOffload.segment(frame, huge) == nil)
        #expect(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: FrameOffload(segmentation: huge)), for: .guest) == nil)
        let six = PacketBuilder.ipv6TCP(payload: largest - 74, lsoStyle: true)
        #expect(SoftwareOffload.segment(six, .init(maximumSegmentSize: 0xF_FFFF, transportOffset: 54, isIPv6: true)) == nil)
        // The same frame at a real MSS is cut, every segment's length in range.
        let segments = try #require(SoftwareOffload.segment(frame, .init(maximumSegmentSize: 1448, transportOffset: 34,
                                                                          isIPv6: false)))
        #expect(segments.count == 46 && segments.allSatisfy(PacketBuilder.checksumsValid))
    }

    @Test("segmentation is bounded: at most maximumSegments pieces, and headers of at most maximumSegmentHeaderBytes")
    func segmentationWorkIsBounded() {
        let frame = PacketBuilder.ipv4TCP(payload: 65000, lsoStyle: true)
        // 65000 / 64 = 1016 segments: more than the switch cuts one frame into.
        #expect(SoftwareOffload.segment(frame, .init(maximumSegmentSize: 64, transportOffset: 34, isIPv6: false)) == nil)
        let bounded = SoftwareOffload.segment(frame, .init(maximumSegmentSize: 65000 / SoftwareOffload.maximumSegments + 1,
                                                           transportOffset: 34, isIPv6: false))
        #expect(bounded?.count == SoftwareOffload.maximumSegments)
        // A transport offset deep in the frame makes every segment repeat a kilobyte of "headers".
        #expect(SoftwareOffload.segment(frame, .init(maximumSegmentSize: 1448, transportOffset: 1023, isIPv6: false)) == nil)
    }

    @Test("a frame left for the host to segment keeps the same bounds: an MSS of 64 or more, at most maximumSegments pieces, never GSO_BY_FRAGS")
    func hostSegmentationIsBounded() {
        let frame = PacketBuilder.ipv4TCP(payload: 65000, lsoStyle: true)
        let host = SoftwareOffload.Capabilities.virtio
        for mss in [1, 63, 64, 0xFFFF] {
            let request = FrameOffload.SegmentationRequest(maximumSegmentSize: mss, transportOffset: 34, isIPv6: false)
            #expect(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: FrameOffload(segmentation: request)), for: host) == nil,
                    "MSS \(mss)")
        }
        let fits = FrameOffload.SegmentationRequest(maximumSegmentSize: 65000 / SoftwareOffload.maximumSegments + 1,
                                                    transportOffset: 34, isIPv6: false)
        let prepared = SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: FrameOffload(segmentation: fits)), for: host)
        #expect(prepared?.count == 1 && prepared?.first?.offload.segmentation == fits)
    }

    @Test("the switch switches at most a few frames asking for segmentation in one hold of its lock")
    func segmentedFramesEndALockHold() {
        let plain = NetworkFrame(bytes: PacketBuilder.ipv4TCP(payload: 100))
        let large = NetworkFrame(bytes: PacketBuilder.ipv4TCP(payload: 4000, lsoStyle: true),
                                 offload: FrameOffload(segmentation: .init(maximumSegmentSize: 1448, transportOffset: 34,
                                                                           isIPv6: false)))
        let plainRun = Array(repeating: plain, count: 100)
        #expect(VirtualSwitch.lockBatchEnd(plainRun, from: 0) == VirtualSwitch.framesPerLock)
        #expect(VirtualSwitch.lockBatchEnd(plainRun, from: 90) == 100)
        let mixed = [plain, plain] + Array(repeating: large, count: 10)
        #expect(VirtualSwitch.lockBatchEnd(mixed, from: 0) == 2 + VirtualSwitch.segmentedFramesPerLock)
        #expect(VirtualSwitch.lockBatchEnd(mixed, from: 10) == 12)
    }

    @Test("TAP NEEDS_CSUM → guest: the checksum is completed on the host and the guest told it is valid")
    func partialChecksumToGuest() throws {
        var frame = PacketBuilder.ipv4UDP(payload: 301)
        // The kernel leaves the pseudo-header sum in the field (CHECKSUM_PARTIAL).
        let seed = PacketBuilder.fold(PacketBuilder.sum(Array(frame[26..<34])) + 17 + 309)
        frame[40] = UInt8(seed >> 8)
        frame[41] = UInt8(seed & 0xFF)
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: 34, checksumOffset: 6)
        let offload = try #require(header.offload(for: frame))
        #expect(offload.checksum == .init(transport: .udp, transportOffset: 34, isIPv6: false))
        let resolved = try #require(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: offload), for: .guest))
        #expect(PacketBuilder.checksumsValid(resolved[0].bytes))
        #expect(resolved[0].offload.checksum == nil)
        #expect(resolved[0].offload.receivePerPacketInfo.first?.type == .checksum)
        // DATA_VALID becomes "checksum verified"; UDP GSO and odd offsets are refused.
        #expect(VirtioNetHeader(flags: VirtioNetHeader.dataValid).offload(for: frame)?.receiveChecksum?.transportValid == true)
        #expect(VirtioNetHeader(gsoType: VirtioNetHeader.gsoUDP, gsoSize: 1000).offload(for: frame) == nil)
        #expect(VirtioNetHeader(flags: 1, checksumStart: 34, checksumOffset: 9).offload(for: frame) == nil)
    }

    @Test("guest checksum request → TAP: NEEDS_CSUM with csum_start at the transport header, shifted by an in-line VLAN tag")
    func checksumToVirtioWithVLAN() throws {
        let frame = PacketBuilder.ipv4TCP(payload: 100)
        let offload = FrameOffload(checksum: .init(transport: .tcp, transportOffset: 34, isIPv6: false),
                                   vlan: VLANInfo(priority: 2, vlanID: 100))
        let resolved = try #require(SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: offload), for: .virtio))
        let bytes = resolved[0].bytes
        #expect(Array(bytes[12..<16]) == [0x81, 0x00, 0x40, 0x64])
        #expect(Array(bytes[16...]) == Array(frame[12...]))
        #expect(VirtioNetHeader(for: resolved[0]) == VirtioNetHeader(flags: 1, checksumStart: 38, checksumOffset: 16))
        // And the checksum completes correctly at the shifted offset.
        var completed = bytes
        #expect(SoftwareOffload.completeChecksum(&completed, resolved[0].offload.checksum!))
        var untagged = Array(completed[0..<12]) + Array(completed[16...])
        #expect(PacketBuilder.checksumsValid(untagged))
        untagged[60] ^= 1
        #expect(!PacketBuilder.checksumsValid(untagged))
    }

    @Test("offload requests whose headers do not add up fail instead of trapping")
    func hostileOffloads() {
        let frame = PacketBuilder.ipv4TCP(payload: 10)
        var copy = frame
        #expect(!SoftwareOffload.completeChecksum(&copy, .init(transport: .tcp, transportOffset: 1000, isIPv6: false)))
        #expect(!SoftwareOffload.completeChecksum(&copy, .init(transport: .tcp, transportOffset: 20, isIPv6: false)))
        #expect(SoftwareOffload.segment(frame, .init(maximumSegmentSize: 1, transportOffset: 34, isIPv6: false)) == nil)
        #expect(SoftwareOffload.segment(Array(frame.prefix(40)), .init(maximumSegmentSize: 100, transportOffset: 34,
                                                                      isIPv6: false)) == nil)
        var arp = frame
        arp[12] = 0x08
        arp[13] = 0x06
        #expect(SoftwareOffload.resolve(NetworkFrame(bytes: arp, offload: FrameOffload(
            segmentation: .init(maximumSegmentSize: 1000, transportOffset: 34, isIPv6: false))), for: .guest) == nil)
    }
}
