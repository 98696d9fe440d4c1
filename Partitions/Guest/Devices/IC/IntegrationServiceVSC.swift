import HyperV
import ICProtocol
import VMBusClient
import VMBusProtocol

/// The guest side of a Hyper-V integration component, answering like Linux's hv_utils:
/// every request is answered in place (same buffer and length, icflags TRANSACTION|RESPONSE)
/// as an in-band packet (Docs/hyperv-interface.md §10.1).
public struct IntegrationServiceVSC<Channel: VMBusChannel> {
    public let service: ICService
    public var channel: Channel
    /// The message versions this guest accepts, most preferred first.
    public let messageVersions: [ICVersion]
    var buffer = [UInt8](repeating: 0, count: 4096)
    /// The message version agreed in the last NEGOTIATE.
    public private(set) var negotiated: ICVersion?
    /// The sequence number of the last heartbeat request.
    public private(set) var lastHeartbeat: UInt64?
    /// The last time sample (time synchronization only).
    public private(set) var lastTimeSample: TimeSample?

    /// A time-sync sample as the host sent it.
    public struct TimeSample: Hashable, Sendable {
        /// The host's UTC time when it took the sample.
        public var parentTime: FileTime
        /// The partition reference time at that moment (message version 4.0 and later).
        public var referenceTime: UInt64?
        public var flags: TimeSyncFlags
    }

    /// - Parameter messageVersions: the versions to accept; the service's own list by default.
    public init(service: ICService, channel: Channel, messageVersions: [ICVersion]? = nil) {
        self.service = service
        self.channel = channel
        self.messageVersions = messageVersions ?? service.messageVersions
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
            // A request that does not parse is dropped unanswered, as hv_utils drops it.
            guard let message = try? ICMessage(parsing: payload) else { continue }
            // Every request is answered in place, as hv_utils answers them: by the service's own
            // answer, or else with icflags TRANSACTION|RESPONSE and this status.
            var status: ICStatus? = .success
            switch message.header.messageType {
            case .negotiate:
                if let outcome = try? ICNegotiation.respond(inPlace: &payload, messageVersions: messageVersions) {
                    if case .agreed(_, let version) = outcome { negotiated = version }
                    status = nil
                } else {
                    status = .failure
                }
            case .heartbeat:
                if let body = try? HeartbeatBody.respond(inPlace: &payload) {
                    lastHeartbeat = body.sequenceNumber
                    status = nil
                } else {
                    status = .failure
                }
            case .shutdown:
                request = .shutdown
            case .timeSync:
                let version = negotiated ?? message.header.messageVersion
                lastTimeSample = timeSample(message.body, version: version) ?? lastTimeSample
            default:
                break
            }
            // The payload parsed as an IC message, so it holds the whole header this rewrites.
            if let status, (try? ICMessage.makeResponse(inPlace: &payload, status: status)) == nil { continue }
            channel.send(.inband, transactionID: descriptor.transactionID, payload: payload)
        }
        return request
    }

    /// The sample in a time-sync body of the negotiated message version `version`
    /// (`ictimesync_ref_data` from 4.0 on, `ictimesync_data` before, as
    /// `drivers/hv/hv_util.c: timesync_onchannelcallback` reads them).
    func timeSample(_ body: [UInt8], version: ICVersion) -> TimeSample? {
        if version.major >= 4 {
            guard let sample = try? TimeSyncReferenceBody(parsing: body) else { return nil }
            return TimeSample(parentTime: sample.parentTime, referenceTime: sample.vmReferenceTime, flags: sample.flags)
        }
        guard let sample = try? TimeSyncBody(parsing: body) else { return nil }
        return TimeSample(parentTime: sample.parentTime, referenceTime: nil, flags: sample.flags)
    }
}
