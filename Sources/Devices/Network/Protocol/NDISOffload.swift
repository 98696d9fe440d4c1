import HyperV

/// NDIS_OFFLOAD (`struct ndis_offload` in Linux `hyperv_net.h`), the answer to
/// OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES: 156 bytes at revision 3.
///
/// header {u8 type 0xA7, u8 revision, u16 size} @0; checksum: ip4_txenc @4, ip4_txcsum @8,
/// ip4_rxenc @12, ip4_rxcsum @16, ip6_txenc @20, ip6_txcsum @24, ip6_rxenc @28, ip6_rxcsum @32;
/// LSOv1 @36–51; IPsec v1 @52–79; LSOv2: ip4_encap @80, ip4_maxsz @84, ip4_minsg @88,
/// ip6_encap @92, ip6_maxsz @96, ip6_minsg @100, ip6_opts @104; flags @108; IPsec v2 @112–143;
/// rsc ip4 @144, ip6 @145 (u8); encap_gre flags @148, maxhdr @152. The fields this type does not
/// name (LSOv1, IPsec) are zero. Linux (`rndis_netdev_set_hwcaps`) needs 112 ≤ size ≤ 156.
public struct NDISOffload: Hashable, Sendable {
    /// Size at revision 3 (`sizeof(struct ndis_offload)`).
    public static let size = 156
    /// Size at revision 1 (`NDIS_OFFLOAD_SIZE_6_0`), the smallest Linux accepts.
    public static let minimumSize = 112
    /// Size at revision 2 (`NDIS_OFFLOAD_SIZE_6_1`).
    public static let revision2Size = 144
    /// `NDIS_OBJECT_TYPE_OFFLOAD`.
    public static let objectType: UInt8 = 0xA7

    /// `NDIS_OFFLOAD_ENCAP_8023`.
    public static let encapsulation8023: UInt32 = 0x02
    /// TX checksum bits for IPv4 (`NDIS_TXCSUM_CAP_*`): IP4OPT 0x01, TCP4OPT 0x04, TCP4 0x10,
    /// UDP4 0x40, IP4 0x100.
    public static let checksumTCP4: UInt32 = 0x10 | 0x04
    public static let checksumUDP4: UInt32 = 0x40
    public static let checksumIP4: UInt32 = 0x100 | 0x01
    /// IPv6: IP6EXT 0x01, TCP6OPT 0x04, TCP6 0x10, UDP6 0x40.
    public static let checksumTCP6: UInt32 = 0x10 | 0x04 | 0x01
    public static let checksumUDP6: UInt32 = 0x40 | 0x01
    /// `NDIS_LSOV2_CAP_IP6`: IP6EXT | TCP6OPT.
    public static let largeSendIPv6Options: UInt32 = 0x01 | 0x04

    public var revision: UInt8 = 3
    public var headerSize: UInt16 = UInt16(NDISOffload.size)
    public var ipv4TransmitEncapsulation: UInt32 = 0
    public var ipv4TransmitChecksum: UInt32 = 0
    public var ipv4ReceiveEncapsulation: UInt32 = 0
    public var ipv4ReceiveChecksum: UInt32 = 0
    public var ipv6TransmitEncapsulation: UInt32 = 0
    public var ipv6TransmitChecksum: UInt32 = 0
    public var ipv6ReceiveEncapsulation: UInt32 = 0
    public var ipv6ReceiveChecksum: UInt32 = 0
    public var largeSendIPv4Encapsulation: UInt32 = 0
    public var largeSendIPv4MaximumSize: UInt32 = 0
    public var largeSendIPv4MinimumSegments: UInt32 = 0
    public var largeSendIPv6Encapsulation: UInt32 = 0
    public var largeSendIPv6MaximumSize: UInt32 = 0
    public var largeSendIPv6MinimumSegments: UInt32 = 0
    public var largeSendIPv6Options: UInt32 = 0
    public var flags: UInt32 = 0
    public var rscIPv4: UInt8 = 0
    public var rscIPv6: UInt8 = 0

    /// All capabilities zero: the guest checksums and segments everything itself.
    public init() {}

