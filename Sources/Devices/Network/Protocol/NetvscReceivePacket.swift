import HyperV
import VMBusProtocol

/// The host→guest receive packet (`VM_PKT_DATA_USING_XFER_PAGES`, Linux `netvsc_receive`):
/// a transfer-page header {u16 pageset_id = 0xCAFE, u8 sender_owns = 0, u8 reserved,
/// u32 range_cnt, ranges {u32 byte_count, u32 byte_offset}} after the descriptor, then the
/// NVSP SEND_RNDIS_PKT {channel_type, 0xFFFFFFFF, 0}. Each range is one RNDIS message in a
/// receive-buffer sub-allocation; the guest answers with one 8-byte completion for all.
public enum NetvscReceivePacket {
    /// The extra header for `ranges`.
    public static func header(ranges: [TransferPageRange], pageSetID: UInt16 = NetvscConstants.receiveBufferID)
        -> TransferPageHeader
    {
        TransferPageHeader(pageSetID: pageSetID, senderOwns: false, ranges: ranges)
    }

    /// The NVSP payload of a receive packet.
    public static func payload(channel: RNDISChannelType) -> [UInt8] {
        NVSPMessage.sendRNDISPacket(channel: channel, sectionIndex: NetvscConstants.noSection, sectionSize: 0).bytes()
    }

    /// Bytes the packet occupies in the guest's inbound ring view: descriptor + header + NVSP.
    /// Linux copies at most `NETVSC_MAX_PKT_SIZE` per packet.
    public static func packetSize(rangeCount: Int) -> Int {
        PacketDescriptor.size + 8 + 8 * rangeCount + NetvscConstants.nvspMessageSize
    }

    /// `NETVSC_MAX_PKT_SIZE`: transfer header with 562 ranges + nvsp_message + 16 u32 table entries.
    public static let maximumGuestPacketSize = 16 + 8 + 8 * NetvscConstants.maximumTransferPageRanges
        + NetvscConstants.nvspMessageSize + 4 * NetvscConstants.sendIndirectionTableSize
}
