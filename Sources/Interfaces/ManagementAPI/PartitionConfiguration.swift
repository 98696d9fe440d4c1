import DeviceModel
import Foundation

/// A partition description, as stored in `Partitions/*.json` and posted to the root.
///
///     {
///       "name": "alpha",
///       "processors": 2,
///       "memoryMiB": 64,
///       "guest": { "embedded": { "image": "Guest", "arguments": "mode=probe" } },
///       "devices": ["heartbeat", "shutdown", {"kind": "bench"}],
///       "cpu": { "reserve": 25, "limit": 50, "weight": 200 }
///     }
///
/// Each device is a kind or an object with a kind and that device's settings
/// (`DeviceConfiguration`); `hv devices` lists the kinds.
public struct PartitionConfiguration: Codable, Sendable, Equatable {
    public var name: String
    public var processors: Int
    public var memoryMiB: Int
    public var guest: Guest
    /// The devices the parent gives the partition.
    public var devices: [DeviceConfiguration]
    /// Processor reserve, limit, weight and pinning (absent: the defaults; Docs/scheduling.md).
    public var cpu: ProcessorSettings?

    public enum Guest: Codable, Sendable, Equatable {
        /// An Embedded Swift guest: `image` names a directory under Partitions/ (built on
        /// demand), or is a path to an ELF file; `imagePath` is the resolved ELF the root loads.
        case embedded(image: String, arguments: String, imagePath: String?)
        /// An unmodified Linux kernel (a bzImage) with an optional initrd; relative paths are
        /// resolved against the configuration file's directory by the client.
        case linux(kernel: String, initrd: String?, commandLine: String)

        enum CodingKeys: String, CodingKey { case embedded, linux }
        enum EmbeddedKeys: String, CodingKey { case image, arguments, imagePath }
        enum LinuxKeys: String, CodingKey { case kernel, initrd, commandLine }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if container.contains(.embedded) {
                let embedded = try container.nestedContainer(keyedBy: EmbeddedKeys.self, forKey: .embedded)
                self = .embedded(image: try embedded.decode(String.self, forKey: .image),
                                 arguments: try embedded.decodeIfPresent(String.self, forKey: .arguments) ?? "",
                                 imagePath: try embedded.decodeIfPresent(String.self, forKey: .imagePath))
            } else if container.contains(.linux) {
                let linux = try container.nestedContainer(keyedBy: LinuxKeys.self, forKey: .linux)
                self = .linux(kernel: try linux.decode(String.self, forKey: .kernel),
                              initrd: try linux.decodeIfPresent(String.self, forKey: .initrd),
                              commandLine: try linux.decodeIfPresent(String.self, forKey: .commandLine) ?? "console=ttyS0")
            } else {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "guest must be {\"embedded\": {...}} or {\"linux\": {...}}"))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .embedded(let image, let arguments, let imagePath):
                var embedded = container.nestedContainer(keyedBy: EmbeddedKeys.self, forKey: .embedded)
                try embedded.encode(image, forKey: .image)
                try embedded.encode(arguments, forKey: .arguments)
                try embedded.encodeIfPresent(imagePath, forKey: .imagePath)
            case .linux(let kernel, let initrd, let commandLine):
                var linux = container.nestedContainer(keyedBy: LinuxKeys.self, forKey: .linux)
                try linux.encode(kernel, forKey: .kernel)
                try linux.encodeIfPresent(initrd, forKey: .initrd)
                try linux.encode(commandLine, forKey: .commandLine)
            }
        }
    }

    public init(name: String, processors: Int, memoryMiB: Int, guest: Guest, devices: [DeviceConfiguration] = [],
                cpu: ProcessorSettings? = nil) {
        self.name = name
        self.processors = processors
        self.memoryMiB = memoryMiB
        self.guest = guest
        self.devices = devices
        self.cpu = cpu
    }

    enum CodingKeys: String, CodingKey { case name, processors, memoryMiB, guest, devices, cpu }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        processors = try container.decodeIfPresent(Int.self, forKey: .processors) ?? 1
        memoryMiB = try container.decodeIfPresent(Int.self, forKey: .memoryMiB) ?? 64
        guest = try container.decode(Guest.self, forKey: .guest)
        devices = try container.decodeIfPresent([DeviceConfiguration].self, forKey: .devices) ?? []
        cpu = try container.decodeIfPresent(ProcessorSettings.self, forKey: .cpu)
    }

    /// Names: 1-32 characters from [a-z0-9-], starting with a letter.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, (1...32).contains(name.unicodeScalars.count),
              ("a"..."z").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }

    /// The first problem with this configuration, as a sentence, or `nil`; devices are checked
    /// against `catalog`.
    public func problem(catalog: DeviceCatalog) -> String? {
        if !Self.isValidName(name) {
            return "name \"\(name)\" must be 1-32 characters of a-z, 0-9 and -, starting with a letter"
        }
        if !(1...64).contains(processors) { return "processors must be between 1 and 64, not \(processors)" }
        if !(16...3072).contains(memoryMiB) || memoryMiB % 2 != 0 {
            return "memoryMiB must be an even number between 16 and 3072, not \(memoryMiB)"
        }
        do throws(DeviceError) {
            _ = try resolvedDevices(catalog: catalog)
        } catch {
            return error.description
        }
        return nil
    }

    /// The devices checked and resolved (`DeviceCatalog.resolve`). Linux partitions also get the
    /// COM1 UART their console needs when the configuration does not name it.
    public func resolvedDevices(catalog: DeviceCatalog) throws(DeviceError) -> [DeviceSpec] {
        var devices = self.devices
        if isLinux && !devices.contains(where: { $0.kind == Self.consoleDevice }) {
            devices.append(DeviceConfiguration(kind: Self.consoleDevice))
        }
        return try catalog.resolve(devices, partition: name)
    }

    /// The device a Linux partition's console (ttyS0) is.
    public static let consoleDevice = "com1"

    /// Whether the guest is a Linux kernel (which also gets the legacy COM1 UART).
    public var isLinux: Bool {
        if case .linux = guest { return true }
        return false
    }

    /// Reads and validates a configuration file; devices are checked against `catalog`.
    public static func load(path: String, catalog: DeviceCatalog) throws(ConfigurationError) -> PartitionConfiguration {
        let configuration = try ConfigurationFile.decode(PartitionConfiguration.self, path: path, what: Self.fileKind)
        if let problem = configuration.problem(catalog: catalog) { throw .invalid(path, problem, what: Self.fileKind) }
        return configuration
    }

    static let fileKind = "partition configuration"

    static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        switch decoding {
        case .keyNotFound(let key, _): return "missing field \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
        @unknown default: return "\(decoding)"
        }
    }
}

/// A configuration file that cannot be used.
public enum ConfigurationError: Error, CustomStringConvertible {
    /// The file at the path cannot be opened; `what` names the kind of file.
    case unreadable(String, what: String)
    /// The file at the path is not a valid configuration, for the reason given.
    case invalid(String, String, what: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let what): "Cannot read \(what) \(path): check the path."
        case .invalid(let path, let problem, let what): "Invalid \(what) \(path): \(problem)."
        }
    }
}
