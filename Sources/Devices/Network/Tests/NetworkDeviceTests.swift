import DeviceModel
import GuestMemory
import NetworkProtocol
import NetworkVSP
import Testing
import VMBusProtocol
import VSPTestSupport
import VirtualSwitch

/// The `nic` device type: its settings, their rules, and the address it derives.
@Suite("NIC device type")
struct NetworkDeviceTests {
    static let catalog = DeviceCatalog([NetworkDevice.self])

    @Test func settingsResolveWithTheirRules() throws {
        let specs = try Self.catalog.resolve([DeviceConfiguration(kind: "nic", settings: ["switch": .string("lab")])],
                                             partition: "alpha")
        #expect(Self.catalog.virtualSwitches(of: specs[0]) == ["lab"])
        let settings = try DeviceCatalog.settings(of: specs[0], as: NetworkDevice.self)
        #expect(settings == NetworkDevice.Settings(switchName: "lab"))
        #expect(NetworkDevice.hotPluggable && NetworkDevice.changeableWhileRunning)
    }

    @Test(arguments: [
        (["switch": JSONValue.string("lab"), "mac": .string("01:00:5e:00:00:01")], "group or zero"),
        (["switch": .string("lab"), "mac": .string("00:00:00:00:00:00")], "group or zero"),
        (["switch": .string("lab"), "mac": .string("00:15:5d:zz:00:01")], "not six hex bytes"),
        (["switch": .string("lab"), "queues": .number(9)], "queues must be"),
        (["switch": .string("")], "switch:"),
        (["switch": .string("a b")], "switch:"),
        (["mac": .string("00:15:5d:00:00:01")], "missing setting \"switch\""),
        (["switch": .string("lab"), "speed": .number(10)], "unknown setting \"speed\""),
    ])
    func badSettingsAreRefused(_ settings: [String: JSONValue], _ reason: String) {
        #expect(throws: DeviceError.self) {
            _ = try Self.catalog.resolve([DeviceConfiguration(kind: "nic", settings: settings)], partition: "alpha")
        }
        do {
            _ = try Self.catalog.resolve([DeviceConfiguration(kind: "nic", settings: settings)], partition: "alpha")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test func onlyTheCableChangesWhileRunning() throws {
        let spec = try Self.catalog.resolve([DeviceConfiguration(kind: "nic", settings: ["switch": .string("lab")])],
                                            partition: "alpha")[0]
        let unplugged = try Self.catalog.resolve(changing: spec, to: ["switch": .string("lab"), "connected": .bool(false)],
                                                 among: [spec])
        #expect(try DeviceCatalog.settings(of: unplugged, as: NetworkDevice.self).connected == false)
        #expect(throws: DeviceError.self) {
            _ = try Self.catalog.resolve(changing: spec, to: ["switch": .string("other")], among: [spec])
        }
        #expect(throws: DeviceError.self) {
            _ = try Self.catalog.resolve(changing: spec, to: ["switch": .string("lab"), "mac": .string("00:15:5d:00:00:09")],
                                         among: [spec])
        }
        #expect(throws: DeviceError.self) {
            _ = try Self.catalog.resolve(changing: spec, to: ["switch": .string("lab"), "vlanTrunk": .bool(true)], among: [spec])
        }
        // Unset and false are the same mode.
        _ = try Self.catalog.resolve(changing: spec, to: ["switch": .string("lab"), "vlanTrunk": .bool(false)], among: [spec])
    }

    /// Untagged by default, as on Hyper-V; `vlanTrunk` makes the NIC's switch port carry tags.
    @Test func aNICsPortCarriesVLANTagsOnlyInTrunkMode() throws {
        let virtualSwitch = VirtualSwitch(name: "lab", kind: .private)
        let memory = try GuestMemory.create(name: "nic", size: 1 << 20)
        for trunk in [false, true] {
            let address = MACAddress(0x00, 0x15, 0x5D, 0, 1, trunk ? 2 : 1)
            let adapter = try NetworkAdapter(instance: GUID(1, 2, 3, trunk ? 2 : 1), address: address, queues: 1,
                                             connected: true, vlanTrunk: trunk, switch: virtualSwitch, memory: memory,
                                             host: FakeVSPHost())
            let tagged = NetworkFrame(bytes: MACAddress.broadcast.bytes + address.bytes + [0x81, 0x00] + [UInt8](repeating: 0, count: 46))
            virtualSwitch.send([tagged], from: adapter.port)
            #expect(virtualSwitch.counters(of: adapter.port)?.dropped(.vlanTagged) == (trunk ? 0 : 1))
        }
    }

    @Test func theDerivedAddressIsStableUnicastAndHyperVs() {
        let instance = DeviceCatalog.instance(partition: "alpha", kind: "nic", index: 0)
        let address = NetworkDevice.defaultAddress(partition: "alpha", instance: instance)
        #expect(address == NetworkDevice.defaultAddress(partition: "alpha", instance: instance))
        #expect(address != NetworkDevice.defaultAddress(partition: "beta", instance: instance))
        #expect(address.rawValue >> 24 == 0x00155D)
        #expect(!address.isGroup)
        #expect(MACAddress(text: address.text) == address)
        #expect(MACAddress(text: "00-15-5D-01-02-03") == MACAddress(0x00, 0x15, 0x5D, 1, 2, 3))
        #expect(MACAddress(text: "00155d010203") == MACAddress(0x00, 0x15, 0x5D, 1, 2, 3))
        #expect(MACAddress(text: "00:15:5d:01:02") == nil)
    }
}
