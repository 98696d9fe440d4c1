import NetworkProtocol
import VMBusProtocol

/// A packet for the host→guest ring of one channel; the fields are exactly what
/// `VSPChannel.send(_:flags:transactionID:header:payload:)` takes.
public struct OutgoingPacket: Hashable, Sendable {
    public var type: PacketType
    public var flags: PacketFlags
    public var transactionID: UInt64
    /// The extra header between descriptor and payload (transfer-page ranges), or empty.
    public var header: [UInt8]
    public var payload: [UInt8]

    public init(type: PacketType, flags: PacketFlags = [], transactionID: UInt64, header: [UInt8] = [], payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.transactionID = transactionID
        self.header = header
        self.payload = payload
    }
}

/// What the I/O-free VSP asks its driver to do.
public enum NetworkVSPAction: Hashable, Sendable {
    /// Write this packet to channel `channel`'s host→guest ring (0 is the primary channel).
    case send(channel: Int, OutgoingPacket)
    /// The guest sent this frame on `channel`: hand it to the virtual switch.
    case transmit(channel: Int, NetworkFrame)
    /// Offer this many sub-channels (sub-channel indexes 1...count), now that the guest asked.
    case offerSubchannels(count: Int)
    /// The guest's RNDIS packet filter changed: the switch port delivers only what it allows.
    case packetFilterChanged(PacketFilter)
    /// The guest changed its MAC address (SET "NetworkAddress").
    case macAddressChanged(MACAddress)
    /// The multicast groups the port delivers under a MULTICAST filter changed (SET
    /// OID_802_3_MULTICAST_LIST; an INITIALIZE empties them).
    case multicastListChanged([MACAddress])
}
