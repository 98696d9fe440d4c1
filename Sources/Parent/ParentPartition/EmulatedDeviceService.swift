import ControlProtocol
import DeviceHost
import Synchronization

/// An emulated legacy device serving its partition: the guest's accesses to its ports arrive
/// here from the root. What the device keeps across a parent restart (`savedState`) is
/// committed to the root whenever a write changes it, and given back to the device under the
/// next parent (Docs/architecture.md, "A parent that restarts").
final class EmulatedDeviceService: PartitionService {
    let device: any EmulatedDevice
    let partition: ChildPartition
    /// The saved-state record of this device.
    let key: UInt64
    private let saved: Mutex<[UInt8]?>

    /// The top byte of the keys of emulated devices' records (the VMBus server's is 0x01).
    static let owner: UInt64 = 0x02

    /// The record key of the device on `ports` (ports never overlap, so its first port names it).
    static func key(for ports: [Range<UInt16>]) -> UInt64 { owner << 56 | UInt64(ports.first?.lowerBound ?? 0) }

    /// - Parameter saved: the partition's saved state; the device's record, if any, is restored.
    init(device: any EmulatedDevice, partition: ChildPartition, saved: [UInt64: [UInt8]]) {
        self.device = device
        self.partition = partition
        key = Self.key(for: device.ports)
        if let state = saved[key] { device.restore(state) }
        device.attach()
        self.saved = Mutex(saved[key])
        commitIfChanged()
    }

    var ports: [Range<UInt16>] { device.ports }

    func portWrite(port: UInt16, size: Int, value: UInt32) {
        device.portWrite(port: port, size: size, value: value)
        commitIfChanged()
    }

    func portRead(port: UInt16, size: Int) -> UInt32 {
        device.portRead(port: port, size: size)
    }

    func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8] {
        device.portReadString(port: port, size: size, count: count)
    }

    func portWriteString(port: UInt16, size: Int, bytes: [UInt8]) {
        device.portWriteString(port: port, size: size, bytes: bytes)
        commitIfChanged()
    }

    func stop() {
        device.stop()
    }

    /// Commits the device's state if it differs from what was committed last (control thread).
    private func commitIfChanged() {
        guard let state = device.savedState else { return }
        let changed = saved.withLock { last -> Bool in
            guard last != state else { return false }
            last = state
            return true
        }
        if changed {
            partition.root.commit(partitionID: partition.id, sequence: 0, records: [StateRecord(key: key, bytes: state)], posts: [])
        }
    }
}
