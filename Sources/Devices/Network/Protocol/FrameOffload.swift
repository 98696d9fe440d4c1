/// What a frame's sender asked of, or a receiver is told about, checksums, segmentation and
/// VLAN tagging: the meaning of the checksum, LSOv2, 802.1Q and hash PPIs, independent of
/// RNDIS. The virtual switch translates it to and from virtio-net headers.
public struct FrameOffload: Hashable, Sendable {
    /// The layer-4 protocol whose checksum is meant.
    public enum TransportProtocol: Hashable, Sendable { case tcp, udp }

    /// A transmit checksum request: the sender left the checksum of the transport header at
    /// `transportOffset` seeded with the pseudo-header sum; the device completes it.
    public struct ChecksumRequest: Hashable, Sendable {
        public var transport: TransportProtocol
        /// Offset of the TCP/UDP header in the frame.
        public var transportOffset: Int
        public var isIPv6: Bool
        /// The IPv4 header checksum must be computed as well.
        public var ipv4Header: Bool
        public init(transport: TransportProtocol, transportOffset: Int, isIPv6: Bool, ipv4Header: Bool = false) {
            self.transport = transport
            self.transportOffset = transportOffset
            self.isIPv6 = isIPv6
            self.ipv4Header = ipv4Header
        }
        /// Offset of the checksum field from the transport header (16 TCP, 6 UDP).
        public var checksumFieldOffset: Int { transport == .tcp ? 16 : 6 }
    }

    /// A TCP segmentation request (LSOv2): cut the payload into `maximumSegmentSize` pieces.
    /// As Linux sends it, the IPv4 total length / IPv6 payload length is 0 and the TCP checksum
    /// holds the pseudo-header sum without length.
    public struct SegmentationRequest: Hashable, Sendable {
        public var maximumSegmentSize: Int
        public var transportOffset: Int
        public var isIPv6: Bool
        public init(maximumSegmentSize: Int, transportOffset: Int, isIPv6: Bool) {
            self.maximumSegmentSize = maximumSegmentSize
            self.transportOffset = transportOffset
            self.isIPv6 = isIPv6
        }
    }

    /// What a receiver may trust about the checksums of a received frame.
    public struct ReceiveChecksum: Hashable, Sendable {
        public var transportValid: Bool
        public var ipv4HeaderValid: Bool
        public init(transportValid: Bool, ipv4HeaderValid: Bool) {
            self.transportValid = transportValid
            self.ipv4HeaderValid = ipv4HeaderValid
        }
    }

    /// Transmit: complete this checksum.
    public var checksum: ChecksumRequest?
    /// Transmit: segment this frame.
    public var segmentation: SegmentationRequest?
    /// The 802.1Q tag that travels beside the frame instead of in it.
    public var vlan: VLANInfo?
    /// The flow hash.
    public var hash: UInt32?
    /// Receive: checksums already verified.
    public var receiveChecksum: ReceiveChecksum?

    public init(checksum: ChecksumRequest? = nil, segmentation: SegmentationRequest? = nil, vlan: VLANInfo? = nil,
                hash: UInt32? = nil, receiveChecksum: ReceiveChecksum? = nil) {
        self.checksum = checksum
        self.segmentation = segmentation
        self.vlan = vlan
        self.hash = hash
        self.receiveChecksum = receiveChecksum
    }

    /// Nothing requested, nothing known.
    public static let none = FrameOffload()

    /// Whether the frame needs work before it is a plain, valid Ethernet frame.
    public var needsCompletion: Bool { checksum != nil || segmentation != nil }

