import BenchProtocol
import DeviceHost
import DeviceModel
import LinuxSupport
import VMBusProtocol

/// The bench device as a partition's device: `hv bench channel` measures VSC↔VSP throughput
/// and latency through it (Docs/benchmarks.md).
public enum BenchDevice: ParentDevice {
    public typealias Settings = NoSettings
    public static let kind = "bench"
    public static let summary = "bench device (VSC↔VSP throughput and latency, hv bench channel)"
    public static let bus = DeviceBus.vmbus(classID: BenchProtocol.interfaceType)

    public static func make(_ settings: NoSettings, instance: GUID, resources: [OwnedDescriptor],
                            context: any DeviceContext) throws(DeviceError)
        -> DeviceInstance
    {
        .vmbus(BenchVSP(host: context))
    }
}
