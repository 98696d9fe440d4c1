import HyperV

/// INITIALIZE_CMPLT (`struct rndis_initialize_complete`), 52 bytes with the header: req_id @8,
/// status @12, major @16, minor @20, dev_flags @24, medium @28, max_pkt_per_msg @32,
/// max_xfer_size @36, pkt_alignment_factor @40, af_list_offset @44, af_list_size @48.
public struct RNDISInitializeComplete: Hashable, Sendable {
    /// Length of the whole message.
    public static let size = 52

    public var requestID: UInt32
    public var status: RNDISStatus
    public var majorVersion: UInt32
    public var minorVersion: UInt32
    /// 1 = connectionless (`RNDIS_DF_CONNECTIONLESS`).
    public var deviceFlags: UInt32
    /// 0 = 802.3.
    public var medium: UInt32
    /// Most PACKET messages per transfer; Linux batches only if > 1.
    public var maximumPacketsPerMessage: UInt32
    /// Largest message the device accepts.
    public var maximumTransferSize: UInt32
    /// Batched packets are aligned to 1 << this.
    public var packetAlignmentFactor: UInt32

    public init(requestID: UInt32, status: RNDISStatus = .success, majorVersion: UInt32 = 1, minorVersion: UInt32 = 0,
                deviceFlags: UInt32 = 1, medium: UInt32 = 0, maximumPacketsPerMessage: UInt32,
                maximumTransferSize: UInt32, packetAlignmentFactor: UInt32) {
        self.requestID = requestID
        self.status = status
        self.majorVersion = majorVersion
        self.minorVersion = minorVersion
        self.deviceFlags = deviceFlags
        self.medium = medium
        self.maximumPacketsPerMessage = maximumPacketsPerMessage
        self.maximumTransferSize = maximumTransferSize
        self.packetAlignmentFactor = packetAlignmentFactor
    }
}

/// A QUERY or SET request (`struct rndis_query_request` / `rndis_set_request`), 28 bytes with
/// the header, then the information buffer: req_id @8, oid @12, info_buflen @16,
/// info_buf_offset @20 (counted from byte 8), dev_vc_handle @24.
public struct RNDISRequest: Hashable, Sendable {
    /// Length of the fixed part, header included.
    public static let headerSize = 28

    public var requestID: UInt32
    public var oid: RNDISObjectID
    /// The information buffer: the value to set, or the template a query carries.
    public var information: [UInt8]

    public init(requestID: UInt32, oid: RNDISObjectID, information: [UInt8] = []) {
        self.requestID = requestID
        self.oid = oid
        self.information = information
    }
}

/// One RNDIS message (`struct rndis_message`): u32 type @0, u32 msg_len @4 (whole message,
/// padding included), then the type's fields.
public enum RNDISMessage: Hashable, Sendable {
    /// PACKET (1): a data frame with per-packet information.
    case packet(RNDISPacket)
    /// INITIALIZE (2): req_id @8, major @12, minor @16, max_xfer_size @20.
    case initialize(requestID: UInt32, majorVersion: UInt32, minorVersion: UInt32, maximumTransferSize: UInt32)
    /// INITIALIZE completion.
    case initializeComplete(RNDISInitializeComplete)
    /// HALT (3): req_id @8. Never answered.
    case halt(requestID: UInt32)
    /// QUERY (4).
    case query(RNDISRequest)
    /// QUERY completion: req_id @8, status @12, info_buflen @16, info_buf_offset @20 (from byte
    /// 8). Encoded with offset 16 (data at 24) even when empty: Linux needs offset ≥ 16.
    case queryComplete(requestID: UInt32, status: RNDISStatus, information: [UInt8])
    /// SET (5).
    case set(RNDISRequest)
    /// SET completion: req_id @8, status @12.
    case setComplete(requestID: UInt32, status: RNDISStatus)
    /// RESET (6): reserved @8.
    case reset
    /// RESET completion: status @8, addressing_reset @12.
    case resetComplete(status: RNDISStatus, addressingReset: UInt32)
    /// INDICATE_STATUS (7): status @8, status_buflen @12, status_buf_offset @16 (from byte 8).
    case indicateStatus(status: RNDISStatus, buffer: [UInt8])
    /// KEEPALIVE (8): req_id @8.
    case keepalive(requestID: UInt32)
    /// KEEPALIVE completion: req_id @8, status @12.
    case keepaliveComplete(requestID: UInt32, status: RNDISStatus)
    /// Any other type, with its declared length.
    case other(type: RNDISMessageType)