    /// TCP/UDP checksum offload both ways for IPv4 and IPv6, and LSOv2 up to `maximumLargeSend`
    /// bytes (0: no LSO).
    public static func checksumAndLargeSend(maximumLargeSend: UInt32) -> NDISOffload {
        var offload = NDISOffload()
        let encapsulation = NDISOffload.encapsulation8023
        offload.ipv4TransmitEncapsulation = encapsulation
        offload.ipv4TransmitChecksum = checksumTCP4 | checksumUDP4
        offload.ipv4ReceiveEncapsulation = encapsulation
        offload.ipv4ReceiveChecksum = checksumTCP4 | checksumUDP4 | checksumIP4
        offload.ipv6TransmitEncapsulation = encapsulation
        offload.ipv6TransmitChecksum = checksumTCP6 | checksumUDP6
        offload.ipv6ReceiveEncapsulation = encapsulation
        offload.ipv6ReceiveChecksum = checksumTCP6 | checksumUDP6
        if maximumLargeSend > 0 {
            offload.largeSendIPv4Encapsulation = encapsulation
            offload.largeSendIPv4MaximumSize = maximumLargeSend
            offload.largeSendIPv4MinimumSegments = 2
            offload.largeSendIPv6Encapsulation = encapsulation
            offload.largeSendIPv6MaximumSize = maximumLargeSend
            offload.largeSendIPv6MinimumSegments = 2
            offload.largeSendIPv6Options = largeSendIPv6Options
        }
        return offload
    }

    /// Parses a structure of at least `minimumSize` bytes; fields beyond its header size read as 0.
    public init(parsing bytes: [UInt8]) throws(NetworkProtocolError) {
        guard let type = bytes.littleEndian(UInt8.self, at: 0), let revision = bytes.littleEndian(UInt8.self, at: 1),
            let size = bytes.littleEndian(UInt16.self, at: 2)
        else { throw .truncated(needed: 4, available: bytes.count) }
        guard type == NDISOffload.objectType else { throw .invalidValue("NDIS_OFFLOAD header type") }
        guard Int(size) >= NDISOffload.minimumSize, Int(size) <= bytes.count else {
            throw .badLayout("NDIS_OFFLOAD header size")
        }
        let limit = min(Int(size), NDISOffload.size)
        func u32(_ offset: Int) -> UInt32 { offset + 4 <= limit ? bytes.littleEndian(UInt32.self, at: offset) ?? 0 : 0 }
        func u8(_ offset: Int) -> UInt8 { offset < limit ? bytes[offset] : 0 }
        self.revision = revision
        headerSize = size
        ipv4TransmitEncapsulation = u32(4)
        ipv4TransmitChecksum = u32(8)
        ipv4ReceiveEncapsulation = u32(12)
        ipv4ReceiveChecksum = u32(16)
        ipv6TransmitEncapsulation = u32(20)
        ipv6TransmitChecksum = u32(24)
        ipv6ReceiveEncapsulation = u32(28)
        ipv6ReceiveChecksum = u32(32)
        largeSendIPv4Encapsulation = u32(80)
        largeSendIPv4MaximumSize = u32(84)
        largeSendIPv4MinimumSegments = u32(88)
        largeSendIPv6Encapsulation = u32(92)
        largeSendIPv6MaximumSize = u32(96)
        largeSendIPv6MinimumSegments = u32(100)
        largeSendIPv6Options = u32(104)
        flags = u32(108)
        rscIPv4 = u8(144)
        rscIPv6 = u8(145)
    }

    /// The 156 bytes.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(NDISOffload.size)
        bytes[0] = NDISOffload.objectType
        bytes[1] = revision
        bytes.storeLittleEndian(headerSize, at: 2)
        bytes.storeLittleEndian(ipv4TransmitEncapsulation, at: 4)
        bytes.storeLittleEndian(ipv4TransmitChecksum, at: 8)
        bytes.storeLittleEndian(ipv4ReceiveEncapsulation, at: 12)
        bytes.storeLittleEndian(ipv4ReceiveChecksum, at: 16)
        bytes.storeLittleEndian(ipv6TransmitEncapsulation, at: 20)
        bytes.storeLittleEndian(ipv6TransmitChecksum, at: 24)
        bytes.storeLittleEndian(ipv6ReceiveEncapsulation, at: 28)
        bytes.storeLittleEndian(ipv6ReceiveChecksum, at: 32)
        bytes.storeLittleEndian(largeSendIPv4Encapsulation, at: 80)
        bytes.storeLittleEndian(largeSendIPv4MaximumSize, at: 84)
        bytes.storeLittleEndian(largeSendIPv4MinimumSegments, at: 88)
        bytes.storeLittleEndian(largeSendIPv6Encapsulation, at: 92)
        bytes.storeLittleEndian(largeSendIPv6MaximumSize, at: 96)
        bytes.storeLittleEndian(largeSendIPv6MinimumSegments, at: 100)
        bytes.storeLittleEndian(largeSendIPv6Options, at: 104)
        bytes.storeLittleEndian(flags, at: 108)
        bytes[144] = rscIPv4
        bytes[145] = rscIPv6
        return bytes
    }
}

