import NetworkProtocol

/// The offload work a destination cannot do itself, done in software: checksum completion,
/// TCP segmentation, the header fix-ups an LSO frame needs before a Linux peer takes it, and
/// 802.1Q tag insertion.
///
/// Checksums are computed from the headers (RFC 1071 sums over the RFC 793/768/8200
/// pseudo-header), whatever seed the sender left in the checksum field: Linux's netvsc seeds
/// LSO frames with the length-less pseudo-header sum (`netvsc_xmit`) while a Linux GSO packet
/// carries the sum with the length (`tcp_v4_send_check`); recomputing serves both.
public enum SoftwareOffload {
    /// Smallest MSS segmented; smaller ones would multiply a frame into thousands.
    public static let minimumSegmentSize = 64
    /// Most segments one frame is cut into: the switch segments under its lock, so one guest's
    /// frame must not become thousands of allocations there. A 64 KiB frame at the smallest MSS
    /// an IPv4 path may use (536 bytes, RFC 879) is 123 segments.
    public static let maximumSegments = 256
    /// Most bytes of IP and TCP headers a segmented frame may carry (each segment repeats them):
    /// IPv4's 60 or IPv6's 40 plus extension headers, and TCP's 60.
    public static let maximumSegmentHeaderBytes = 256

    /// End of the IP packet: from its length field when that is sane, else the frame's end
    /// (Linux zeroes the length of LSO frames).
    static func packetEnd(_ frame: [UInt8], _ network: (etherType: UInt16, offset: Int)) -> Int {
        switch network.etherType {
        case EthernetHeaders.etherTypeIPv4:
            if let total = EthernetHeaders.u16(frame, network.offset + 2), total >= 20,
               network.offset + Int(total) <= frame.count { return network.offset + Int(total) }
        case EthernetHeaders.etherTypeIPv6:
            if let payload = EthernetHeaders.u16(frame, network.offset + 4), payload > 0,
               network.offset + 40 + Int(payload) <= frame.count { return network.offset + 40 + Int(payload) }
        default: break
        }
        return frame.count
    }

    /// Writes the complete TCP/UDP checksum of the segment at `transportOffset`..<`end`.
    static func writeChecksum(_ frame: inout [UInt8], network: (etherType: UInt16, offset: Int), transportOffset: Int,
                              transport: FrameOffload.TransportProtocol, end: Int) -> Bool {
        let field = transportOffset + (transport == .tcp ? 16 : 6)
        let minimumHeader = network.etherType == EthernetHeaders.etherTypeIPv4 ? 20 : 40
        guard transportOffset >= network.offset + minimumHeader, field + 2 <= end, end <= frame.count,
            let seed = EthernetHeaders.pseudoHeaderSum(
                frame, network: network,
                protocol: transport == .tcp ? EthernetHeaders.protocolTCP : EthernetHeaders.protocolUDP,
                length: end - transportOffset)
        else { return false }
        EthernetHeaders.store16(0, &frame, field)
        var checksum = ~EthernetHeaders.fold(EthernetHeaders.sum(frame, transportOffset, end, initial: seed))
        if transport == .udp && checksum == 0 { checksum = 0xFFFF }
        EthernetHeaders.store16(checksum, &frame, field)
        return true
    }

    /// Completes a transmit checksum request in place.
    /// - Returns: `false` if the headers do not allow it (the frame is then unchanged or garbage
    ///   and must be dropped).
    public static func completeChecksum(_ frame: inout [UInt8], _ request: FrameOffload.ChecksumRequest) -> Bool {
        guard let network = EthernetHeaders.network(frame),
            network.etherType == EthernetHeaders.etherTypeIPv4 || network.etherType == EthernetHeaders.etherTypeIPv6
        else { return false }
        if network.etherType == EthernetHeaders.etherTypeIPv4, request.ipv4Header {
            guard EthernetHeaders.recomputeIPv4HeaderChecksum(&frame, at: network.offset) else { return false }
        }
        return writeChecksum(&frame, network: network, transportOffset: request.transportOffset,
                             transport: request.transport, end: packetEnd(frame, network))
    }

