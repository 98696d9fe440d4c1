import HyperV
import LinuxSupport
import VMBusHost

extension ChildPartition: VSPHost {
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
}
