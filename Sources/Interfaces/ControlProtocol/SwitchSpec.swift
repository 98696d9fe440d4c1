/// A virtual switch as the root hands it to the parent (`RootMessage.switchAttached`). The
/// root, which has the privileges, creates its host side — the TAP of an internal switch, the
/// TAP of an external one, joined to its uplink by tc rules — and sends that descriptor with the
/// message.
public struct SwitchSpec: Hashable, Sendable {
    /// Hyper-V's switch types.
    public enum Kind: UInt8, Hashable, Sendable, CaseIterable {
        /// Child partitions only.
        case `private` = 1
        /// Child partitions and the host, through a TAP interface.
        case `internal` = 2
        /// Child partitions and a host interface's network, through a TAP the root joins to it.
        case external = 3

        /// The name users write (`--kind`).
        public var name: String {
            switch self {
            case .private: "private"
            case .internal: "internal"
            case .external: "external"
            }
        }

        public init?(name: String) {
            guard let kind = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = kind
        }
    }

    public var name: String
    public var kind: Kind
    public var mtu: UInt32
    /// The TAP's interface name (internal), the uplink's host interface (external), or empty.
    public var hostInterface: String

    public init(name: String, kind: Kind, mtu: UInt32, hostInterface: String) {
        self.name = name
        self.kind = kind
        self.mtu = mtu
        self.hostInterface = hostInterface
    }

    /// Descriptors that travel with it: the host side's, except for a private switch.
    public var descriptorCount: Int { kind == .private ? 0 : 1 }
}

extension SwitchSpec {
    func encode(into out: inout WireEncoder) {
        out.string(name)
        out.u8(kind.rawValue)
        out.u32(mtu)
        out.string(hostInterface)
    }

    init(decoding input: inout WireDecoder) throws(ControlProtocolError) {
        let name = try input.string(limit: 64)
        guard let kind = Kind(rawValue: try input.u8()) else { throw .truncated }
        self.init(name: name, kind: kind, mtu: try input.u32(), hostInterface: try input.string(limit: 16))
    }
}
