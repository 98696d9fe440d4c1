import Foundation
import VMBusProtocol

/// The device types this build knows (`DeviceRegistry.catalog`), and the one place where a
/// partition's device configuration is checked and turned into `DeviceSpec`s.
public struct DeviceCatalog: Sendable {
    public let types: [any DeviceType.Type]

    /// The most devices one partition may have.
    public static let maximumDevices = 64
    /// The most bytes of settings one device may carry.
    public static let maximumSettingsBytes = 16 << 10
    /// The most host resources (open files) one partition's devices may need together.
    public static let maximumResources = 32

    /// - Precondition: no two types share a kind (a programming error in the registry).
    public init(_ types: [any DeviceType.Type]) {
        precondition(Set(types.map { $0.kind }).count == types.count, "two device types share a kind")
        self.types = types
    }

    /// Every kind, in registry order.
    public var kinds: [String] { types.map { $0.kind } }

    /// The type of `kind`, if there is one.
    public func type(ofKind kind: String) -> (any DeviceType.Type)? {
        types.first { $0.kind == kind }
    }

    /// Checks a partition's devices and resolves each: its type's rules and limits, its
    /// settings (the type's defaults when only the kind is named) and its instance GUID.
    public func resolve(_ devices: [DeviceConfiguration], partition: String) throws(DeviceError) -> [DeviceSpec] {
        guard devices.count <= Self.maximumDevices else {
            throw .tooManyDevices(count: devices.count, maximum: Self.maximumDevices)
        }
        var specs: [DeviceSpec] = []
        var counts: [String: Int] = [:]
        var resourceCount = 0
        for device in devices {
            guard let type = type(ofKind: device.kind) else { throw .unknownKind(device.kind, known: kinds) }
            let index = counts[device.kind, default: 0]
            counts[device.kind] = index + 1
            guard index < type.maximumPerPartition else {
                throw .tooMany(kind: device.kind, maximum: type.maximumPerPartition)
            }
            let (settings, resources) = try Self.resolveSettings(device, as: type)
            let instance = device.instance ?? Self.instance(partition: partition, kind: device.kind, index: index)
            guard !specs.contains(where: { $0.instance == instance }) else { throw .duplicateInstance(instance.description) }
            resourceCount += resources.count
            try Self.checkResources(resourceCount, kind: device.kind)
            specs.append(DeviceSpec(kind: device.kind, instance: instance, settings: settings, resources: resources))
        }
        return specs
    }

    /// Resolves one more device for a running partition whose devices are `existing`: the same
    /// rules as `resolve`, an instance GUID none of them has, and the type's consent to being
    /// added while the partition runs.
    public func resolve(adding device: DeviceConfiguration, to existing: [DeviceSpec], partition: String)
        throws(DeviceError) -> DeviceSpec
    {
        guard let type = type(ofKind: device.kind) else { throw .unknownKind(device.kind, known: kinds) }
        guard type.hotPluggable else { throw .notWhileRunning(kind: device.kind, change: "added") }
        guard existing.count < Self.maximumDevices else {
            throw .tooManyDevices(count: existing.count + 1, maximum: Self.maximumDevices)
        }
        guard existing.filter({ $0.kind == device.kind }).count < type.maximumPerPartition else {
            throw .tooMany(kind: device.kind, maximum: type.maximumPerPartition)
        }
        let (settings, resources) = try Self.resolveSettings(device, as: type)
        try Self.checkResources(existing.reduce(0) { $0 + $1.resources.count } + resources.count, kind: device.kind)
        let taken = Set(existing.map(\.instance))
        let instance: GUID
        if let given = device.instance {
            guard !taken.contains(given) else { throw .duplicateInstance(given.description) }
            instance = given
        } else {
            var index = 0
            while taken.contains(Self.instance(partition: partition, kind: device.kind, index: index)) { index += 1 }
            instance = Self.instance(partition: partition, kind: device.kind, index: index)
        }
        return DeviceSpec(kind: device.kind, instance: instance, settings: settings, resources: resources)
    }

    /// Resolves new settings for the device `current` of a running partition whose devices are
    /// `existing` (which include `current`): its kind and instance stay.
    public func resolve(changing current: DeviceSpec, to settings: [String: JSONValue], among existing: [DeviceSpec])
        throws(DeviceError) -> DeviceSpec
    {
        guard let type = type(ofKind: current.kind) else { throw .unknownKind(current.kind, known: kinds) }
        guard type.changeableWhileRunning else { throw .notWhileRunning(kind: current.kind, change: "changed") }
        let (bytes, resources) = try Self.resolveSettings(DeviceConfiguration(kind: current.kind, settings: settings), as: type)
        try Self.checkChange(from: current, to: bytes, as: type)
        let others = existing.filter { $0.instance != current.instance }
        try Self.checkResources(others.reduce(0) { $0 + $1.resources.count } + resources.count, kind: current.kind)
        return DeviceSpec(kind: current.kind, instance: current.instance, settings: bytes, resources: resources)
    }

