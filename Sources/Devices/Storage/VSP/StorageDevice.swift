import DeviceHost
import DeviceModel
import LinuxSupport
import StorageProtocol
import VMBusHost
import VMBusProtocol

/// The synthetic SCSI controller as a partition's device (kind `"scsi"`): a VMBus channel of
/// class ba6163d9-04a1-4d29-b605-72e2ffb1dc7f that Linux's `hv_storvsc` binds, with the disks of
/// its settings behind it (Docs/storage.md).
///
/// The root opens the disks' image files (`resources(for:)`); `make` adopts the descriptors.
/// Disks come and go while the partition runs (`change`): the controller attaches and detaches
/// them and the primary channel announces the change with ENUMERATE_BUS, after which Linux
/// rescans the bus.
public enum StorageDevice: ParentDevice {
    public typealias Settings = StorageSettings
    public static let kind = "scsi"
    public static let summary = "synthetic SCSI controller (storvsc) with disks on raw image files"
    public static let bus = DeviceBus.vmbus(classID: StorageChannelConstants.scsiInterfaceType)
    /// As many as Hyper-V gives a generation-2 virtual machine.
    public static let maximumPerPartition = 4
    public static let changeableWhileRunning = true

    public static func problem(with settings: StorageSettings) -> String? { settings.problem }

    public static func resources(for settings: StorageSettings) -> [HostResource] { settings.resources }

    public static func make(_ settings: StorageSettings, instance: GUID, resources: [OwnedDescriptor],
                            context: any DeviceContext) throws(DeviceError) -> DeviceInstance {
        let provider: StorageVSP
        do throws(StorageVSPError) {
            provider = try StorageVSP(settings: settings, instance: instance, memory: context.memory, host: context,
                                      logger: context.logger)
            try provider.apply(settings, resources: resources)
        } catch {
            throw .unavailable(kind: kind, reason: error.description)
        }
        return .vmbus(provider)
    }

    public static func change(_ device: DeviceInstance, to settings: StorageSettings, resources: [OwnedDescriptor],
                              context: any DeviceContext) throws(DeviceError) {
        guard case .vmbus(let provider) = device, let storage = provider as? StorageVSP else {
            throw .unavailable(kind: kind, reason: "the device is not a SCSI controller")
        }
        do throws(StorageVSPError) {
            try storage.apply(settings, resources: resources)
        } catch {
            throw .invalidSettings(kind: kind, reason: error.description)
        }
    }
}
