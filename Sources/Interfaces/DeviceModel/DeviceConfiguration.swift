import VMBusProtocol

/// One entry of a partition configuration's `devices` list: either just the kind,
///
///     "heartbeat"
///
/// or an object with the kind, an optional instance GUID (derived from the partition's name
/// when absent) and the device's settings:
///
///     {"kind": "bench", "instance": "5a2c7f1e-…"}
public struct DeviceConfiguration: Codable, Sendable, Hashable {
    public var kind: String
    /// The instance GUID the guest sees; `nil` derives a stable one (`DeviceCatalog.instance`).
    public var instance: GUID?
    /// The device's settings: the object's keys other than `kind` and `instance`.
    public var settings: [String: JSONValue]

    public init(kind: String, instance: GUID? = nil, settings: [String: JSONValue] = [:]) {
        self.kind = kind
        self.instance = instance
        self.settings = settings
    }

    public init(from decoder: any Decoder) throws {
        if let kind = try? decoder.singleValueContainer().decode(String.self) {
            self.init(kind: kind)
            return
        }
        guard case .object(var object) = try JSONValue(from: decoder) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath,
                debugDescription: "a device is a kind (\"heartbeat\") or an object with a \"kind\""))
        }
        guard case .string(let kind)? = object.removeValue(forKey: "kind") else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "a device object needs a \"kind\" string"))
        }
        var instance: GUID?
        switch object.removeValue(forKey: "instance") {
        case nil, .null?:
            instance = nil
        case .string(let text)?:
            guard let guid = GUID(text) else {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "instance \"\(text)\" is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))
            }
            instance = guid
        default:
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "instance must be a GUID string"))
        }
        self.init(kind: kind, instance: instance, settings: object)
    }

    public func encode(to encoder: any Encoder) throws {
        if instance == nil && settings.isEmpty {
            var container = encoder.singleValueContainer()
            try container.encode(kind)
            return
        }
        var object = settings
        object["kind"] = .string(kind)
        if let instance { object["instance"] = .string(instance.description) }
        try JSONValue.object(object).encode(to: encoder)
    }
}

extension DeviceConfiguration: ExpressibleByStringLiteral {
    /// A device named by its kind alone: `"heartbeat"`.
    public init(stringLiteral kind: String) {
        self.init(kind: kind)
    }
}
