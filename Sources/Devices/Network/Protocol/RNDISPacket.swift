import HyperV

/// Where the parts of a PACKET message lie, without copying them (`struct rndis_packet`, 36
/// bytes after the 8-byte header): data_offset @8, data_len @12, oob offset/len/count
/// @16/@20/@24, per_pkt_info_offset @28, per_pkt_info_len @32, vc_handle @36, reserved @40.
/// Every offset counts from byte 8.
public struct RNDISPacketLayout: Hashable, Sendable {
    /// Size of the header including {type, msg_len}.
    public static let headerSize = 44
    /// The largest header the host puts before a received frame: the PACKET header and three
    /// PPIs of 4-byte values (checksum, VLAN, hash).
    public static let maximumReceiveHeaderSize = headerSize + 3 * (PerPacketInfo.headerSize + 4)
    /// Most per-packet-information elements a parser accepts.
    public static let maximumPerPacketInfoCount = 32

    /// Absolute offset of the frame in the parsed bytes.
    public var dataStart: Int
    /// Length of the frame.
    public var dataCount: Int
    /// The per-packet information, in wire order.
    public var perPacketInfo: [PerPacketInfo]

    /// Parses the PACKET message of `length` bytes at `offset` of `bytes` (its {type, msg_len}
    /// already checked): the frame and every PPI must lie inside the message.
    public init(parsing bytes: [UInt8], at offset: Int, length: Int) throws(NetworkProtocolError) {
        guard offset >= 0, length >= 0, offset <= bytes.count, length <= bytes.count - offset else {
            throw .badLayout("PACKET bounds")
        }
        guard length >= RNDISPacketLayout.headerSize,
            let dataOffset = bytes.littleEndian(UInt32.self, at: offset + 8),
            let dataLength = bytes.littleEndian(UInt32.self, at: offset + 12),
            let infoOffset = bytes.littleEndian(UInt32.self, at: offset + 28),
            let infoLength = bytes.littleEndian(UInt32.self, at: offset + 32)
        else { throw .truncated(needed: RNDISPacketLayout.headerSize, available: length) }
        let dataFirst = UInt64(RNDISMessage.headerSize) + UInt64(dataOffset)
        guard dataFirst + UInt64(dataLength) <= UInt64(length) else { throw .badLayout("PACKET data_offset/data_len") }
        dataStart = offset + Int(dataFirst)
        dataCount = Int(dataLength)
        var infos: [PerPacketInfo] = []
        if infoLength > 0 {
            let infoFirst = UInt64(RNDISMessage.headerSize) + UInt64(infoOffset)
            guard infoFirst + UInt64(infoLength) <= UInt64(length) else {
                throw .badLayout("PACKET per_pkt_info_offset/len")
            }
            var position = offset + Int(infoFirst)
            var remaining = Int(infoLength)
            while remaining > 0 {
                guard infos.count < RNDISPacketLayout.maximumPerPacketInfoCount else {
                    throw .badLayout("PACKET per-packet info count")
                }
                guard remaining >= PerPacketInfo.headerSize,
                    let size = bytes.littleEndian(UInt32.self, at: position),
                    let typeWord = bytes.littleEndian(UInt32.self, at: position + 4),
                    let payloadOffset = bytes.littleEndian(UInt32.self, at: position + 8)
                else { throw .badLayout("PACKET per-packet info header") }
                guard size >= UInt32(PerPacketInfo.headerSize), UInt64(size) <= UInt64(remaining),
                    payloadOffset >= UInt32(PerPacketInfo.headerSize), payloadOffset <= size
                else { throw .badLayout("PACKET per-packet info size/ppi_offset") }
                let payloadStart = position + Int(payloadOffset)
                let payloadEnd = position + Int(size)
                infos.append(PerPacketInfo(
                    type: PerPacketInfoType(rawValue: typeWord & 0x7FFF_FFFF), isInternal: typeWord & 0x8000_0000 != 0,
                    payload: Array(bytes[payloadStart..<payloadEnd])))
                position += Int(size)
                remaining -= Int(size)
            }
        }
        perPacketInfo = infos
    }

    /// The first element of `type` (external types only unless `internal`).
    public func info(_ type: PerPacketInfoType, isInternal: Bool = false) -> PerPacketInfo? {
        perPacketInfo.first { $0.type == type && $0.isInternal == isInternal }
    }

    /// The PACKET header and PPIs for a frame of `dataCount` bytes that follows them directly,
    /// with msg_len covering the frame and `padding` more bytes. Linux puts the PPIs at offset
    /// 36 (right after the header) and the frame right after the PPIs. Without PPIs the
    /// per-packet-info offset is 0: Linux's receive path logs "Invalid per_pkt_info_len" for
    /// every packet whose offset is set and whose length is 0 (`rndis_filter.c: rndis_get_ppi`).
    public static func header(dataCount: Int, perPacketInfo: [PerPacketInfo], padding: Int = 0) -> [UInt8] {
        var bytes: [UInt8] = []
        header(dataCount: dataCount, perPacketInfo: perPacketInfo, padding: padding, into: &bytes)
        return bytes
    }

    /// The same header, replacing the contents of `bytes` (a caller that keeps the array
    /// between frames builds each header without allocating).
    public static func header(dataCount: Int, perPacketInfo: [PerPacketInfo], padding: Int = 0, into bytes: inout [UInt8]) {
        var infoCount = 0
        for info in perPacketInfo { infoCount += info.size }
        let messageLength = headerSize + infoCount + dataCount + padding
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: repeatElement(0, count: headerSize))
        bytes.storeLittleEndian(RNDISMessageType.packet.rawValue, at: 0)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: messageLength), at: 4)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: headerSize - RNDISMessage.headerSize + infoCount), at: 8)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: dataCount), at: 12)
        bytes.storeLittleEndian(infoCount == 0 ? 0 : UInt32(headerSize - RNDISMessage.headerSize), at: 28)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: infoCount), at: 32)
        for info in perPacketInfo { info.append(to: &bytes) }
    }
}

/// A PACKET message with its frame copied out: what the guest driver builds and parses.
public struct RNDISPacket: Hashable, Sendable {
    /// The Ethernet frame.
    public var data: [UInt8]
    /// The per-packet information.
    public var perPacketInfo: [PerPacketInfo]

    public init(data: [UInt8], perPacketInfo: [PerPacketInfo] = []) {
        self.data = data
        self.perPacketInfo = perPacketInfo
    }

    /// Parses the PACKET message of `length` bytes at `offset`.
    public init(parsing bytes: [UInt8], at offset: Int, length: Int) throws(NetworkProtocolError) {
        let layout = try RNDISPacketLayout(parsing: bytes, at: offset, length: length)
        data = Array(bytes[layout.dataStart..<(layout.dataStart + layout.dataCount)])
        perPacketInfo = layout.perPacketInfo
    }

    /// The encoded message, its msg_len padded up to a multiple of `alignment` (1: no padding),
    /// as Linux pads every message of a batch but the last.
    public func bytes(alignment: Int = 1) -> [UInt8] {
        let unpadded = RNDISPacketLayout.headerSize + perPacketInfo.reduce(0) { $0 + $1.size } + data.count
        let step = max(alignment, 1)
        let padding = (step - unpadded % step) % step
        var bytes = RNDISPacketLayout.header(dataCount: data.count, perPacketInfo: perPacketInfo, padding: padding)
        bytes += data
        bytes += [UInt8].zeros(padding)
        return bytes
    }
}