    /// Size of {type, msg_len}.
    public static let headerSize = 8
    /// Most bytes of an information or status buffer a parser copies (Linux rejects responses
    /// over `sizeof(rndis_message)` + 4096; requests carry at most a few hundred bytes).
    public static let maximumInformationSize = 64 * 1024

    /// The message type.
    public var type: RNDISMessageType {
        switch self {
        case .packet: .packet
        case .initialize: .initialize
        case .initializeComplete: .initializeComplete
        case .halt: .halt
        case .query: .query
        case .queryComplete: .queryComplete
        case .set: .set
        case .setComplete: .setComplete
        case .reset: .reset
        case .resetComplete: .resetComplete
        case .indicateStatus: .indicateStatus
        case .keepalive: .keepalive
        case .keepaliveComplete: .keepaliveComplete
        case .other(let type): type
        }
    }

    /// Reads {type, msg_len} at `offset` and checks the message lies within `limit`.
    /// - Returns: the type and msg_len.
    public static func header(in bytes: [UInt8], at offset: Int, limit: Int) throws(NetworkProtocolError)
        -> (type: RNDISMessageType, length: Int)
    {
        guard offset >= 0, limit <= bytes.count, offset <= limit else { throw .badLayout("RNDIS message bounds") }
        guard limit - offset >= headerSize, let type = bytes.littleEndian(UInt32.self, at: offset),
            let length = bytes.littleEndian(UInt32.self, at: offset + 4)
        else { throw .truncated(needed: headerSize, available: limit - offset) }
        guard length >= UInt32(headerSize) else { throw .badLayout("RNDIS msg_len below the header") }
        guard UInt64(length) <= UInt64(limit - offset) else {
            throw .truncated(needed: Int(clamping: length), available: limit - offset)
        }
        return (RNDISMessageType(rawValue: type), Int(length))
    }

    /// Parses the message at `offset` of `bytes`; it must end (by its msg_len) at or before
    /// `limit` (default: the end of `bytes`).
    /// - Returns: the message and its msg_len, the distance to the next message of a batch.
    public static func parse(_ bytes: [UInt8], at offset: Int = 0, limit: Int? = nil) throws(NetworkProtocolError)
        -> (message: RNDISMessage, length: Int)
    {
        let end = limit ?? bytes.count
        let (type, length) = try header(in: bytes, at: offset, limit: end)
        func u32(_ field: Int) throws(NetworkProtocolError) -> UInt32 {
            guard field + 4 <= length, let value = bytes.littleEndian(UInt32.self, at: offset + field) else {
                throw .truncated(needed: field + 4, available: length)
            }
            return value
        }
        /// The buffer of `count` bytes at `start` (from byte 8) inside this message.
        func buffer(start: UInt32, count: UInt32, field: String) throws(NetworkProtocolError) -> [UInt8] {
            if count == 0 { return [] }
            guard count <= UInt32(maximumInformationSize) else { throw .badLayout(field) }
            let first = UInt64(headerSize) + UInt64(start)
            guard first + UInt64(count) <= UInt64(length) else { throw .badLayout(field) }
            return Array(bytes[(offset + Int(first))..<(offset + Int(first) + Int(count))])
        }
        let message: RNDISMessage
        switch type {
        case .packet:
            message = .packet(try RNDISPacket(parsing: bytes, at: offset, length: length))
        case .initialize:
            message = .initialize(requestID: try u32(8), majorVersion: try u32(12), minorVersion: try u32(16),
                                  maximumTransferSize: try u32(20))
        case .initializeComplete:
            message = .initializeComplete(RNDISInitializeComplete(
                requestID: try u32(8), status: RNDISStatus(rawValue: try u32(12)), majorVersion: try u32(16),
                minorVersion: try u32(20), deviceFlags: try u32(24), medium: try u32(28),
                maximumPacketsPerMessage: try u32(32), maximumTransferSize: try u32(36),
                packetAlignmentFactor: try u32(40)))
        case .halt:
            message = .halt(requestID: try u32(8))
        case .query, .set:
            let request = RNDISRequest(
                requestID: try u32(8), oid: RNDISObjectID(rawValue: try u32(12)),
                information: try buffer(start: try u32(20), count: try u32(16), field: "request info_buf"))
            _ = try u32(24)
            message = type == .query ? .query(request) : .set(request)
        case .queryComplete:
            message = .queryComplete(
                requestID: try u32(8), status: RNDISStatus(rawValue: try u32(12)),
                information: try buffer(start: try u32(20), count: try u32(16), field: "QUERY_C info_buf"))
        case .setComplete:
            message = .setComplete(requestID: try u32(8), status: RNDISStatus(rawValue: try u32(12)))
        case .reset:
            _ = try u32(8)
            message = .reset
        case .resetComplete:
            message = .resetComplete(status: RNDISStatus(rawValue: try u32(8)), addressingReset: try u32(12))
        case .indicateStatus:
            message = .indicateStatus(
                status: RNDISStatus(rawValue: try u32(8)),
                buffer: try buffer(start: try u32(16), count: try u32(12), field: "INDICATE status_buf"))
        case .keepalive:
            message = .keepalive(requestID: try u32(8))
        case .keepaliveComplete:
            message = .keepaliveComplete(requestID: try u32(8), status: RNDISStatus(rawValue: try u32(12)))
        default:
            message = .other(type: type)
        }
        return (message, length)
    }

