import BenchVSP
import DeviceHost
import DeviceModel
import ICVSP
import IDEEmulator
import NetworkVSP
import SerialEmulator
import StorageVSP

/// Every kind of device this build can give a partition: the one place devices are
/// registered. A new device is a folder under Sources/Devices (Package.swift finds it) and a
/// line here.
public enum DeviceRegistry {
    public static let devices: [any ParentDevice.Type] = [
        HeartbeatDevice.self,
        ShutdownDevice.self,
        TimeSyncDevice.self,
        BenchDevice.self,
        SerialPortDevice.self,
        StorageDevice.self,
        IDEDevice.self,
        NetworkDevice.self,
    ]

    /// The devices as the root and `hv` see them: kinds, settings and rules.
    public static let catalog = DeviceCatalog(devices.map { $0 as any DeviceType.Type })
}
