/// Why a device cannot be configured or built, as one sentence a user can act on.
public enum DeviceError: Error, Hashable, CustomStringConvertible {
    /// No device type has this kind.
    case unknownKind(String, known: [String])
    /// The settings do not decode or break the device's rules.
    case invalidSettings(kind: String, reason: String)
    /// More devices of one kind than the kind allows.
    case tooMany(kind: String, maximum: Int)
    /// More devices than a partition may have.
    case tooManyDevices(count: Int, maximum: Int)
    /// Two devices would have the same instance GUID.
    case duplicateInstance(String)
    /// The device could not be built for the partition (its back end failed).
    case unavailable(kind: String, reason: String)
    /// The kind cannot be added, removed or changed (`change`) while the partition runs.
    case notWhileRunning(kind: String, change: String)
    /// The partition has no device with this instance GUID.
    case noSuchDevice(String)

    public var description: String {
        switch self {
        case .unknownKind(let kind, let known):
            "unknown device \"\(kind)\" (known: \(known.joined(separator: ", ")))"
        case .invalidSettings(let kind, let reason):
            "device \"\(kind)\": \(reason)"
        case .tooMany(let kind, let maximum):
            "a partition can have at most \(maximum) \"\(kind)\" device\(maximum == 1 ? "" : "s")"
        case .tooManyDevices(let count, let maximum):
            "\(count) devices are more than the \(maximum) a partition can have"
        case .duplicateInstance(let instance):
            "two devices have the instance \(instance)"
        case .unavailable(let kind, let reason):
            "device \"\(kind)\" is unavailable: \(reason)"
        case .notWhileRunning(let kind, let change):
            "a \"\(kind)\" device cannot be \(change) while the partition runs; stop the partition first"
        case .noSuchDevice(let instance):
            "the partition has no device \(instance) (`hv partition show` lists them)"
        }
    }
}
