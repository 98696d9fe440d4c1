// Numbers of Remote NDIS as netvsc uses it, from Linux `include/linux/rndis.h` and
// `drivers/net/hyperv/hyperv_net.h`.

/// The u32 `ndis_msg_type` @0 of every RNDIS message (`RNDIS_MSG_*`); completions have bit 31 set.
public struct RNDISMessageType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// 1: a data frame, possibly one of several in a batch.
    public static let packet = RNDISMessageType(rawValue: 1)
    /// 2: initialize the device.
    public static let initialize = RNDISMessageType(rawValue: 2)
    /// 3: halt the device (no completion).
    public static let halt = RNDISMessageType(rawValue: 3)
    /// 4: query an OID.
    public static let query = RNDISMessageType(rawValue: 4)
    /// 5: set an OID.
    public static let set = RNDISMessageType(rawValue: 5)
    /// 6: reset the device.
    public static let reset = RNDISMessageType(rawValue: 6)
    /// 7: a status indication from the device.
    public static let indicateStatus = RNDISMessageType(rawValue: 7)
    /// 8: keep-alive.
    public static let keepalive = RNDISMessageType(rawValue: 8)
    /// 0x80000002: INITIALIZE completion.
    public static let initializeComplete = RNDISMessageType(rawValue: 0x8000_0002)
    /// 0x80000004: QUERY completion.
    public static let queryComplete = RNDISMessageType(rawValue: 0x8000_0004)
    /// 0x80000005: SET completion.
    public static let setComplete = RNDISMessageType(rawValue: 0x8000_0005)
    /// 0x80000006: RESET completion.
    public static let resetComplete = RNDISMessageType(rawValue: 0x8000_0006)
    /// 0x80000008: KEEPALIVE completion.
    public static let keepaliveComplete = RNDISMessageType(rawValue: 0x8000_0008)
}

/// An RNDIS/NDIS status (`RNDIS_STATUS_*`), in completions and indications.
public struct RNDISStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let success = RNDISStatus(rawValue: 0)
    public static let failure = RNDISStatus(rawValue: 0xC000_0001)
    public static let resources = RNDISStatus(rawValue: 0xC000_009A)
    public static let notSupported = RNDISStatus(rawValue: 0xC000_00BB)
    public static let invalidLength = RNDISStatus(rawValue: 0xC001_0014)
    public static let invalidData = RNDISStatus(rawValue: 0xC001_0015)
    public static let bufferTooShort = RNDISStatus(rawValue: 0xC001_0016)
    public static let invalidOID = RNDISStatus(rawValue: 0xC001_0017)
    /// Indication: the link came up.
    public static let mediaConnect = RNDISStatus(rawValue: 0x4001_000B)
    /// Indication: the link went down.
    public static let mediaDisconnect = RNDISStatus(rawValue: 0x4001_000C)
    /// Indication: the link speed changed (u32 payload, 100 bps units).
    public static let linkSpeedChange = RNDISStatus(rawValue: 0x4001_0013)
    /// Indication: the network changed; Linux bounces the link (re-DHCP).
    public static let networkChange = RNDISStatus(rawValue: 0x4001_0018)
}

