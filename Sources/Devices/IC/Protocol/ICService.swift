import VMBusProtocol

/// An integration-component service the host offers and the versions a Linux guest prefers for it,
/// most preferred first (callers of `drivers/hv/channel_mgmt.c: vmbus_prep_negotiate_resp`;
/// Docs/hyperv-interface.md §10.3).
public struct ICService: Hashable, Sendable {
    /// The device class GUID offered on VMBus (Docs/hyperv-interface.md §14).
    public var classID: GUID
    /// The icmsgtype of the service's own messages.
    public var messageType: ICMessageType
    /// Message versions in the guest's order of preference.
    public var messageVersions: [ICVersion]
    /// The largest packet, descriptor included, the guest accepts on this channel
    /// (Docs/hyperv-interface.md §9.5).
    public var maximumPacketSize: Int

    /// Creates a service description.
    public init(classID: GUID, messageType: ICMessageType, messageVersions: [ICVersion], maximumPacketSize: Int) {
        self.classID = classID
        self.messageType = messageType
        self.messageVersions = messageVersions
        self.maximumPacketSize = maximumPacketSize
    }

    /// Framework versions in the guest's order of preference: 3.0, 1.0.
    public static let frameworkVersions = [ICVersion(3, 0), ICVersion(1, 0)]

    /// Heartbeat: 3.0, 1.0.
    public static let heartbeat = ICService(
        classID: .heartbeat, messageType: .heartbeat, messageVersions: [ICVersion(3, 0), ICVersion(1, 0)],
        maximumPacketSize: 4096)
    /// Shutdown: 3.2, 3.1, 3.0, 1.0.
    public static let shutdown = ICService(
        classID: .shutdown, messageType: .shutdown,
        messageVersions: [ICVersion(3, 2), ICVersion(3, 1), ICVersion(3, 0), ICVersion(1, 0)],
        maximumPacketSize: 4096)
    /// Time synchronization: 4.0, 3.0, 1.0.
    public static let timeSync = ICService(
        classID: .timeSync, messageType: .timeSync,
        messageVersions: [ICVersion(4, 0), ICVersion(3, 0), ICVersion(1, 0)], maximumPacketSize: 4096)
    /// Key-value pair exchange: 4.0, 3.0, 1.0 (answered only once hv_kvp_daemon runs).
    public static let kvp = ICService(
        classID: .kvp, messageType: .kvpExchange,
        messageVersions: [ICVersion(4, 0), ICVersion(3, 0), ICVersion(1, 0)], maximumPacketSize: 16384)
}