    /// Makes an LSO frame what a Linux GSO packet looks like: IPv4 total length (and header
    /// checksum) or IPv6 payload length from the frame's size — Linux's netvsc leaves them 0 —
    /// and the TCP checksum field seeded with the pseudo-header sum including the length, which
    /// `tcp_gso_segment` adjusts per segment.
    public static func prepareLargeSend(_ frame: inout [UInt8], _ request: FrameOffload.SegmentationRequest) -> Bool {
        guard let network = EthernetHeaders.network(frame) else { return false }
        let l3 = network.offset
        switch network.etherType {
        case EthernetHeaders.etherTypeIPv4:
            guard l3 + 20 <= frame.count, frame.count - l3 <= 0xFFFF else { return false }
            EthernetHeaders.store16(UInt16(frame.count - l3), &frame, l3 + 2)
            guard EthernetHeaders.recomputeIPv4HeaderChecksum(&frame, at: l3) else { return false }
        case EthernetHeaders.etherTypeIPv6:
            guard l3 + 40 <= frame.count, frame.count - l3 - 40 <= 0xFFFF else { return false }
            EthernetHeaders.store16(UInt16(frame.count - l3 - 40), &frame, l3 + 4)
        default:
            return false
        }
        let transport = request.transportOffset
        guard transport + 20 <= frame.count else { return false }
        // The host kernel cuts the frame with this MSS: within the bounds `segment` keeps, so a
        // guest's frame becomes at most `maximumSegments` packets there too (and never asks for
        // GSO_BY_FRAGS, an MSS of 0xFFFF, which is not a TCP segment size).
        let mss = request.maximumSegmentSize
        let headerEnd = transport + Int(frame[transport + 12] >> 4) * 4
        guard mss >= minimumSegmentSize, mss < 0xFFFF, headerEnd >= transport + 20, headerEnd <= frame.count,
            (frame.count - headerEnd + mss - 1) / mss <= maximumSegments,
            let seed = EthernetHeaders.pseudoHeaderSum(frame, network: network, protocol: EthernetHeaders.protocolTCP,
                                                       length: frame.count - transport)
        else { return false }
        EthernetHeaders.store16(EthernetHeaders.fold(seed), &frame, transport + 16)
        return true
    }

    /// Cuts an LSO frame into TCP segments of at most `maximumSegmentSize` payload bytes, each
    /// a complete frame: IPv4 length, identification and header checksum, or IPv6 payload
    /// length; TCP sequence number, FIN/PSH only on the last, CWR only on the first; full TCP
    /// checksum.
    /// - Returns: the segments, or `nil` if the headers do not allow segmentation.
    public static func segment(_ frame: [UInt8], _ request: FrameOffload.SegmentationRequest) -> [[UInt8]]? {
        guard let network = EthernetHeaders.network(frame),
            network.etherType == EthernetHeaders.etherTypeIPv4 || network.etherType == EthernetHeaders.etherTypeIPv6,
            request.maximumSegmentSize >= minimumSegmentSize
        else { return nil }
        let l3 = network.offset
        let l4 = request.transportOffset
        let isIPv4 = network.etherType == EthernetHeaders.etherTypeIPv4
        guard l4 >= l3 + (isIPv4 ? 20 : 40), l4 + 20 <= frame.count else { return nil }
        let tcpHeaderLength = Int(frame[l4 + 12] >> 4) * 4
        let headerEnd = l4 + tcpHeaderLength
        guard tcpHeaderLength >= 20, headerEnd <= frame.count, headerEnd - l3 <= maximumSegmentHeaderBytes,
            let sequence = EthernetHeaders.u32(frame, l4 + 4), let identification = EthernetHeaders.u16(frame, l3 + 4)
        else { return nil }
        let payload = frame.count - headerEnd
        let mss = request.maximumSegmentSize
        let count = max(1, (payload + mss - 1) / mss)
        // Every segment's IP length must fit its 16-bit field: the largest is the first.
        let largestIPLength = headerEnd - l3 + min(mss, payload) - (isIPv4 ? 0 : 40)
        guard count <= maximumSegments, largestIPLength <= 0xFFFF else { return nil }
        let flags = frame[l4 + 13]
        var segments: [[UInt8]] = []
        segments.reserveCapacity(count)
        for index in 0..<count {
            let start = headerEnd + index * mss
            let end = min(start + mss, frame.count)
            var segment = Array(frame[0..<headerEnd])
            segment += frame[start..<end]
            if isIPv4 {
                EthernetHeaders.store16(UInt16(segment.count - l3), &segment, l3 + 2)
                EthernetHeaders.store16(identification &+ UInt16(truncatingIfNeeded: index), &segment, l3 + 4)
                guard EthernetHeaders.recomputeIPv4HeaderChecksum(&segment, at: l3) else { return nil }
            } else {
                EthernetHeaders.store16(UInt16(segment.count - l3 - 40), &segment, l3 + 4)
            }
            EthernetHeaders.store32(sequence &+ UInt32(truncatingIfNeeded: index * mss), &segment, l4 + 4)
            var segmentFlags = flags
            if index != count - 1 { segmentFlags &= ~0x09 }  // FIN, PSH
            if index != 0 { segmentFlags &= ~0x80 }  // CWR
            segment[l4 + 13] = segmentFlags
            guard writeChecksum(&segment, network: network, transportOffset: l4, transport: .tcp, end: segment.count)
            else { return nil }
            segments.append(segment)
        }
        return segments
    }

