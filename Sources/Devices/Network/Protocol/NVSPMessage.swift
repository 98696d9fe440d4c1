import HyperV

/// One NVSP message (`struct nvsp_message` in Linux `drivers/net/hyperv/hyperv_net.h`): u32
/// msg_type @0, then the type's fields. It is the payload of INBAND, GPA-direct, transfer-page
/// and completion packets on a netvsc channel.
///
/// Encoders pad every message to the 40-byte `sizeof(struct nvsp_message)` (Linux's length
/// checks for some completions need ≥ 28 bytes); parsers need only the fields they read, so
/// the 8-byte receive completion Linux sends ({108, status}) parses.
public enum NVSPMessage: Hashable, Sendable {
    /// INIT (1): @4 min_protocol_ver, @8 max_protocol_ver (Linux sends both equal).
    case initialize(minimum: NVSPVersion, maximum: NVSPVersion)
    /// INIT_COMPLETE (2): @4 negotiated_protocol_ver, @8 max_mdl_chain_len, @12 status.
    case initializeComplete(negotiated: NVSPVersion, maximumMDLChainLength: UInt32, status: NVSPStatus)
    /// SEND_NDIS_VER (100): @4 ndis_major_ver, @8 ndis_minor_ver.
    case sendNDISVersion(major: UInt32, minor: UInt32)
    /// SEND_NDIS_CONFIG (125): @4 mtu, @8 reserved, @12 u64 capability.
    case sendNDISConfig(mtu: UInt32, capabilities: NDISConfigCapabilities)
    /// SEND_RECV_BUF (101): @4 gpadl_handle, @8 u16 id.
    case sendReceiveBuffer(gpadl: UInt32, id: UInt16)
    /// SEND_RECV_BUF_COMPLETE (102): @4 status, @8 num_sections, @12 sections (16 bytes each).
    case sendReceiveBufferComplete(status: NVSPStatus, sections: [ReceiveBufferSection])
    /// REVOKE_RECV_BUF (103): @4 u16 id.
    case revokeReceiveBuffer(id: UInt16)
    /// SEND_SEND_BUF (104): @4 gpadl_handle, @8 u16 id.
    case sendSendBuffer(gpadl: UInt32, id: UInt16)
    /// SEND_SEND_BUF_COMPLETE (105): @4 status, @8 section_size.
    case sendSendBufferComplete(status: NVSPStatus, sectionSize: UInt32)
    /// REVOKE_SEND_BUF (106): @4 u16 id.
    case revokeSendBuffer(id: UInt16)
    /// SEND_RNDIS_PKT (107): @4 channel_type, @8 send_buf_section_index, @12 send_buf_section_size.
    case sendRNDISPacket(channel: RNDISChannelType, sectionIndex: UInt32, sectionSize: UInt32)
    /// SEND_RNDIS_PKT_COMPLETE (108): @4 status.
    case sendRNDISPacketComplete(status: NVSPStatus)
    /// SUBCHANNEL (133) request: @4 op (1 = allocate), @8 num_subchannels.
    case subchannelRequest(operation: UInt32, count: UInt32)
    /// SUBCHANNEL (133) completion: @4 status, @8 number allocated.
    case subchannelComplete(status: NVSPStatus, count: UInt32)
    /// SEND_INDIRECTION_TABLE (134): @4 count, @8 offset of the u32 table from the message start.
    /// Encoded with the table right after the 40-byte message (offset 40), where Linux ≤ NVSP 6
    /// looks for it whatever the offset says.
    case sendIndirectionTable(entries: [UInt32])
    /// Any other type: kept so the receiver can answer or count it.
    case other(type: NVSPMessageType)

    /// SUBCHANNEL op ALLOCATE (`NVSP_SUBCHANNEL_ALLOCATE`).
    public static let subchannelAllocate: UInt32 = 1
    /// Most indirection-table entries a parser accepts (`VRSS_CHANNEL_MAX` × 2).
    public static let maximumIndirectionEntries = 128

    /// The message type.
    public var type: NVSPMessageType {
        switch self {
        case .initialize: .initialize
        case .initializeComplete: .initializeComplete
        case .sendNDISVersion: .sendNDISVersion
        case .sendNDISConfig: .sendNDISConfig
        case .sendReceiveBuffer: .sendReceiveBuffer
        case .sendReceiveBufferComplete: .sendReceiveBufferComplete
        case .revokeReceiveBuffer: .revokeReceiveBuffer
        case .sendSendBuffer: .sendSendBuffer
        case .sendSendBufferComplete: .sendSendBufferComplete
        case .revokeSendBuffer: .revokeSendBuffer
        case .sendRNDISPacket: .sendRNDISPacket
        case .sendRNDISPacketComplete: .sendRNDISPacketComplete
        case .subchannelRequest, .subchannelComplete: .subchannel
        case .sendIndirectionTable: .sendIndirectionTable
        case .other(let type): type
        }
    }

