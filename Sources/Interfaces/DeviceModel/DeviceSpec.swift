import VMBusProtocol

/// A partition's device once the root has resolved its configuration: the kind, the instance
/// GUID the guest sees and the device's settings, checked against its type and encoded as
/// canonical JSON. This is what the parent partition receives.
public struct DeviceSpec: Hashable, Sendable {
    public var kind: String
    public var instance: GUID
    /// The typed settings as JSON with sorted keys.
    public var settings: [UInt8]
    /// What the root opens for the device; the parent receives the descriptors in this order.
    public var resources: [HostResource]

    public init(kind: String, instance: GUID, settings: [UInt8], resources: [HostResource] = []) {
        self.kind = kind
        self.instance = instance
        self.settings = settings
        self.resources = resources
    }
}
