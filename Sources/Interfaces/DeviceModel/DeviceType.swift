import VMBusProtocol

/// A kind of device a partition can have, described once for every process: its name in
/// partition configurations, how the guest reaches it, its typed settings and their rules.
///
/// The root validates configurations and assigns instances with it, the parent builds the
/// device from it (`ParentDevice` in DeviceHost adds that part), and `hv` lists it. Each
/// device's folder declares its types; `DeviceRegistry` lists them all.
public protocol DeviceType: Sendable {
    /// The device's settings as a partition configuration spells them (the JSON object's keys
    /// besides `kind` and `instance`).
    associatedtype Settings: Codable, Sendable, Equatable

    /// Its name in partition configurations: `"heartbeat"`, `"bench"`.
    static var kind: String { get }
    /// One line for `hv` and error messages.
    static var summary: String { get }
    /// How the guest reaches it.
    static var bus: DeviceBus { get }
    /// The settings a configuration gets when it names only the kind, or `nil` if the device
    /// cannot work without settings.
    static var defaultSettings: Settings? { get }
    /// The most instances of this kind one partition may have.
    static var maximumPerPartition: Int { get }
    /// Whether one can be added to, or removed from, a running partition (by default: the
    /// synthetic ones, which the guest sees come and go as VMBus offers and rescinds).
    static var hotPluggable: Bool { get }
    /// Whether its settings can change while the partition runs (e.g. a controller's disks).
    static var changeableWhileRunning: Bool { get }
    /// The first problem with `settings`, as a sentence, or `nil`.
    static func problem(with settings: Settings) -> String?
    /// The host resources the device needs with these settings, in the order it wants their
    /// descriptors (`ParentDevice.make` receives them opened).
    static func resources(for settings: Settings) -> [HostResource]
    /// Whether a Linux partition with this device boots on the legacy-PC platform (an 8259
    /// pair and ISA IRQ numbers) rather than hardware-reduced ACPI: a device whose Linux driver
    /// asks for an ISA IRQ by number, as `pata_legacy` does, gets none otherwise.
    static var requiresLegacyPC: Bool { get }
    /// The virtual switches (by name) the device plugs into with these settings: the root
    /// refuses the device while one does not exist, and refuses to delete a switch in use.
    static func virtualSwitches(for settings: Settings) -> [String]
    /// Why a running device with settings `current` cannot take `new` (for types that are
    /// `changeableWhileRunning` but not in every setting), as a sentence, or `nil`.
    static func problem(changing current: Settings, to new: Settings) -> String?
}

extension DeviceType {
    public static var defaultSettings: Settings? { nil }
    public static var maximumPerPartition: Int { 1 }
    public static var hotPluggable: Bool {
        if case .vmbus = bus { return true }
        return false
    }
    public static var changeableWhileRunning: Bool { false }
    public static func problem(with settings: Settings) -> String? { nil }
    public static func resources(for settings: Settings) -> [HostResource] { [] }
    public static var requiresLegacyPC: Bool { false }
    public static func virtualSwitches(for settings: Settings) -> [String] { [] }
    public static func problem(changing current: Settings, to new: Settings) -> String? { nil }
}

extension DeviceType where Settings == NoSettings {
    public static var defaultSettings: Settings? { NoSettings() }
}

/// How a guest reaches a device.
public enum DeviceBus: Hashable, Sendable {
    /// A synthetic device: a VMBus channel offered with this class (interface type) GUID.
    case vmbus(classID: GUID)
    /// An emulated legacy device on I/O ports the root forwards to the parent.
    case emulated
}

/// The settings of a device that has none.
public struct NoSettings: Codable, Sendable, Equatable {
    public init() {}
}