/// NDIS_OFFLOAD_PARAMETERS (`struct ndis_offload_params`), what the guest enables with SET
/// OID_TCP_OFFLOAD_PARAMETERS: header {0x80, revision, size} @0, then u8 ip_v4_csum @4,
/// tcp_ip_v4_csum @5, udp_ip_v4_csum @6, tcp_ip_v6_csum @7, udp_ip_v6_csum @8, lso_v1 @9,
/// ip_sec_v1 @10, lso_v2_ipv4 @11, lso_v2_ipv6 @12, tcp_connection_ip_v4 @13, _v6 @14,
/// u32 flags @16, ip_sec_v2 @20, ip_sec_v2_ip_v4 @21, rsc_ip_v4 @22, rsc_ip_v6 @23, encap @24,
/// encap types @25; 28 bytes (NVSP ≥ 5) or 22 (`VERSION_4_OFFLOAD_SIZE`).
public struct NDISOffloadParameters: Hashable, Sendable {
    /// Size at revision 3.
    public static let size = 28
    /// Size Linux sends for NVSP ≤ 4.
    public static let version4Size = 22
    /// `NDIS_OBJECT_TYPE_DEFAULT`.
    public static let objectType: UInt8 = 0x80

    /// Values of the checksum fields (`NDIS_OFFLOAD_PARAMETERS_*`).
    public enum ChecksumSetting: UInt8, Sendable {
        case noChange = 0, disabled = 1, transmitOnly = 2, receiveOnly = 3, transmitAndReceive = 4
    }
    /// LSO/RSC values: 0 no change, 1 disabled, 2 enabled.
    public static let disabled: UInt8 = 1
    public static let enabled: UInt8 = 2

    public var revision: UInt8 = 3
    public var ipv4Checksum: UInt8 = 0
    public var tcpIPv4Checksum: UInt8 = 0
    public var udpIPv4Checksum: UInt8 = 0
    public var tcpIPv6Checksum: UInt8 = 0
    public var udpIPv6Checksum: UInt8 = 0
    public var largeSendV1: UInt8 = 0
    public var largeSendV2IPv4: UInt8 = 0
    public var largeSendV2IPv6: UInt8 = 0
    public var flags: UInt32 = 0
    public var rscIPv4: UInt8 = 0
    public var rscIPv6: UInt8 = 0
    /// The size the sender used.
    public var encodedSize: Int = NDISOffloadParameters.size

    public init() {}

    /// Parses the structure; fields past its length read as "no change".
    public init(parsing bytes: [UInt8]) throws(NetworkProtocolError) {
        guard bytes.count >= 13, let type = bytes.littleEndian(UInt8.self, at: 0) else {
            throw .truncated(needed: 13, available: bytes.count)
        }
        guard type == NDISOffloadParameters.objectType else { throw .invalidValue("NDIS_OFFLOAD_PARAMETERS type") }
        func u8(_ offset: Int) -> UInt8 { offset < bytes.count ? bytes[offset] : 0 }
        revision = bytes[1]
        ipv4Checksum = u8(4)
        tcpIPv4Checksum = u8(5)
        udpIPv4Checksum = u8(6)
        tcpIPv6Checksum = u8(7)
        udpIPv6Checksum = u8(8)
        largeSendV1 = u8(9)
        largeSendV2IPv4 = u8(11)
        largeSendV2IPv6 = u8(12)
        flags = bytes.littleEndian(UInt32.self, at: 16) ?? 0
        rscIPv4 = u8(22)
        rscIPv6 = u8(23)
        encodedSize = min(bytes.count, NDISOffloadParameters.size)
    }

    /// The encoded structure, `encodedSize` bytes (28 or 22).
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(NDISOffloadParameters.size)
        bytes[0] = NDISOffloadParameters.objectType
        bytes[1] = revision
        bytes.storeLittleEndian(UInt16(truncatingIfNeeded: encodedSize), at: 2)
        bytes[4] = ipv4Checksum
        bytes[5] = tcpIPv4Checksum
        bytes[6] = udpIPv4Checksum
        bytes[7] = tcpIPv6Checksum
        bytes[8] = udpIPv6Checksum
        bytes[9] = largeSendV1
        bytes[11] = largeSendV2IPv4
        bytes[12] = largeSendV2IPv6
        bytes.storeLittleEndian(flags, at: 16)
        bytes[22] = rscIPv4
        bytes[23] = rscIPv6
        return Array(bytes.prefix(max(13, min(encodedSize, NDISOffloadParameters.size))))
    }
}
