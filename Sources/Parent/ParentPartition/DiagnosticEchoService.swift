import HyperV
import LinuxSupport
import Logging

/// The diagnostic echo the probe guest times round trips against (`DiagnosticEcho`):
/// messages come back on the SINT the payload names; each signal of the event connection
/// sets the echo flag on processor 0 and raises its SINT.
final class DiagnosticEchoService: PartitionService {
    let partition: ChildPartition
    let listener: EventListener

    var messageConnections: [UInt32] { [DiagnosticEcho.messageConnection.rawValue] }

    init(partition: ChildPartition) throws(SystemError) {
        self.partition = partition
        let event = try EventFD()
        listener = try EventListener(name: "echo-\(partition.id)", event: event) { [partition] _ in
            partition.signalEvent(vp: 0, sint: UInt8(DiagnosticEcho.eventSINT), flag: UInt32(DiagnosticEcho.eventFlag))
        }
        partition.prepareDoorbell(vp: 0, sint: UInt8(DiagnosticEcho.eventSINT))
        partition.root.registerMessageConnection(partitionID: partition.id, connectionID: DiagnosticEcho.messageConnection.rawValue)
        partition.root.registerEventConnection(partitionID: partition.id, connectionID: DiagnosticEcho.eventConnection.rawValue,
                                               event: event)
    }

    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8]) {
        guard let sint = payload.first, Int(sint) < SynIC.sintCount, vp < partition.processorCount else { return }
        partition.postMessage(vp: vp, sint: sint, type: type, payload: payload)
    }

    func stop() {
        listener.stop()
    }
}
