import DeviceHost
import DeviceModel
import LinuxSupport
import ICProtocol
import VMBusProtocol

/// An integration service as a partition's device: offered on VMBus with the service's class
/// GUID, no settings, one per partition.
public protocol IntegrationServiceDevice: ParentDevice where Settings == NoSettings {
    static var service: ICService { get }
}

extension IntegrationServiceDevice {
    public static var bus: DeviceBus { .vmbus(classID: service.classID) }

    public static func make(_ settings: NoSettings, instance: GUID, resources: [OwnedDescriptor],
                            context: any DeviceContext) throws(DeviceError)
        -> DeviceInstance
    {
        .vmbus(IntegrationServiceVSP(service: service, host: context))
    }
}

/// The heartbeat service: the host sends a sequence number every second, the guest returns it plus one.
public enum HeartbeatDevice: IntegrationServiceDevice {
    public static let kind = "heartbeat"
    public static let summary = "heartbeat integration service (guest liveness)"
    public static let service = ICService.heartbeat
}

/// The shutdown service: `hv partition shutdown` asks the guest to power off.
public enum ShutdownDevice: IntegrationServiceDevice {
    public static let kind = "shutdown"
    public static let summary = "shutdown integration service (orderly power-off)"
    public static let service = ICService.shutdown
}

/// The time synchronization service: the host's wall clock every five seconds.
public enum TimeSyncDevice: IntegrationServiceDevice {
    public static let kind = "timesync"
    public static let summary = "time synchronization integration service (host clock)"
    public static let service = ICService.timeSync
}
