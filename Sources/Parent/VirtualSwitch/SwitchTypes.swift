import NetworkProtocol

/// The kinds of virtual switch Hyper-V has (`New-VMSwitch -SwitchType`).
public enum SwitchKind: Hashable, Sendable {
    /// Child partitions only.
    case `private`
    /// Child partitions and the host, through a TAP interface of this name.
    case `internal`(hostInterface: String)
    /// Child partitions and a physical network, through a TAP the root joins to this host
    /// interface with tc rules (`UplinkMirror`, which says why not a bridge).
    case external(uplinkInterface: String)
}

/// A port's number on its switch.
public struct SwitchPortID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: Int
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public static func < (lhs: SwitchPortID, rhs: SwitchPortID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "port \(rawValue)" }
}

/// What is plugged into a port.
public enum SwitchPortKind: Hashable, Sendable {
    /// A child partition's synthetic NIC.
    case child
    /// The host's TAP interface (internal switch).
    case host
    /// The external network (external switch).
    case uplink
}

/// Why the switch dropped a frame. Raw values run 0..<allCases.count: counters index by them.
public enum SwitchDropReason: Int, Hashable, Sendable, CaseIterable {
    /// The destination's queue was full.
    case queueFull
    /// The destination's packet filter (or the guest's empty filter) refused it.
    case filtered
    /// Larger than the port's maximum frame size.
    case oversized
    /// Too short for an Ethernet header, or a group source address.
    case malformed
    /// A child sent with a source MAC other than its own, and spoofing is off.
    case spoofedSource
    /// Its checksum or segmentation request could not be carried out.
    case offloadFailed
    /// It carries an 802.1Q or 802.1ad tag (in line, or as the guest's per-packet information)
    /// and the child port it came from or would go to is not in trunk mode.
    case vlanTagged
}

/// A port's traffic counters.
public struct SwitchPortCounters: Hashable, Sendable {
    /// Frames and bytes the port sent into the switch.
    public var framesIn: UInt64 = 0
    public var bytesIn: UInt64 = 0
    /// Frames and bytes queued to the port.
    public var framesOut: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// Times the port's sender was held by another port's full queue (`SwitchCore.hold`).
    public var sendsHeld: UInt64 = 0
    /// Times a sender's hold on this port ran out, its queue not drained in time
    /// (`SwitchCore.endHolds`); the port then held no sender until drained to a quarter.
    public var holdsTimedOut: UInt64 = 0
    /// Drops by reason, indexed by raw value: a frame dropped at a full queue is counted
    /// without hashing (a flooding sender meets that on most of its frames).
    private var dropCounts = [UInt64](repeating: 0, count: SwitchDropReason.allCases.count)

    public init() {}

    /// Drops by reason (those with any): on the sending port for malformed/oversized/spoofed,
    /// on the receiving port for queue full/filtered/offload failures.
    public var drops: [SwitchDropReason: UInt64] {
        var drops: [SwitchDropReason: UInt64] = [:]
        for reason in SwitchDropReason.allCases where dropCounts[reason.rawValue] > 0 {
            drops[reason] = dropCounts[reason.rawValue]
        }
        return drops
    }

    /// Drops for `reason`.
    public func dropped(_ reason: SwitchDropReason) -> UInt64 { dropCounts[reason.rawValue] }

    /// Counts one drop for `reason`.
    public mutating func countDrop(_ reason: SwitchDropReason) { dropCounts[reason.rawValue] += 1 }
}

/// A sender held by a port's full queue (`SwitchCore.hold`): `wake` is called, outside the
/// switch's lock, once the port has drained, its hold ran out or it was removed. `id` tells
/// waiters apart, so one is held once however often it asks.
public struct SwitchHoldWaiter: Sendable {
    public let id: ObjectIdentifier
    public let wake: @Sendable () -> Void

    public init(id: ObjectIdentifier, wake: @escaping @Sendable () -> Void) {
        self.id = id
        self.wake = wake
    }
}

/// How a port behaves.
public struct SwitchPortConfiguration: Sendable {
    public var name: String
    public var kind: SwitchPortKind
    /// The port's MAC: a child's adapter address. Directed frames match it; with spoofing off,
    /// frames from the port must carry it as source.
    public var macAddress: MACAddress?
    public var allowsMACSpoofing = false
    /// Whether the port carries VLAN-tagged frames. A child's port does only in trunk mode
    /// (Hyper-V's `Set-VMNetworkAdapterVlan -Trunk`): by default, as on Hyper-V, it is untagged,
    /// so its guest can neither send into a VLAN of the uplink's network nor hear one. Host and
    /// uplink ports carry tags.
    public var allowsVLANTags: Bool
    /// The RNDIS packet filter a child set; host and uplink ports take everything.
    public var packetFilter: PacketFilter
    /// Multicast addresses a MULTICAST (not ALL_MULTICAST) filter accepts.
    public var multicastAddresses: Set<MACAddress> = []
    /// Largest frame without a segmentation request: 1514 plus an in-line VLAN tag.
    public var maximumFrameSize = 1518
    /// What the port takes beside plain frames.
    public var capabilities: SoftwareOffload.Capabilities
    /// Whether the thread that switches a frame for this port writes it to the port's endpoint
    /// itself when nothing is queued (a host port with a `VirtualSwitch.setDirectSink`), rather
    /// than queueing it for the port's pump: one thread hand-off fewer per frame.
    public var deliversDirectly = false
    /// Most frames and bytes waiting in the port's queue.
    public var queueFrameLimit = 4096
    public var queueByteLimit = 4 << 20

    public init(name: String, kind: SwitchPortKind, macAddress: MACAddress? = nil) {
        self.name = name
        self.kind = kind
        self.macAddress = macAddress
        switch kind {
        case .child:
            packetFilter = []
            capabilities = .guest
            allowsVLANTags = false
        case .host, .uplink:
            packetFilter = [.promiscuous]
            capabilities = .virtio
            allowsVLANTags = true
        }
    }
}
