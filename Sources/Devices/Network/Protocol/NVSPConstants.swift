import HyperV

// Numbers of the network VSP protocol (NVSP), from Linux `drivers/net/hyperv/hyperv_net.h`.

/// The u32 `msg_type` @0 of every NVSP message (`NVSP_MSG*_TYPE_*`).
///
/// A struct rather than an enum so that any value a guest writes stays representable.
public struct NVSPMessageType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 1: the guest proposes a protocol version range (`NVSP_MSG_TYPE_INIT`).
    public static let initialize = NVSPMessageType(rawValue: 1)
    /// 2: the host's answer to INIT.
    public static let initializeComplete = NVSPMessageType(rawValue: 2)
    /// 100: the guest's NDIS version (no answer).
    public static let sendNDISVersion = NVSPMessageType(rawValue: 100)
    /// 101: the guest hands over the receive buffer GPADL.
    public static let sendReceiveBuffer = NVSPMessageType(rawValue: 101)
    /// 102: the host's answer to SEND_RECV_BUF: how it carves the buffer.
    public static let sendReceiveBufferComplete = NVSPMessageType(rawValue: 102)
    /// 103: the guest takes the receive buffer back (no answer).
    public static let revokeReceiveBuffer = NVSPMessageType(rawValue: 103)
    /// 104: the guest hands over the send buffer GPADL.
    public static let sendSendBuffer = NVSPMessageType(rawValue: 104)
    /// 105: the host's answer to SEND_SEND_BUF: the section size.
    public static let sendSendBufferComplete = NVSPMessageType(rawValue: 105)
    /// 106: the guest takes the send buffer back (no answer).
    public static let revokeSendBuffer = NVSPMessageType(rawValue: 106)
    /// 107: an RNDIS message, in either direction.
    public static let sendRNDISPacket = NVSPMessageType(rawValue: 107)
    /// 108: completion of an RNDIS message.
    public static let sendRNDISPacketComplete = NVSPMessageType(rawValue: 108)
    /// 125: the guest's MTU and capabilities (NVSP ≥ 2; no answer).
    public static let sendNDISConfig = NVSPMessageType(rawValue: 125)
    /// 128: SR-IOV VF association (never sent by this host).
    public static let sendVFAssociation = NVSPMessageType(rawValue: 128)
    /// 129: switch between synthetic and VF data path.
    public static let switchDataPath = NVSPMessageType(rawValue: 129)
    /// 133: sub-channel allocation request and its completion (NVSP ≥ 5).
    public static let subchannel = NVSPMessageType(rawValue: 133)
    /// 134: the host's send indirection table (NVSP ≥ 5; no answer).
    public static let sendIndirectionTable = NVSPMessageType(rawValue: 134)
}

/// An NVSP protocol version (`NVSP_PROTOCOL_VERSION_*`): major in the high 16 bits.
public struct NVSPVersion: RawRepresentable, Hashable, Comparable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 2 (`NVSP_PROTOCOL_VERSION_1`).
    public static let v1 = NVSPVersion(rawValue: 2)
    /// 0x30002 (`NVSP_PROTOCOL_VERSION_2`): adds SEND_NDIS_CONFIG.
    public static let v2 = NVSPVersion(rawValue: 0x30002)
    /// 0x40000 (`NVSP_PROTOCOL_VERSION_4`).
    public static let v4 = NVSPVersion(rawValue: 0x40000)
    /// 0x50000 (`NVSP_PROTOCOL_VERSION_5`): sub-channels, NDIS 6.30, 156-byte offload caps.
    public static let v5 = NVSPVersion(rawValue: 0x50000)
    /// 0x60000 (`NVSP_PROTOCOL_VERSION_6`).
    public static let v6 = NVSPVersion(rawValue: 0x60000)
    /// 0x60001 (`NVSP_PROTOCOL_VERSION_61`).
    public static let v61 = NVSPVersion(rawValue: 0x60001)

    /// The versions Linux 6.1 offers, in the order it tries them (`netvsc_connect_vsp`'s
    /// `ver_list`, newest first).
    public static let linuxOrder: [NVSPVersion] = [.v61, .v6, .v5, .v4, .v2, .v1]

    public static func < (lhs: NVSPVersion, rhs: NVSPVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The status of an NVSP completion (`NVSP_STAT_*`).
public struct NVSPStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// 0: none.
    public static let none = NVSPStatus(rawValue: 0)
    /// 1: success.
    public static let success = NVSPStatus(rawValue: 1)
    /// 2: failure.
    public static let failure = NVSPStatus(rawValue: 2)
    /// 3: protocol too new.
    public static let protocolTooNew = NVSPStatus(rawValue: 3)
    /// 4: protocol too old.
    public static let protocolTooOld = NVSPStatus(rawValue: 4)
    /// 5: invalid RNDIS packet.
    public static let invalidRNDISPacket = NVSPStatus(rawValue: 5)
    /// 6: busy.
    public static let busy = NVSPStatus(rawValue: 6)
}