/// An NDIS object identifier, the subject of QUERY and SET (`RNDIS_OID_*`, `OID_*`).
public struct RNDISObjectID: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let supportedList = RNDISObjectID(rawValue: 0x0001_0101)
    public static let hardwareStatus = RNDISObjectID(rawValue: 0x0001_0102)
    public static let mediaSupported = RNDISObjectID(rawValue: 0x0001_0103)
    public static let mediaInUse = RNDISObjectID(rawValue: 0x0001_0104)
    /// u32; Linux takes it as the MTU (`rndis_filter_device_add`).
    public static let maximumFrameSize = RNDISObjectID(rawValue: 0x0001_0106)
    /// u32 in units of 100 bit/s.
    public static let linkSpeed = RNDISObjectID(rawValue: 0x0001_0107)
    public static let transmitBlockSize = RNDISObjectID(rawValue: 0x0001_010A)
    public static let receiveBlockSize = RNDISObjectID(rawValue: 0x0001_010B)
    public static let vendorID = RNDISObjectID(rawValue: 0x0001_010C)
    public static let vendorDescription = RNDISObjectID(rawValue: 0x0001_010D)
    /// u32 packet filter (`PacketFilter`).
    public static let currentPacketFilter = RNDISObjectID(rawValue: 0x0001_010E)
    public static let maximumTotalSize = RNDISObjectID(rawValue: 0x0001_0111)
    public static let macOptions = RNDISObjectID(rawValue: 0x0001_0113)
    /// u32: 0 connected, 1 disconnected.
    public static let mediaConnectStatus = RNDISObjectID(rawValue: 0x0001_0114)
    public static let maximumSendPackets = RNDISObjectID(rawValue: 0x0001_0115)
    /// `rndis_config_parameter_info` (SET only); Linux sets "NetworkAddress" on a MAC change.
    public static let rndisConfigParameter = RNDISObjectID(rawValue: 0x0001_021B)
    public static let physicalMedium = RNDISObjectID(rawValue: 0x0001_0202)
    /// 18-byte `ndis_recv_scale_cap`.
    public static let receiveScaleCapabilities = RNDISObjectID(rawValue: 0x0001_0203)
    /// `ndis_recv_scale_param` with indirection table and key.
    public static let receiveScaleParameters = RNDISObjectID(rawValue: 0x0001_0204)
    public static let transmitOK = RNDISObjectID(rawValue: 0x0002_0101)
    public static let receiveOK = RNDISObjectID(rawValue: 0x0002_0102)
    public static let transmitError = RNDISObjectID(rawValue: 0x0002_0103)
    public static let receiveError = RNDISObjectID(rawValue: 0x0002_0104)
    public static let receiveNoBuffer = RNDISObjectID(rawValue: 0x0002_0105)
    /// UTF-16LE adapter name.
    public static let friendlyName = RNDISObjectID(rawValue: 0x0002_0216)
    /// 6-byte burned-in MAC; Linux's probe fails without it.
    public static let permanentAddress = RNDISObjectID(rawValue: 0x0101_0101)
    public static let currentAddress = RNDISObjectID(rawValue: 0x0101_0102)
    public static let multicastList = RNDISObjectID(rawValue: 0x0101_0103)
    public static let maximumMulticastListSize = RNDISObjectID(rawValue: 0x0101_0104)
    public static let offloadEncapsulation = RNDISObjectID(rawValue: 0x0101_010A)
    public static let tcpOffloadCurrentConfig = RNDISObjectID(rawValue: 0xFC01_020B)
    /// `ndis_offload_params` (SET only); Linux's probe fails unless it succeeds.
    public static let tcpOffloadParameters = RNDISObjectID(rawValue: 0xFC01_020C)
    /// `ndis_offload` (QUERY only); Linux's probe fails without it.
    public static let tcpOffloadHardwareCapabilities = RNDISObjectID(rawValue: 0xFC01_020D)
}

/// The RNDIS packet filter (`NDIS_PACKET_TYPE_*`), set with OID_GEN_CURRENT_PACKET_FILTER.
/// Linux sets DIRECTED|ALL_MULTICAST|BROADCAST at ifup, PROMISCUOUS for promiscuous mode and 0
/// at ifdown (`rndis_set_multicast`).
public struct PacketFilter: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let directed = PacketFilter(rawValue: 0x01)
    public static let multicast = PacketFilter(rawValue: 0x02)
    public static let allMulticast = PacketFilter(rawValue: 0x04)
    public static let broadcast = PacketFilter(rawValue: 0x08)
    public static let sourceRouting = PacketFilter(rawValue: 0x10)
    public static let promiscuous = PacketFilter(rawValue: 0x20)
    /// What Linux sets when an interface comes up.
    public static let linuxDefault: PacketFilter = [.directed, .allMulticast, .broadcast]
}

/// Media connect states of OID_GEN_MEDIA_CONNECT_STATUS (`NDIS_MEDIA_STATE_*`).
public enum MediaConnectState: UInt32, Sendable {
    case connected = 0
    case disconnected = 1
}