    /// The encoded message; msg_len is its exact length (a PACKET is encoded without padding;
    /// use `RNDISPacket.bytes(alignment:)` to pad one for batching).
    public var bytes: [UInt8] {
        var bytes: [UInt8]
        func start(_ size: Int) -> [UInt8] {
            var bytes: [UInt8] = .zeros(size)
            bytes.storeLittleEndian(type.rawValue, at: 0)
            bytes.storeLittleEndian(UInt32(truncatingIfNeeded: size), at: 4)
            return bytes
        }
        switch self {
        case .packet(let packet):
            return packet.bytes()
        case .initialize(let requestID, let major, let minor, let maximumTransfer):
            bytes = start(24)
            bytes.storeLittleEndian(requestID, at: 8)
            bytes.storeLittleEndian(major, at: 12)
            bytes.storeLittleEndian(minor, at: 16)
            bytes.storeLittleEndian(maximumTransfer, at: 20)
        case .initializeComplete(let complete):
            bytes = start(RNDISInitializeComplete.size)
            bytes.storeLittleEndian(complete.requestID, at: 8)
            bytes.storeLittleEndian(complete.status.rawValue, at: 12)
            bytes.storeLittleEndian(complete.majorVersion, at: 16)
            bytes.storeLittleEndian(complete.minorVersion, at: 20)
            bytes.storeLittleEndian(complete.deviceFlags, at: 24)
            bytes.storeLittleEndian(complete.medium, at: 28)
            bytes.storeLittleEndian(complete.maximumPacketsPerMessage, at: 32)
            bytes.storeLittleEndian(complete.maximumTransferSize, at: 36)
            bytes.storeLittleEndian(complete.packetAlignmentFactor, at: 40)
        case .halt(let requestID), .keepalive(let requestID):
            bytes = start(12)
            bytes.storeLittleEndian(requestID, at: 8)
        case .query(let request), .set(let request):
            bytes = start(RNDISRequest.headerSize + request.information.count)
            bytes.storeLittleEndian(request.requestID, at: 8)
            bytes.storeLittleEndian(request.oid.rawValue, at: 12)
            bytes.storeLittleEndian(UInt32(truncatingIfNeeded: request.information.count), at: 16)
            bytes.storeLittleEndian(UInt32(RNDISRequest.headerSize - RNDISMessage.headerSize), at: 20)
            bytes.replaceSubrange(RNDISRequest.headerSize..., with: request.information)
        case .queryComplete(let requestID, let status, let information):
            bytes = start(24 + information.count)
            bytes.storeLittleEndian(requestID, at: 8)
            bytes.storeLittleEndian(status.rawValue, at: 12)
            bytes.storeLittleEndian(UInt32(truncatingIfNeeded: information.count), at: 16)
            bytes.storeLittleEndian(UInt32(16), at: 20)
            bytes.replaceSubrange(24..., with: information)
        case .setComplete(let requestID, let status), .keepaliveComplete(let requestID, let status):
            bytes = start(16)
            bytes.storeLittleEndian(requestID, at: 8)
            bytes.storeLittleEndian(status.rawValue, at: 12)
        case .reset:
            bytes = start(12)
        case .resetComplete(let status, let addressingReset):
            bytes = start(16)
            bytes.storeLittleEndian(status.rawValue, at: 8)
            bytes.storeLittleEndian(addressingReset, at: 12)
        case .indicateStatus(let status, let buffer):
            bytes = start(20 + buffer.count)
            bytes.storeLittleEndian(status.rawValue, at: 8)
            bytes.storeLittleEndian(UInt32(truncatingIfNeeded: buffer.count), at: 12)
            bytes.storeLittleEndian(UInt32(12), at: 16)
            bytes.replaceSubrange(20..., with: buffer)
        case .other:
            bytes = start(8)
        }
        return bytes
    }
}
