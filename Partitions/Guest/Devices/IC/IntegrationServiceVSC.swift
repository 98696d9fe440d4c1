import GuestKit
import GuestVMBus
import HyperV
import ICProtocol
import VMBusProtocol

/// The guest side of a Hyper-V integration component, answering like Linux's hv_utils:
/// every request is answered in place (same buffer and length, icflags TRANSACTION|RESPONSE)
/// as an in-band packet (Docs/hyperv-interface.md §10.1).
public struct IntegrationServiceVSC {
    public let service: ICService
    public var channel: GuestChannel
    var buffer = [UInt8](repeating: 0, count: 4096)
    public private(set) var negotiated: ICVersion?

    public init(service: ICService, channel: GuestChannel) {
        self.service = service
        self.channel = channel
    }

    /// What handling a packet asked of the guest.
    public enum Request {
        case none
        case shutdown
    }

    /// Answers every pending request; returns `.shutdown` if the host asked for a power-off.
    public mutating func poll() -> Request {
        var request = Request.none
        while let descriptor = channel.receive(into: &buffer) {
            // RingReader.next guarantees payloadOffset <= totalLength <= buffer.count; an empty
            // payload fails to parse below.
            var payload = Array(buffer[descriptor.payloadOffset..<descriptor.totalLength])
            guard let message = try? ICMessage(parsing: payload) else { continue }
            switch message.header.messageType {
            case .negotiate:
                if case .agreed(_, let version)? = try? ICNegotiation.respond(inPlace: &payload, messageVersions: service.messageVersions) {
                    negotiated = version
                }
            case .heartbeat:
                _ = try? HeartbeatBody.respond(inPlace: &payload)
            case .shutdown:
                _ = try? ICMessage.makeResponse(inPlace: &payload, status: .success)
                request = .shutdown
            default:
                _ = try? ICMessage.makeResponse(inPlace: &payload, status: .success)
            }
            channel.send(.inband, transactionID: descriptor.transactionID, payload: payload)
        }
        return request
    }
}
