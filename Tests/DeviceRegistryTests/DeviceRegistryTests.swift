import DeviceHost
import HyperV
import DeviceModel
import DeviceRegistry
import GuestMemory
import LinuxSupport
import Logging
import Synchronization
import Testing
import VMBusHost
import VMBusProtocol

/// A partition with nothing behind it, recording what devices ask of it.
final class RecordingContext: DeviceContext {
    let partitionName = "registry-test"
    let processorCount: UInt32 = 2
    let logger = Logger(label: "registry-test")
    let memory: GuestMemory

    init() throws {
        memory = try GuestMemory.create(name: "registry-test", size: 1 << 20)
    }
    let intercepted = Mutex<[Range<UInt16>]>([])

    func raise(vp: UInt32, sint: UInt8) {}
    func registerEventConnection(_ connection: ConnectionID, event: EventFD) {}
    func unregisterEventConnection(_ connection: ConnectionID) {}
    func report(_ facts: [String: String]) {}
    func referenceTime() -> UInt64 { 0 }
    func interceptPorts(_ ports: Range<UInt16>, accessesPerSecond: UInt32) { intercepted.withLock { $0.append(ports) } }
    func requestInterruptLine(pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void) { completion(nil) }
    func consoleOutput(_ bytes: [UInt8]) {}
}

@Suite("Device registry")
struct DeviceRegistryTests {
    @Test func kindsAndSyntheticClassesAreUnique() {
        let kinds = DeviceRegistry.devices.map { $0.kind }
        #expect(Set(kinds).count == kinds.count)
        let classes = DeviceRegistry.devices.compactMap { type -> GUID? in
            if case .vmbus(let classID) = type.bus { return classID }
            return nil
        }
        #expect(Set(classes).count == classes.count)
        #expect(DeviceRegistry.catalog.kinds == kinds)
    }

    /// Every registered device a configuration can name by kind alone builds, on the bus it declares.
    @Test func everyDeviceBuildsFromItsDefaultSettings() throws {
        let context = try RecordingContext()
        for type in DeviceRegistry.devices {
            try build(type, context)
        }
    }

    func build<T: ParentDevice>(_ type: T.Type, _ context: RecordingContext) throws {
        guard T.defaultSettings != nil else { return }
        let specs = try DeviceRegistry.catalog.resolve([DeviceConfiguration(kind: T.kind)], partition: "p")
        let settings = try DeviceCatalog.settings(of: specs[0], as: T.self)
        let instance = try T.make(settings, instance: specs[0].instance, resources: [], context: context)
        switch (T.bus, instance) {
        case (.vmbus, .vmbus(let provider)):
            let session = provider.openSession(ChannelOpening(relID: 1, targetVP: 0))
            #expect(session != nil, "\(T.kind) refused to open a channel")
        case (.emulated, .emulated(let device)):
            context.intercepted.withLock { $0.removeAll() }
            device.attach()
            #expect(context.intercepted.withLock { $0 } == device.ports, "\(T.kind) did not intercept its ports")
            device.stop()
        default:
            Issue.record("\(T.kind) built a device for another bus than \(T.bus)")
        }
    }
}
