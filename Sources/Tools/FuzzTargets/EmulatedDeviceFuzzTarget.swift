import DeviceHost
import FuzzSupport
import SerialEmulator
import VMBusProtocol

/// What a guest does to one kind of emulated device: the device under test, built as the parent
/// builds it. Accesses stay inside the ports the device decodes (the root forwards no others);
/// sizes, values and orders are the fuzzer's.
protocol EmulatedDeviceTraffic {
    static var name: String { get }
    static var summary: String { get }
    static func makeDevice(context: FuzzDeviceContext) throws -> any EmulatedDevice
    /// Values worth writing (register bits the device acts on); random values are mixed in.
    static var interestingValues: [UInt32] { get }
}

/// Fuzzes an emulated device with random port accesses: register reads and writes of every
/// size, plausible values and noise, in any order.
enum EmulatedDeviceFuzzTarget<Traffic: EmulatedDeviceTraffic>: FuzzTarget {
    static var name: String { Traffic.name }
    static var summary: String { Traffic.summary }
    static var sessionLength: Int { 20_000 }

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        let device: any EmulatedDevice
        do {
            device = try Traffic.makeDevice(context: try FuzzDeviceContext(memorySize: 2 << 20))
        } catch {
            return [FuzzFinding(caseIndex: 0, message: "cannot set up the device: \(error)")]
        }
        device.attach()
        let ranges = device.ports.filter { !$0.isEmpty }
        guard !ranges.isEmpty else { return [FuzzFinding(caseIndex: 0, message: "the device decodes no ports")] }
        for index in 0..<cases {
            let range = random.pick(ranges)
            let port = UInt16(random.int(Int(range.lowerBound)...Int(range.upperBound - 1)))
            let size = random.pick([1, 1, 1, 2, 4])
            switch random.int(0...9) {
            case 0...4:
                let value = random.chance(2, in: 3) ? random.pick(Traffic.interestingValues)
                                                    : UInt32(truncatingIfNeeded: random.next())
                device.portWrite(port: port, size: size, value: value)
            case 5...8:
                _ = device.portRead(port: port, size: size)
            default:
                // A string instruction (REP INS/OUTS) of up to a page, as the root forwards one.
                let count = random.int(1...(4096 / size))
                if random.chance(1, in: 2) {
                    _ = device.portReadString(port: port, size: size, count: count)
                } else {
                    let bytes = (0..<(count * size)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    device.portWriteString(port: port, size: size, bytes: bytes)
                }
            }
            if index % 1024 == 1023 { progress(index + 1) }
        }
        device.stop()
        progress(cases)
        return []
    }
}

/// COM1, the 16550 UART Linux partitions' consoles use.
enum SerialTraffic: EmulatedDeviceTraffic {
    static let name = "serial"
    static let summary = "the COM1 16550 UART (emulated) against random register accesses"

    static func makeDevice(context: FuzzDeviceContext) throws -> any EmulatedDevice {
        guard case .emulated(let device) = try SerialPortDevice.make(.init(), instance: GUID(0, 0, 0, 1), resources: [],
                                                                      context: context) else {
            throw FuzzSetupError.wrongBus
        }
        return device
    }

    /// DLAB, FIFO enable/reset, loopback, interrupt enables, text.
    static let interestingValues: [UInt32] = [0, 0x80, 0x03, 0x83, 0x07, 0xC7, 0x10, 0x0F, 0x0B, 0x41, 0x0A, 0xFF]
}

/// A device that cannot be set up for fuzzing.
enum FuzzSetupError: Error {
    case wrongBus
}