    /// The offload a guest's transmit PPIs request (`netvsc_xmit` builds them). A checksum PPI
    /// naming neither TCP nor UDP, or neither IP version, is ignored; so is an LSO PPI that is
    /// not LSOv2 or has a zero MSS.
    public init(transmitted layout: RNDISPacketLayout) {
        self.init()
        // Most frames carry none (small frames, no checksum offload): no four searches.
        guard !layout.perPacketInfo.isEmpty else { return }
        if let value = layout.info(.checksum)?.value {
            let info = ChecksumInfo(rawValue: value)
            if (info.isIPv4 || info.isIPv6), info.tcpChecksum || info.udpChecksum {
                checksum = ChecksumRequest(
                    transport: info.tcpChecksum ? .tcp : .udp, transportOffset: info.transportHeaderOffset,
                    isIPv6: info.isIPv6 && !info.isIPv4, ipv4Header: info.ipHeaderChecksum)
            }
        }
        if let value = layout.info(.largeSend)?.value {
            let info = LargeSendInfo(rawValue: value)
            if info.isVersion2, info.maximumSegmentSize > 0 {
                segmentation = SegmentationRequest(
                    maximumSegmentSize: info.maximumSegmentSize, transportOffset: info.transportHeaderOffset,
                    isIPv6: info.isIPv6)
            }
        }
        if let value = layout.info(.ieee8021Q)?.value { vlan = VLANInfo(rawValue: value) }
        if let value = layout.info(.hashValue)?.value { hash = value }
    }

    /// The PPIs that tell a guest about a received frame: checksum results, VLAN tag, hash.
    public var receivePerPacketInfo: [PerPacketInfo] {
        var infos: [PerPacketInfo] = []
        if let receiveChecksum {
            let info = ChecksumInfo.received(
                tcpSucceeded: receiveChecksum.transportValid, udpSucceeded: receiveChecksum.transportValid,
                ipSucceeded: receiveChecksum.ipv4HeaderValid)
            infos.append(PerPacketInfo(type: .checksum, value: info.rawValue))
        }
        if let vlan { infos.append(PerPacketInfo(type: .ieee8021Q, value: vlan.rawValue)) }
        if let hash { infos.append(PerPacketInfo(type: .hashValue, value: hash)) }
        return infos
    }

    /// The PPIs a guest attaches to request this offload on transmit, in Linux's order.
    public var transmitPerPacketInfo: [PerPacketInfo] {
        var infos: [PerPacketInfo] = []
        if let hash { infos.append(PerPacketInfo(type: .hashValue, value: hash)) }
        if let vlan { infos.append(PerPacketInfo(type: .ieee8021Q, value: vlan.rawValue)) }
        if let segmentation {
            let info = LargeSendInfo.version2(
                maximumSegmentSize: segmentation.maximumSegmentSize, transportHeaderOffset: segmentation.transportOffset,
                ipv6: segmentation.isIPv6)
            infos.append(PerPacketInfo(type: .largeSend, value: info.rawValue))
        } else if let checksum {
            let info = ChecksumInfo.transmit(
                ipv6: checksum.isIPv6, tcp: checksum.transport == .tcp, udp: checksum.transport == .udp,
                ipHeader: checksum.ipv4Header, transportHeaderOffset: checksum.transportOffset)
            infos.append(PerPacketInfo(type: .checksum, value: info.rawValue))
        }
        return infos
    }
}

/// An Ethernet frame (destination MAC first, no FCS) and the offload that travels with it.
public struct NetworkFrame: Hashable, Sendable {
    public var bytes: [UInt8]
    public var offload: FrameOffload

    public init(bytes: [UInt8], offload: FrameOffload = .none) {
        self.bytes = bytes
        self.offload = offload
    }

    /// Size of the Ethernet header without a VLAN tag.
    public static let ethernetHeaderSize = 14

    /// Size of an 802.1Q tag (TPID and tag control), inserted after the MAC addresses.
    public static let vlanTagSize = 4

    /// Largest frame a port with `mtu` bytes of IP takes without a segmentation request: the
    /// MTU, the Ethernet header and an in-line 802.1Q tag.
    public static func largestFrameSize(mtu: Int) -> Int { mtu + ethernetHeaderSize + vlanTagSize }

    /// Largest frame that may carry a segmentation request, and so the largest a NIC or the
    /// switch admits: IP's 16-bit length (65,535), an IPv6 header that length leaves out (40),
    /// the Ethernet header and an 802.1Q tag. 65,593 bytes.
    public static let largestSegmentedFrameSize = 65535 + 40 + ethernetHeaderSize + vlanTagSize

    /// No bytes, no offload: what a frame moved out of a collection leaves behind (an empty
    /// array's storage is shared, so it costs no allocation).
    public static var empty: NetworkFrame { NetworkFrame(bytes: [], offload: FrameOffload()) }
}
