import NetworkProtocol

/// What the synthetic network adapter tells its guest, and the limits it enforces.
public struct NetworkVSPConfiguration: Sendable {
    /// The permanent MAC address (OID_802_3_PERMANENT_ADDRESS).
    public var macAddress: MACAddress
    /// The MTU answered for OID_GEN_MAXIMUM_FRAME_SIZE; Linux takes min(1500, value).
    public var mtu: UInt32 = 1500
    /// Link speed in units of 100 bit/s (OID_GEN_LINK_SPEED); 10 Gbit/s by default.
    public var linkSpeed: UInt32 = 100_000_000
    /// Whether the link starts connected.
    public var linkConnected = true
    /// The adapter name (OID_GEN_FRIENDLY_NAME), ASCII.
    public var friendlyName = "hv synthetic network adapter"
    /// The offload capabilities answered for OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES.
    public var offload = NDISOffload.checksumAndLargeSend(maximumLargeSend: NetworkVSPConfiguration.maximumLargeSend)
    /// The newest NVSP version accepted.
    public var maximumVersion = NVSPVersion.v61
    /// The most sub-channels granted (the guest gets min(asked, this)); 0 keeps one channel.
    public var maximumSubchannels = 0
    /// Whether SET "NetworkAddress" may change the MAC address.
    public var allowsMACAddressChange = true
    /// Send-buffer section size (SEND_SEND_BUF_COMPLETE).
    public var sendSectionSize: UInt32 = NetvscConstants.conventionalSendSectionSize
    /// Receive sub-allocation size: RNDIS header, PPIs and a 1518-byte frame fit.
    public var receiveSubAllocationSize: UInt32 = 1728
    /// INIT_C max_pkt_per_msg: how many PACKET messages the guest may batch in one send-buffer
    /// section (Linux batches up to this many, as many as fit in a section: 54 frames of 64
    /// bytes fit in 6144). More per message is fewer ring packets and completions per frame.
    public var maximumPacketsPerMessage: UInt32 = 32
    /// INIT_C pkt_alignment_factor: batched messages are aligned to 1 << this.
    public var packetAlignmentFactor: UInt32 = 3
    /// Most ranges (frames) in one receive packet.
    public var maximumRangesPerReceivePacket = 64
    /// Most sub-allocations used, whatever the buffer's size.
    public var maximumSubAllocations = 16384
    /// Most bytes of control responses waiting for a free sub-allocation, per channel.
    public var controlQueueLimit = 100 * 1024
    /// Most bytes of one transmit's logical stream (send-buffer section plus GPA ranges).
    public var maximumTransmitBytes = 256 * 1024

    /// The largest LSO frame advertised.
    public static let maximumLargeSend: UInt32 = 65535

    public init(macAddress: MACAddress) { self.macAddress = macAddress }

    /// Largest frame accepted without segmentation: MTU + Ethernet header + an in-line 802.1Q tag.
    public var maximumFrameSize: Int { NetworkFrame.largestFrameSize(mtu: Int(mtu)) }
}
