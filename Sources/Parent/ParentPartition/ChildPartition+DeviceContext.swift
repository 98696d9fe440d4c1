import DeviceHost
import HyperV
import LinuxSupport
import VMBusHost

extension ChildPartition: DeviceContext {
    public var partitionName: String { name }

    public func registerEventConnection(_ connection: ConnectionID, event: EventFD) {
        root.registerEventConnection(partitionID: id, connectionID: connection.rawValue, event: event)
    }

    public func unregisterEventConnection(_ connection: ConnectionID) {
        root.unregisterEventConnection(partitionID: id, connectionID: connection.rawValue)
    }

    public func report(_ facts: [String: String]) {
        root.reportStatus(partitionID: id, facts: facts)
    }

    public func interceptPorts(_ ports: Range<UInt16>, accessesPerSecond: UInt32) {
        root.send(.registerPorts(partitionID: id, base: ports.lowerBound, count: UInt16(ports.count),
                                 accessesPerSecond: accessesPerSecond), partition: id)
    }

    public func requestInterruptLine(pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void) {
        root.requestInterruptLine(partitionID: id, pin: pin, completion: completion)
    }

    public func consoleOutput(_ bytes: [UInt8]) {
        root.consoleOutput(partitionID: id, bytes: bytes)
    }

    public func sharedBackend<Backend: Sendable>(_ type: Backend.Type) -> Backend? {
        backends.lookup(type)
    }
}
