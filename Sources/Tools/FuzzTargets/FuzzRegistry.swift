import FuzzSupport

/// Every fuzz target `hv fuzz` and the fuzz tests run: one line per guest- or user-facing
/// surface. A device adds its target here: a `VMBusDeviceTraffic` for a VMBus device, an
/// `EmulatedDeviceTraffic` for a port device, or an adapter of its own fuzzer.
public enum FuzzRegistry {
    public static let targets: [any FuzzTarget.Type] = [
        VMBusServerFuzzTarget.self,
        RingFuzzTarget.self,
        HypervisorFuzzTarget.self,
        ControlFuzzTarget.self,
        ManagementAPIFuzzTarget.self,
        VMBusDeviceFuzzTarget<IntegrationServiceTraffic>.self,
        VMBusDeviceFuzzTarget<BenchTraffic>.self,
        EmulatedDeviceFuzzTarget<SerialTraffic>.self,
        NetworkFuzzTarget.self,
        OffloadFuzzTarget.self,
        StorageFuzzTarget.self,
        IDEFuzzTarget.self,
    ]

    /// The target called `name`.
    public static func target(named name: String) -> (any FuzzTarget.Type)? {
        targets.first { $0.name == name }
    }
}