    /// The frame with `vlan` as an in-line 802.1Q tag after the source address.
    public static func insertVLAN(_ frame: [UInt8], _ vlan: VLANInfo) -> [UInt8] {
        guard frame.count >= 12 else { return frame }
        var tagged = Array(frame[0..<12])
        tagged += [0x81, 0x00, UInt8(vlan.tagControl >> 8), UInt8(vlan.tagControl & 0xFF)]
        tagged += frame[12...]
        return tagged
    }

    /// What a destination can take beside a plain frame.
    public struct Capabilities: Hashable, Sendable {
        /// Partial checksums (the destination completes them).
        public var checksum: Bool
        /// Segmentation requests.
        public var segmentation: Bool
        /// VLAN tags must be in the frame (a TAP); otherwise they travel as metadata (a guest).
        public var inlineVLAN: Bool
        public init(checksum: Bool, segmentation: Bool, inlineVLAN: Bool) {
            self.checksum = checksum
            self.segmentation = segmentation
            self.inlineVLAN = inlineVLAN
        }
        /// A synthetic NIC: plain frames only, VLAN tags as PPIs.
        public static let guest = Capabilities(checksum: false, segmentation: false, inlineVLAN: false)
        /// A TAP or packet socket with virtio-net headers.
        public static let virtio = Capabilities(checksum: true, segmentation: true, inlineVLAN: true)
    }

    /// `frame` made acceptable to a destination with `capabilities`: completed, segmented,
    /// prepared for a GSO peer, tagged. Frames for a guest carry "checksum verified" when the
    /// switch computed the checksum itself.
    /// - Returns: the frames to deliver, or `nil` if the frame's headers made the work impossible.
    public static func resolve(_ frame: NetworkFrame, for capabilities: Capabilities) -> [NetworkFrame]? {
        var offload = frame.offload
        var results: [NetworkFrame]
        if let segmentation = offload.segmentation {
            if capabilities.segmentation {
                var bytes = frame.bytes
                guard prepareLargeSend(&bytes, segmentation) else { return nil }
                offload.checksum = FrameOffload.ChecksumRequest(
                    transport: .tcp, transportOffset: segmentation.transportOffset, isIPv6: segmentation.isIPv6)
                results = [NetworkFrame(bytes: bytes, offload: offload)]
            } else {
                guard let segments = segment(frame.bytes, segmentation) else { return nil }
                offload.segmentation = nil
                offload.checksum = nil
                offload.receiveChecksum = .init(transportValid: true, ipv4HeaderValid: true)
                results = segments.map { NetworkFrame(bytes: $0, offload: offload) }
            }
        } else if let checksum = offload.checksum, !capabilities.checksum {
            var bytes = frame.bytes
            guard completeChecksum(&bytes, checksum) else { return nil }
            offload.checksum = nil
            offload.receiveChecksum = .init(transportValid: true, ipv4HeaderValid: true)
            results = [NetworkFrame(bytes: bytes, offload: offload)]
        } else {
            results = [frame]
        }
        if capabilities.inlineVLAN {
            results = results.map { result in
                guard let vlan = result.offload.vlan else { return result }
                var shifted = result.offload
                shifted.vlan = nil
                shifted.checksum?.transportOffset += NetworkFrame.vlanTagSize
                shifted.segmentation?.transportOffset += NetworkFrame.vlanTagSize
                return NetworkFrame(bytes: insertVLAN(result.bytes, vlan), offload: shifted)
            }
        }
        return results
    }
}