    /// Parses the message in `bytes[offset..<offset+count]`.
    /// - Parameter completion: the bytes are the payload of a completion packet; decides between
    ///   the request and completion forms of SUBCHANNEL, the one type both directions share.
    /// - Throws: `NetworkProtocolError` if the type's fields do not fit or are inconsistent.
    public init(parsing bytes: [UInt8], at offset: Int = 0, count: Int? = nil, completion: Bool = false)
        throws(NetworkProtocolError)
    {
        let available = count ?? (bytes.count - offset)
        guard offset >= 0, available >= 0, offset <= bytes.count, available <= bytes.count - offset else {
            throw .badLayout("NVSP message bounds")
        }
        // Read only inside the message.
        func u32(_ field: Int) throws(NetworkProtocolError) -> UInt32 {
            guard field + 4 <= available, let value = bytes.littleEndian(UInt32.self, at: offset + field) else {
                throw .truncated(needed: field + 4, available: available)
            }
            return value
        }
        func u16(_ field: Int) throws(NetworkProtocolError) -> UInt16 {
            guard field + 2 <= available, let value = bytes.littleEndian(UInt16.self, at: offset + field) else {
                throw .truncated(needed: field + 2, available: available)
            }
            return value
        }
        func u64(_ field: Int) throws(NetworkProtocolError) -> UInt64 {
            guard field + 8 <= available, let value = bytes.littleEndian(UInt64.self, at: offset + field) else {
                throw .truncated(needed: field + 8, available: available)
            }
            return value
        }
        let type = NVSPMessageType(rawValue: try u32(0))
        switch type {
        case .initialize:
            self = .initialize(minimum: NVSPVersion(rawValue: try u32(4)), maximum: NVSPVersion(rawValue: try u32(8)))
        case .initializeComplete:
            self = .initializeComplete(
                negotiated: NVSPVersion(rawValue: try u32(4)), maximumMDLChainLength: try u32(8),
                status: NVSPStatus(rawValue: try u32(12)))
        case .sendNDISVersion:
            self = .sendNDISVersion(major: try u32(4), minor: try u32(8))
        case .sendNDISConfig:
            self = .sendNDISConfig(mtu: try u32(4), capabilities: NDISConfigCapabilities(rawValue: try u64(12)))
        case .sendReceiveBuffer:
            self = .sendReceiveBuffer(gpadl: try u32(4), id: try u16(8))
        case .sendReceiveBufferComplete:
            let status = NVSPStatus(rawValue: try u32(4))
            let sectionCount = try u32(8)
            // Each section takes 16 bytes, so the count is bounded by the bytes present.
            guard UInt64(sectionCount) <= UInt64(max(available - 12, 0) / ReceiveBufferSection.size) else {
                throw .badLayout("SEND_RECV_BUF_COMPLETE num_sections")
            }
            var sections: [ReceiveBufferSection] = []
            for index in 0..<Int(sectionCount) {
                guard let section = ReceiveBufferSection(bytes: bytes, at: offset + 12 + index * ReceiveBufferSection.size)
                else { throw .truncated(needed: 12 + (index + 1) * ReceiveBufferSection.size, available: available) }
                sections.append(section)
            }
            self = .sendReceiveBufferComplete(status: status, sections: sections)
        case .revokeReceiveBuffer:
            self = .revokeReceiveBuffer(id: try u16(4))
        case .sendSendBuffer:
            self = .sendSendBuffer(gpadl: try u32(4), id: try u16(8))
        case .sendSendBufferComplete:
            self = .sendSendBufferComplete(status: NVSPStatus(rawValue: try u32(4)), sectionSize: try u32(8))
        case .revokeSendBuffer:
            self = .revokeSendBuffer(id: try u16(4))
        case .sendRNDISPacket:
            self = .sendRNDISPacket(
                channel: RNDISChannelType(rawValue: try u32(4)), sectionIndex: try u32(8), sectionSize: try u32(12))
        case .sendRNDISPacketComplete:
            self = .sendRNDISPacketComplete(status: NVSPStatus(rawValue: try u32(4)))
        case .subchannel:
            if completion {
                self = .subchannelComplete(status: NVSPStatus(rawValue: try u32(4)), count: try u32(8))
            } else {
                self = .subchannelRequest(operation: try u32(4), count: try u32(8))
            }
        case .sendIndirectionTable:
            let entryCount = try u32(4)
            let tableOffset = try u32(8)
            guard entryCount <= UInt32(NVSPMessage.maximumIndirectionEntries) else {
                throw .invalidValue("SEND_INDIRECTION_TABLE count")
            }
            let tableBytes = Int(entryCount) * 4
            // Linux ≤ NVSP 6 reads the table at 40 whenever the message is long enough for it there.
            let start: Int
            if UInt64(tableOffset) + UInt64(tableBytes) <= UInt64(available), tableOffset >= 12 {
                start = Int(tableOffset)
            } else if NetvscConstants.nvspMessageSize + tableBytes <= available {
                start = NetvscConstants.nvspMessageSize
            } else {
                throw .badLayout("SEND_INDIRECTION_TABLE offset")
            }
            var entries: [UInt32] = []
            for index in 0..<Int(entryCount) { entries.append(try u32(start + index * 4)) }
            self = .sendIndirectionTable(entries: entries)
        default:
            self = .other(type: type)
        }
    }

