import HyperV

/// The type of a per-packet-information element (`enum ndis_per_pkt_info_type` in Linux
/// `hyperv_net.h`); bit 31 of the wire field marks Hyper-V internal types (`internal`).
public struct PerPacketInfoType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// 0: TCP/UDP/IP checksum request (TX) or result (RX).
    public static let checksum = PerPacketInfoType(rawValue: 0)
    /// 2: large send offload (LSOv2 on TX).
    public static let largeSend = PerPacketInfoType(rawValue: 2)
    /// 6: 802.1Q tag stripped from (TX) or for (RX) the frame.
    public static let ieee8021Q = PerPacketInfoType(rawValue: 6)
    /// 8: the receive/transmit flow hash (`NBL_HASH_VALUE`).
    public static let hashValue = PerPacketInfoType(rawValue: 8)
    /// Internal type 1 (`RNDIS_PKTINFO_ID`): RSC fragment chaining; only meaningful with the
    /// internal bit.
    public static let packetID = PerPacketInfoType(rawValue: 1)
}

/// One per-packet-information element (`struct rndis_per_packet_info`): u32 size @0 (header +
/// payload), u32 type:31 + internal:1 @4, u32 ppi_offset @8 (payload offset from the element),
/// then the payload.
public struct PerPacketInfo: Hashable, Sendable {
    /// Size of the element header.
    public static let headerSize = 12

    public var type: PerPacketInfoType
    /// Bit 31 of the type word.
    public var isInternal: Bool
    /// The payload (4 bytes for every type netvsc uses).
    public var payload: [UInt8]

    public init(type: PerPacketInfoType, isInternal: Bool = false, payload: [UInt8]) {
        self.type = type
        self.isInternal = isInternal
        self.payload = payload
    }

    /// An element with a u32 payload.
    public init(type: PerPacketInfoType, value: UInt32, isInternal: Bool = false) {
        var payload: [UInt8] = .zeros(4)
        payload.storeLittleEndian(value, at: 0)
        self.init(type: type, isInternal: isInternal, payload: payload)
    }

    /// The payload as a u32, or `nil` if it is shorter.
    public var value: UInt32? { payload.littleEndian(UInt32.self, at: 0) }

    /// Size on the wire.
    public var size: Int { PerPacketInfo.headerSize + payload.count }

    /// Appends the element.
    public func append(to bytes: inout [UInt8]) {
        bytes.appendLittleEndian(UInt32(truncatingIfNeeded: size))
        bytes.appendLittleEndian(type.rawValue & 0x7FFF_FFFF | (isInternal ? 0x8000_0000 : 0))
        bytes.appendLittleEndian(UInt32(PerPacketInfo.headerSize))
        bytes += payload
    }
}

/// The checksum PPI (`struct ndis_tcp_ip_checksum_info`), a u32 read two ways.
///
/// On transmit: is_ipv4 bit 0, is_ipv6 bit 1, tcp_checksum bit 2, udp_checksum bit 3,
/// ip_header_checksum bit 4, tcp_header_offset bits 16–25 (the transport header's offset in the
/// frame). On receive: tcp/udp/ip failed bits 0–2, tcp/udp/ip succeeded bits 3–5, loopback 6,
/// tcp value invalid 7, ip value invalid 8.
public struct ChecksumInfo: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    // Transmit view.
    public var isIPv4: Bool { rawValue & 1 != 0 }
    public var isIPv6: Bool { rawValue & 2 != 0 }
    public var tcpChecksum: Bool { rawValue & 4 != 0 }
    public var udpChecksum: Bool { rawValue & 8 != 0 }
    public var ipHeaderChecksum: Bool { rawValue & 0x10 != 0 }
    public var transportHeaderOffset: Int { Int((rawValue >> 16) & 0x3FF) }

    /// A transmit request.
    public static func transmit(ipv6: Bool, tcp: Bool, udp: Bool, ipHeader: Bool = false,
                                transportHeaderOffset: Int) -> ChecksumInfo {
        var value: UInt32 = ipv6 ? 2 : 1
        if tcp { value |= 4 }
        if udp { value |= 8 }
        if ipHeader { value |= 0x10 }
        value |= (UInt32(truncatingIfNeeded: transportHeaderOffset) & 0x3FF) << 16
        return ChecksumInfo(rawValue: value)
    }

    // Receive view.
    public var tcpFailed: Bool { rawValue & 0x01 != 0 }
    public var udpFailed: Bool { rawValue & 0x02 != 0 }
    public var ipFailed: Bool { rawValue & 0x04 != 0 }
    public var tcpSucceeded: Bool { rawValue & 0x08 != 0 }
    public var udpSucceeded: Bool { rawValue & 0x10 != 0 }
    public var ipSucceeded: Bool { rawValue & 0x20 != 0 }

    /// A receive result.
    public static func received(tcpSucceeded: Bool, udpSucceeded: Bool, ipSucceeded: Bool) -> ChecksumInfo {
        var value: UInt32 = 0
        if tcpSucceeded { value |= 0x08 }
        if udpSucceeded { value |= 0x10 }
        if ipSucceeded { value |= 0x20 }
        return ChecksumInfo(rawValue: value)
    }
}