/// The `channel_type` of SEND_RNDIS_PKT: RNDIS assumes separate data and control channels,
/// NVSP carries the choice with each message.
public struct RNDISChannelType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// 0: data (PACKET messages).
    public static let data = RNDISChannelType(rawValue: 0)
    /// 1: control (INIT, QUERY, SET, HALT, … and their completions).
    public static let control = RNDISChannelType(rawValue: 1)
}

/// The capability bits of SEND_NDIS_CONFIG (`struct nvsp_2_vsc_capability`, u64 @12).
public struct NDISConfigCapabilities: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let vmq = NDISConfigCapabilities(rawValue: 1 << 0)
    public static let chimney = NDISConfigCapabilities(rawValue: 1 << 1)
    public static let sriov = NDISConfigCapabilities(rawValue: 1 << 2)
    public static let ieee8021q = NDISConfigCapabilities(rawValue: 1 << 3)
    public static let correlationID = NDISConfigCapabilities(rawValue: 1 << 4)
    public static let teaming = NDISConfigCapabilities(rawValue: 1 << 5)
    public static let virtualSubnetID = NDISConfigCapabilities(rawValue: 1 << 6)
    public static let receiveSegmentCoalescing = NDISConfigCapabilities(rawValue: 1 << 7)
}

/// Fixed numbers of the netvsc transport (`hyperv_net.h`).
public enum NetvscConstants {
    /// `sizeof(struct nvsp_message)`: every NVSP message this module encodes is at least this long.
    public static let nvspMessageSize = 40
    /// The receive buffer id the guest passes in SEND_RECV_BUF and the transfer page set id of
    /// every receive packet (`NETVSC_RECEIVE_BUFFER_ID`).
    public static let receiveBufferID: UInt16 = 0xCAFE
    /// The send buffer id (`NETVSC_SEND_BUFFER_ID`).
    public static let sendBufferID: UInt16 = 0
    /// `send_buf_section_index` meaning "no send-buffer section" (`NETVSC_INVALID_INDEX`).
    public static let noSection: UInt32 = 0xFFFF_FFFF
    /// The transaction id of messages that want no completion (`VMBUS_RQST_ID_NO_RESPONSE`,
    /// U64_MAX − 2).
    public static let noResponseTransactionID: UInt64 = .max - 2
    /// Entries of the send indirection table (`VRSS_SEND_TAB_SIZE`).
    public static let sendIndirectionTableSize = 16
    /// Most transfer-page ranges one receive packet may carry (`NVSP_RSC_MAX`).
    public static let maximumTransferPageRanges = 562
    /// The MTU the guest announces in SEND_NDIS_CONFIG: 1500 plus the Ethernet header.
    public static let ethernetMTU: UInt32 = 1514
    /// Receive sub-allocations must be at least this large (Linux rejects smaller).
    public static let minimumSectionSize: UInt32 = 68
    /// The send section size Windows and openvmm use; Linux derives its section count from it.
    public static let conventionalSendSectionSize: UInt32 = 6144
}
