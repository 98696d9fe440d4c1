import DeviceHost

/// An emulated legacy device serving its partition: the guest's accesses to its ports arrive
/// here from the root.
struct EmulatedDeviceService: PartitionService {
    let device: any EmulatedDevice

    init(device: any EmulatedDevice) {
        self.device = device
        device.attach()
    }

    var ports: [Range<UInt16>] { device.ports }

    func portWrite(port: UInt16, size: Int, value: UInt32) {
        device.portWrite(port: port, size: size, value: value)
    }

    func portRead(port: UInt16, size: Int) -> UInt32 {
        device.portRead(port: port, size: size)
    }

    func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8] {
        device.portReadString(port: port, size: size, count: count)
    }

    func portWriteString(port: UInt16, size: Int, bytes: [UInt8]) {
        device.portWriteString(port: port, size: size, bytes: bytes)
    }

    func stop() {
        device.stop()
    }
}