    /// The type's consent to going from `current`'s settings to `bytes` while running.
    private static func checkChange<T: DeviceType>(from current: DeviceSpec, to bytes: [UInt8], as type: T.Type)
        throws(DeviceError)
    {
        let old = try settings(of: current, as: T.self)
        let new = try settings(of: DeviceSpec(kind: current.kind, instance: current.instance, settings: bytes), as: T.self)
        if let problem = T.problem(changing: old, to: new) { throw .notWhileRunning(kind: current.kind, change: problem) }
    }

    private static func checkResources(_ count: Int, kind: String) throws(DeviceError) {
        guard count <= maximumResources else {
            throw .invalidSettings(kind: kind, reason: "the devices need more than \(maximumResources) host files in all")
        }
    }

    /// The virtual switches the resolved device `spec` plugs into (none if its settings no
    /// longer decode, which `resolve` rules out).
    public func virtualSwitches(of spec: DeviceSpec) -> [String] {
        guard let type = type(ofKind: spec.kind) else { return [] }
        return Self.virtualSwitches(of: spec, as: type)
    }

    private static func virtualSwitches<T: DeviceType>(of spec: DeviceSpec, as type: T.Type) -> [String] {
        guard let settings = try? settings(of: spec, as: T.self) else { return [] }
        return T.virtualSwitches(for: settings)
    }

    /// The typed settings of a resolved device (the parent decodes what the root encoded).
    public static func settings<T: DeviceType>(of spec: DeviceSpec, as type: T.Type) throws(DeviceError) -> T.Settings {
        guard spec.settings.count <= Self.maximumSettingsBytes else {
            throw .invalidSettings(kind: spec.kind, reason: "settings of \(spec.settings.count) bytes are too large")
        }
        do {
            return try JSONDecoder().decode(T.Settings.self, from: Data(spec.settings))
        } catch {
            throw .invalidSettings(kind: spec.kind, reason: Self.describe(error))
        }
    }

    private static func resolveSettings<T: DeviceType>(_ device: DeviceConfiguration, as type: T.Type) throws(DeviceError)
        -> (settings: [UInt8], resources: [HostResource])
    {
        let settings: T.Settings
        if device.settings.isEmpty, let defaults = T.defaultSettings {
            settings = defaults
        } else {
            do {
                let data = try JSONEncoder().encode(JSONValue.object(device.settings))
                settings = try JSONDecoder().decode(T.Settings.self, from: data)
            } catch {
                throw .invalidSettings(kind: device.kind, reason: describe(error))
            }
        }
        if let problem = T.problem(with: settings) { throw .invalidSettings(kind: device.kind, reason: problem) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes: [UInt8]
        let known: JSONValue
        do {
            bytes = Array(try encoder.encode(settings))
            known = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw .invalidSettings(kind: device.kind, reason: describe(error))
        }
        // A key the settings type does not read is a typo or a setting of another device.
        if case .object(let keys) = known,
           let unknown = device.settings.keys.sorted().first(where: { keys[$0] == nil && device.settings[$0] != .null }) {
            throw .invalidSettings(kind: device.kind, reason: "unknown setting \"\(unknown)\"")
        }
        guard bytes.count <= maximumSettingsBytes else {
            throw .invalidSettings(kind: device.kind, reason: "settings of \(bytes.count) bytes are too large")
        }
        return (bytes, T.resources(for: settings))
    }

    /// A stable instance GUID for the `index`th device of `kind` in `partition` (FNV-1a of the
    /// names, shaped as an RFC 4122 version-4 GUID), so a guest sees the same device across
    /// restarts of the partition and of the parent.
    public static func instance(partition: String, kind: String, index: Int) -> GUID {
        let device = index == 0 ? kind : "\(kind)#\(index)"
        var bytes: [UInt8] = []
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for round in 0..<2 {
            for byte in (partition + "/" + device + "/\(round)").utf8 {
                hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            }
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: hash >> UInt64(shift))) }
        }
        bytes[7] = (bytes[7] & 0x0F) | 0x40  // version 4 in the (little-endian) third field
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        // 16 bytes by construction, so the initializer cannot fail.
        return GUID(wireBytes: bytes) ?? GUID(0, 0, 0, 0)
    }

    /// A decoding error as a short phrase naming the field.
    static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        switch decoding {
        case .keyNotFound(let key, _): return "missing setting \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
        @unknown default: return "\(decoding)"
        }
    }
}