/// The LSOv2 transmit PPI (`ndis_tcp_lso_info.lso_v2_transmit`): mss bits 0–19,
/// tcp_header_offset bits 20–29, type bit 30 (1 = LSOv2), ip_version bit 31 (0 IPv4, 1 IPv6).
public struct LargeSendInfo: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public var maximumSegmentSize: Int { Int(rawValue & 0xFFFFF) }
    public var transportHeaderOffset: Int { Int((rawValue >> 20) & 0x3FF) }
    public var isVersion2: Bool { rawValue & (1 << 30) != 0 }
    public var isIPv6: Bool { rawValue & (1 << 31) != 0 }

    /// An LSOv2 request.
    public static func version2(maximumSegmentSize: Int, transportHeaderOffset: Int, ipv6: Bool) -> LargeSendInfo {
        var value = UInt32(truncatingIfNeeded: maximumSegmentSize) & 0xFFFFF
        value |= (UInt32(truncatingIfNeeded: transportHeaderOffset) & 0x3FF) << 20
        value |= 1 << 30
        if ipv6 { value |= 1 << 31 }
        return LargeSendInfo(rawValue: value)
    }
}

/// The 802.1Q PPI (`struct ndis_pkt_8021q_info`): pri bits 0–2, cfi bit 3, vlanid bits 4–15.
public struct VLANInfo: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(priority: UInt8, dropEligible: Bool = false, vlanID: UInt16) {
        rawValue = UInt32(priority & 7) | (dropEligible ? 8 : 0) | UInt32(vlanID & 0xFFF) << 4
    }
    public var priority: UInt8 { UInt8(rawValue & 7) }
    public var dropEligible: Bool { rawValue & 8 != 0 }
    public var vlanID: UInt16 { UInt16((rawValue >> 4) & 0xFFF) }

    /// The 16-bit tag control information of an in-line 802.1Q tag (PCP 15–13, DEI 12, VID 11–0).
    public var tagControl: UInt16 { UInt16(priority) << 13 | (dropEligible ? 0x1000 : 0) | vlanID }

    /// From the tag control information of an in-line tag.
    public init(tagControl: UInt16) {
        self.init(priority: UInt8(tagControl >> 13), dropEligible: tagControl & 0x1000 != 0, vlanID: tagControl & 0xFFF)
    }
}

/// The internal packet-id PPI (`struct rndis_pktinfo_id`): u8 ver @0, u8 flag @1 (bit 0
/// sub-allocation, bit 1 first fragment, bit 2 last fragment), u16 pkt_id @2.
public struct PacketIDInfo: Hashable, Sendable {
    public var version: UInt8
    public var flags: UInt8
    public var packetID: UInt16
    public init(version: UInt8 = 1, flags: UInt8, packetID: UInt16) {
        self.version = version
        self.flags = flags
        self.packetID = packetID
    }
}