    /// The size of the message's own fields.
    private var naturalSize: Int {
        switch self {
        case .initialize, .sendNDISVersion, .sendSendBufferComplete, .subchannelRequest, .subchannelComplete: 12
        case .initializeComplete, .sendRNDISPacket: 16
        case .sendNDISConfig: 20
        case .sendReceiveBuffer, .sendSendBuffer: 10
        case .revokeReceiveBuffer, .revokeSendBuffer: 6
        case .sendRNDISPacketComplete: 8
        case .sendReceiveBufferComplete(_, let sections): 12 + sections.count * ReceiveBufferSection.size
        case .sendIndirectionTable(let entries): NetvscConstants.nvspMessageSize + entries.count * 4
        case .other: 4
        }
    }

    /// The encoded message, zero-padded to `minimumSize` (default: 40 bytes,
    /// `sizeof(struct nvsp_message)`).
    public func bytes(minimumSize: Int = NetvscConstants.nvspMessageSize) -> [UInt8] {
        var bytes: [UInt8]
        switch self {
        case .sendReceiveBufferComplete(_, let sections):
            bytes = .zeros(max(minimumSize, 12 + sections.count * ReceiveBufferSection.size))
        case .sendIndirectionTable(let entries):
            bytes = .zeros(max(minimumSize, NetvscConstants.nvspMessageSize + entries.count * 4))
        default:
            bytes = .zeros(max(minimumSize, naturalSize))
        }
        bytes.storeLittleEndian(type.rawValue, at: 0)
        switch self {
        case .initialize(let minimum, let maximum):
            bytes.storeLittleEndian(minimum.rawValue, at: 4)
            bytes.storeLittleEndian(maximum.rawValue, at: 8)
        case .initializeComplete(let negotiated, let chain, let status):
            bytes.storeLittleEndian(negotiated.rawValue, at: 4)
            bytes.storeLittleEndian(chain, at: 8)
            bytes.storeLittleEndian(status.rawValue, at: 12)
        case .sendNDISVersion(let major, let minor):
            bytes.storeLittleEndian(major, at: 4)
            bytes.storeLittleEndian(minor, at: 8)
        case .sendNDISConfig(let mtu, let capabilities):
            bytes.storeLittleEndian(mtu, at: 4)
            bytes.storeLittleEndian(capabilities.rawValue, at: 12)
        case .sendReceiveBuffer(let gpadl, let id), .sendSendBuffer(let gpadl, let id):
            bytes.storeLittleEndian(gpadl, at: 4)
            bytes.storeLittleEndian(id, at: 8)
        case .sendReceiveBufferComplete(let status, let sections):
            bytes.storeLittleEndian(status.rawValue, at: 4)
            bytes.storeLittleEndian(UInt32(truncatingIfNeeded: sections.count), at: 8)
            for (index, section) in sections.enumerated() {
                section.store(into: &bytes, at: 12 + index * ReceiveBufferSection.size)
            }
        case .revokeReceiveBuffer(let id), .revokeSendBuffer(let id):
            bytes.storeLittleEndian(id, at: 4)
        case .sendSendBufferComplete(let status, let sectionSize):
            bytes.storeLittleEndian(status.rawValue, at: 4)
            bytes.storeLittleEndian(sectionSize, at: 8)
        case .sendRNDISPacket(let channel, let index, let size):
            bytes.storeLittleEndian(channel.rawValue, at: 4)
            bytes.storeLittleEndian(index, at: 8)
            bytes.storeLittleEndian(size, at: 12)
        case .sendRNDISPacketComplete(let status):
            bytes.storeLittleEndian(status.rawValue, at: 4)
        case .subchannelRequest(let operation, let count):
            bytes.storeLittleEndian(operation, at: 4)
            bytes.storeLittleEndian(count, at: 8)
        case .subchannelComplete(let status, let count):
            bytes.storeLittleEndian(status.rawValue, at: 4)
            bytes.storeLittleEndian(count, at: 8)
        case .sendIndirectionTable(let entries):
            bytes.storeLittleEndian(UInt32(truncatingIfNeeded: entries.count), at: 4)
            bytes.storeLittleEndian(UInt32(NetvscConstants.nvspMessageSize), at: 8)
            for (index, entry) in entries.enumerated() {
                bytes.storeLittleEndian(entry, at: NetvscConstants.nvspMessageSize + index * 4)
            }
        case .other:
            break
        }
        return bytes
    }
}
