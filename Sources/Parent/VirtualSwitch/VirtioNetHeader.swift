import HyperV
import NetworkProtocol

/// The virtio-net header that precedes every frame on a TAP opened with IFF_VNET_HDR and on a
/// packet socket with PACKET_VNET_HDR (`struct virtio_net_hdr_v1`, virtio 1.x §5.1.6,
/// little-endian): flags u8 @0 (1 NEEDS_CSUM, 2 DATA_VALID), gso_type u8 @1 (0 none, 1 TCPv4,
/// 3 UDP, 4 TCPv6, 0x80 ECN), hdr_len u16 @2, gso_size u16 @4, csum_start u16 @6,
/// csum_offset u16 @8, num_buffers u16 @10 (the 12-byte form set with TUNSETVNETHDRSZ).
public struct VirtioNetHeader: Hashable, Sendable {
    /// The size used on TAP ports (TUNSETVNETHDRSZ 12).
    public static let size = 12
    /// The size without num_buffers, used on packet sockets.
    public static let legacySize = 10

    public static let needsChecksum: UInt8 = 1
    public static let dataValid: UInt8 = 2
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoECN: UInt8 = 0x80

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0

    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// Reads the header at the start of `bytes`, or `nil` if it is shorter than 10 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= VirtioNetHeader.legacySize, let length = bytes.littleEndian(UInt16.self, at: 2),
            let gso = bytes.littleEndian(UInt16.self, at: 4), let start = bytes.littleEndian(UInt16.self, at: 6),
            let offset = bytes.littleEndian(UInt16.self, at: 8)
        else { return nil }
        self.init(flags: bytes[0], gsoType: bytes[1], headerLength: length, gsoSize: gso, checksumStart: start,
                  checksumOffset: offset)
    }

    /// The `size`-byte encoding (num_buffers 0).
    public func bytes(size: Int = VirtioNetHeader.size) -> [UInt8] {
        var bytes: [UInt8] = .zeros(size)
        bytes[0] = flags
        bytes[1] = gsoType
        bytes.storeLittleEndian(headerLength, at: 2)
        bytes.storeLittleEndian(gsoSize, at: 4)
        bytes.storeLittleEndian(checksumStart, at: 6)
        bytes.storeLittleEndian(checksumOffset, at: 8)
        return bytes
    }

    /// The header for a frame already resolved for a virtio destination
    /// (`SoftwareOffload.resolve(_:for: .virtio)`: lengths fixed, VLAN in line).
    public init(for frame: NetworkFrame) {
        self.init()
        let offload = frame.offload
        if let segmentation = offload.segmentation {
            let tcpHeader = segmentation.transportOffset + 12 < frame.bytes.count
                ? Int(frame.bytes[segmentation.transportOffset + 12] >> 4) * 4 : 20
            gsoType = segmentation.isIPv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4
            gsoSize = UInt16(clamping: segmentation.maximumSegmentSize)
            headerLength = UInt16(clamping: segmentation.transportOffset + tcpHeader)
            flags = VirtioNetHeader.needsChecksum
            checksumStart = UInt16(clamping: segmentation.transportOffset)
            checksumOffset = 16
        } else if let checksum = offload.checksum {
            flags = VirtioNetHeader.needsChecksum
            checksumStart = UInt16(clamping: checksum.transportOffset)
            checksumOffset = UInt16(checksum.checksumFieldOffset)
        } else if offload.receiveChecksum?.transportValid == true {
            flags = VirtioNetHeader.dataValid
        }
    }

    /// What this header says about `frame` as switch metadata.
    /// - Returns: `nil` for requests the switch cannot express (UDP fragmentation offload, a
    ///   checksum field that is neither TCP's nor UDP's).
    public func offload(for frame: [UInt8]) -> FrameOffload? {
        var offload = FrameOffload()
        let isIPv6 = EthernetHeaders.network(frame)?.etherType == EthernetHeaders.etherTypeIPv6
        let type = gsoType & ~VirtioNetHeader.gsoECN
        if type != VirtioNetHeader.gsoNone {
            guard type == VirtioNetHeader.gsoTCPv4 || type == VirtioNetHeader.gsoTCPv6, gsoSize > 0 else { return nil }
            offload.segmentation = .init(maximumSegmentSize: Int(gsoSize), transportOffset: Int(checksumStart),
                                         isIPv6: type == VirtioNetHeader.gsoTCPv6)
        } else if flags & VirtioNetHeader.needsChecksum != 0 {
            let transport: FrameOffload.TransportProtocol
            switch checksumOffset {
            case 16: transport = .tcp
            case 6: transport = .udp
            default: return nil
            }
            offload.checksum = .init(transport: transport, transportOffset: Int(checksumStart), isIPv6: isIPv6)
        } else if flags & VirtioNetHeader.dataValid != 0 {
            offload.receiveChecksum = .init(transportValid: true, ipv4HeaderValid: true)
        }
        return offload
    }
}
