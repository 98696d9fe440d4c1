/// What the parent counted on one VMBus channel of a partition, as `partitionStatistics`
/// carries it. "In" is guest → host, "out" host → guest.
public struct ChannelCounterRecord: Hashable, Sendable {
    public var relID: UInt32
    public var subChannelIndex: UInt16
    /// The device kind serving it.
    public var device: String
    public var isOpen: Bool
    public var packetsIn: UInt64
    public var bytesIn: UInt64
    public var signalsIn: UInt64
    public var packetsOut: UInt64
    public var bytesOut: UInt64
    public var signalsOut: UInt64

    /// The most records one message carries (a partition's channels beyond it are left out);
    /// at most 123 bytes each, they stay well inside one control datagram.
    public static let limit = 256
    /// The longest device name carried (longer ones are cut).
    static let deviceNameLimit = 64

    public init(relID: UInt32, subChannelIndex: UInt16, device: String, isOpen: Bool, packetsIn: UInt64, bytesIn: UInt64,
                signalsIn: UInt64, packetsOut: UInt64, bytesOut: UInt64, signalsOut: UInt64) {
        self.relID = relID
        self.subChannelIndex = subChannelIndex
        self.device = device
        self.isOpen = isOpen
        self.packetsIn = packetsIn
        self.bytesIn = bytesIn
        self.signalsIn = signalsIn
        self.packetsOut = packetsOut
        self.bytesOut = bytesOut
        self.signalsOut = signalsOut
    }

    func encode(into out: inout WireEncoder) {
        out.u32(relID)
        out.u16(subChannelIndex)
        out.data(Array(device.utf8.prefix(Self.deviceNameLimit)))
        out.bool(isOpen)
        for value in [packetsIn, bytesIn, signalsIn, packetsOut, bytesOut, signalsOut] { out.u64(value) }
    }

    init(decoding input: inout WireDecoder) throws(ControlProtocolError) {
        self.init(relID: try input.u32(), subChannelIndex: try input.u16(), device: try input.string(limit: Self.deviceNameLimit),
                  isOpen: try input.bool(), packetsIn: try input.u64(), bytesIn: try input.u64(), signalsIn: try input.u64(),
                  packetsOut: try input.u64(), bytesOut: try input.u64(), signalsOut: try input.u64())
    }
}
