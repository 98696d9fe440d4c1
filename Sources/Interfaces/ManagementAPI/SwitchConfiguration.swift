import Foundation

/// A virtual switch as users describe it: `POST /v1/switches`, `hv switch create`, or a JSON file
/// (`Partitions/*.switch.json`):
///
///     {"name": "lab", "kind": "internal", "hostInterface": "hvlab0", "mtu": 1500}
///
/// Kinds are Hyper-V's: `private` (children only), `internal` (children and the host, through a
/// TAP interface the root creates, named `hostInterface` or `hv-<name>`), `external` (children
/// and the network of the existing host interface `hostInterface`, through a TAP the root joins
/// to it with tc rules).
public struct SwitchConfiguration: Codable, Sendable, Equatable {
    public var name: String
    /// private, internal or external.
    public var kind: String
    /// internal: the TAP's name (default `hv-<name>`); external: the host interface (required).
    public var hostInterface: String?
    /// The MTU, 576-9000 (default 1500).
    public var mtu: Int?

    public init(name: String, kind: String, hostInterface: String? = nil, mtu: Int? = nil) {
        self.name = name
        self.kind = kind
        self.hostInterface = hostInterface
        self.mtu = mtu
    }

    /// The kinds a switch can have.
    public static let kinds = ["private", "internal", "external"]
    public static let mtuRange = 576...9000
    /// Linux's interface names are at most 15 bytes (IFNAMSIZ − 1).
    public static let maximumInterfaceName = 15

    /// The first problem with this configuration, as a sentence fragment, or `nil`.
    public var problem: String? {
        guard !name.isEmpty, name.utf8.count <= 32,
              name.utf8.allSatisfy({ Self.nameCharacters.contains($0) }),
              name.first != ".", name.first != "-" else {
            return "a switch name is 1 to 32 letters, digits, '-', '_' or '.' (not first), not \"\(name)\""
        }
        guard Self.kinds.contains(kind) else { return "kind \"\(kind)\" is not one of \(Self.kinds.joined(separator: ", "))" }
        if let mtu, !Self.mtuRange.contains(mtu) { return "mtu \(mtu) is outside \(Self.mtuRange.lowerBound)-\(Self.mtuRange.upperBound)" }
        switch kind {
        case "private":
            if hostInterface != nil { return "a private switch has no host interface" }
        case "external":
            guard let hostInterface else { return "an external switch needs --host-interface (the host interface it bridges to)" }
            if let problem = Self.interfaceProblem(hostInterface) { return problem }
        default:
            if let hostInterface, let problem = Self.interfaceProblem(hostInterface) { return problem }
        }
        return nil
    }

    /// The host interface an internal switch's TAP gets, or the one an external switch uses.
    public var resolvedHostInterface: String {
        switch kind {
        case "private": ""
        case "internal": hostInterface ?? String("hv-\(name)".prefix(Self.maximumInterfaceName))
        default: hostInterface ?? ""
        }
    }

    static func interfaceProblem(_ interface: String) -> String? {
        guard !interface.isEmpty, interface.utf8.count <= maximumInterfaceName,
              interface.utf8.allSatisfy({ nameCharacters.contains($0) }), interface != ".", interface != ".." else {
            return "\"\(interface)\" is not a Linux interface name (1-15 letters, digits, '-', '_', '.')"
        }
        return nil
    }

    static let nameCharacters = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.".utf8))

    /// Loads a switch configuration file (a regular file of at most 1 MiB, `ConfigurationFile`).
    public static func load(path: String) throws(ConfigurationError) -> SwitchConfiguration {
        try ConfigurationFile.decode(SwitchConfiguration.self, path: path, what: "switch configuration")
    }
}

/// What `GET /v1/switches` lists for each switch.
public struct SwitchInfo: Codable, Sendable, Equatable {
    public var name: String
    public var kind: String
    public var mtu: Int
    /// The TAP (internal) or uplink (external) interface; empty for a private switch.
    public var hostInterface: String
    /// The NICs plugged in, as "partition/instance".
    public var ports: [String]

    public init(name: String, kind: String, mtu: Int, hostInterface: String, ports: [String]) {
        self.name = name
        self.kind = kind
        self.mtu = mtu
        self.hostInterface = hostInterface
        self.ports = ports
    }
}
