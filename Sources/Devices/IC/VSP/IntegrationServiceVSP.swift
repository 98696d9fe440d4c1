import DeviceHost
import Foundation
import HyperV
import ICProtocol
import LinuxSupport
import Synchronization
import VMBusHost
import VMBusProtocol

/// A Hyper-V integration component served by the parent partition: heartbeat, shutdown or
/// time synchronization (Docs/hyperv-interface.md §10).
///
/// The host speaks first: NEGOTIATE with the framework and message versions it supports; the
/// guest answers in place with the versions it picked. Then the service runs: heartbeats every
/// second (the guest returns the sequence number plus one), a shutdown request when a user asks
/// for one (always the full 2060-byte body), or time samples every five seconds (version 4.0
/// carries the partition reference time at which the host time was read).
public final class IntegrationServiceVSP: VirtualServiceProvider, GuestShutdownProvider {
    public let service: ICService
    let host: any VSPHost
    /// Set by `requestGuestShutdown` (any thread); the open channel's session sends the request
    /// at its next tick.
    let shutdownRequested = Atomic<Bool>(false)

    /// How often heartbeats and time samples go out.
    public static let heartbeatInterval: UInt64 = 1_000_000_000
    public static let timeSampleInterval: UInt64 = 5_000_000_000

    public init(service: ICService, host: any VSPHost) {
        self.service = service
        self.host = host
    }

    /// The fact prefix: "heartbeat", "shutdown" or "timesync".
    var name: String {
        switch service.messageType {
        case .heartbeat: "heartbeat"
        case .shutdown: "shutdown"
        case .timeSync: "timesync"
        default: "ic\(service.messageType.rawValue)"
        }
    }

    /// Asks the guest to power off, if this is the shutdown service.
    public func requestGuestShutdown() {
        guard service.messageType == .shutdown else { return }
        shutdownRequested.store(true, ordering: .releasing)
    }

    public func openSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        IntegrationServiceSession(device: self)
    }

    /// After a parent restart the service starts over on the open channel: a new session sends
    /// NEGOTIATE again, which guests answer at any time (Linux's `drivers/hv/hv_util.c`
    /// callbacks handle ICMSGTYPE_NEGOTIATE whenever it arrives), and nothing else carries over.
    public func resumeSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        IntegrationServiceSession(device: self)
    }
}

/// One open channel of an integration service: the negotiation and the requests in flight.
final class IntegrationServiceSession: ChannelSession {
    let device: IntegrationServiceVSP
    private var state = State.negotiating
    private var transaction: UInt8 = 0
    /// The ictransaction_id and type of the request the guest has yet to answer (`nil`: none).
    /// A newer request replaces it, so a late answer to an older one is ignored, and so is an
    /// answer a session before this one asked for (after a parent restart) even when its
    /// ictransaction_id happens to match.
    private var outstanding: (id: UInt8, type: ICMessageType)?
    private var heartbeatSequence: UInt64 = 0
    private var samples = 0

    enum State {
        case negotiating
        case ready(framework: ICVersion, message: ICVersion)
        case unsupported
    }

    /// Formats the time of the last heartbeat answer. corelibs' ISO8601DateFormatter creates
    /// its CF formatter lazily and formats through one ICU object, so it is not safe to share
    /// between threads unlocked; the lock is uncontended in practice.
    private static let timestampFormatter = Mutex(ISO8601DateFormatter())

    init(device: IntegrationServiceVSP) {
        self.device = device
    }

    private var service: ICService { device.service }
    private var name: String { device.name }
    private var host: any VSPHost { device.host }

    var tickInterval: UInt64? {
        switch service.messageType {
        case .heartbeat: IntegrationServiceVSP.heartbeatInterval
        case .timeSync: IntegrationServiceVSP.timeSampleInterval
        default: 50_000_000
        }
    }

    /// The host speaks first: NEGOTIATE with every version it supports.
    func start(on channel: VSPChannel) throws(VSPError) {
        let negotiate = ICNegotiation.request(frameworkVersions: ICService.frameworkVersions,
                                              messageVersions: service.messageVersions, transactionID: nextTransaction())
        try send(negotiate, on: channel)
        host.report(["\(name).state": "negotiating"])
    }

    func close() {
        host.report(["\(name).state": "closed"])
    }

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        guard packet.descriptor.type == .inband else {
            throw .protocolViolation("\(name): packet type \(packet.descriptor.type.rawValue)")
        }
        let message: ICMessage
        do throws(ICError) {
            message = try ICMessage(parsing: Array(packet.payload))
        } catch {
            throw .protocolViolation("\(name): \(error)")
        }
        guard message.header.flags.contains(.response) else {
            throw .protocolViolation("\(name): the guest sent a request")
        }
        // Only the answer to the request in flight counts: an unsolicited, repeated or stale
        // answer is dropped (not reported, not a violation: a late answer is not hostile).
        guard let expected = outstanding, message.header.transactionID == expected.id,
              message.header.messageType == expected.type else { return }
        outstanding = nil
        switch (state, message.header.messageType) {
        case (.negotiating, .negotiate):
            let outcome: ICNegotiationOutcome
            do throws(ICError) {
                outcome = try ICNegotiation.outcome(of: message)
            } catch {
                throw .protocolViolation("\(name): negotiation answer: \(error)")
            }
            switch outcome {
            case .agreed(let framework, let version):
                guard ICService.frameworkVersions.contains(framework), service.messageVersions.contains(version) else {
                    throw .protocolViolation(
                        "\(name): the guest picked framework \(framework.major).\(framework.minor) and message "
                            + "\(version.major).\(version.minor), which were not both offered")
                }
                state = .ready(framework: framework, message: version)
                host.report(["\(name).state": "ready", "\(name).version": "\(version.major).\(version.minor)"])
                try onReady(channel)
            case .noCommonVersion:
                state = .unsupported
                host.report(["\(name).state": "no common version"])
            }
        case (.ready, .heartbeat):
            guard let body = try? HeartbeatBody(parsing: message.body) else {
                throw .protocolViolation("heartbeat: malformed answer")
            }
            heartbeatSequence = body.sequenceNumber
            host.report(["heartbeat.sequence": "\(body.sequenceNumber)",
                         "heartbeat.seen": Self.timestampFormatter.withLock { $0.string(from: Date()) }])
        case (.ready, .shutdown):
            host.report(["shutdown.answer": message.header.status == .success ? "accepted" : "refused"])
        case (.ready, .timeSync):
            samples += 1
            host.report(["timesync.samples": "\(samples)"])
        default:
            throw .protocolViolation("\(name): unexpected \(message.header.messageType.rawValue) answer")
        }
    }

    func tick(on channel: VSPChannel) throws(VSPError) {
        guard case .ready(let framework, let version) = state else { return }
        switch service.messageType {
        case .heartbeat:
            let body = HeartbeatBody(sequenceNumber: heartbeatSequence &+ 1).bytes
            try send(request(.heartbeat, framework, version, body), on: channel)
        case .timeSync:
            try sendTimeSample(framework, version, flags: samples == 0 ? .sync : .sample, on: channel)
        case .shutdown:
            if device.shutdownRequested.exchange(false, ordering: .acquiringAndReleasing) {
                let body = ShutdownBody(reasonCode: 0, timeoutSeconds: 0, flags: .powerOff,
                                        displayMessage: Array("hv partition shutdown".utf8)).bytes
                try send(request(.shutdown, framework, version, body), on: channel)
                host.report(["shutdown.answer": "requested"])
            }
        default:
            break
        }
    }

    private func onReady(_ channel: VSPChannel) throws(VSPError) {
        guard case .ready(let framework, let version) = state else { return }
        if service.messageType == .timeSync { try sendTimeSample(framework, version, flags: .sync, on: channel) }
        if service.messageType == .heartbeat {
            try send(request(.heartbeat, framework, version, HeartbeatBody(sequenceNumber: heartbeatSequence).bytes), on: channel)
        }
    }

    /// A time sample: the host's wall clock as FILETIME and, for version 4.0, the partition
    /// reference time read at the same moment (the guest adds the time elapsed since).
    private func sendTimeSample(_ framework: ICVersion, _ version: ICVersion, flags: TimeSyncFlags,
                                on channel: VSPChannel) throws(VSPError) {
        let reference = host.referenceTime()
        let unix100ns = MonotonicClock.realtimeNanoseconds() / 100
        guard let now = FileTime(unix100Nanoseconds: Int64(clamping: unix100ns)) else { return }
        let body: [UInt8]
        if version.major >= 4 {
            body = TimeSyncReferenceBody(parentTime: now, vmReferenceTime: reference, flags: flags).bytes
        } else {
            body = TimeSyncBody(parentTime: now, childTime: FileTime(rawValue: 0), roundTripTime: 0, flags: flags).bytes
        }
        try send(request(.timeSync, framework, version, body), on: channel)
    }

    private func request(_ type: ICMessageType, _ framework: ICVersion, _ version: ICVersion, _ body: [UInt8]) -> ICMessage {
        ICMessage.request(type: type, frameworkVersion: framework, messageVersion: version,
                          transactionID: nextTransaction(), body: body)
    }

    private func nextTransaction() -> UInt8 {
        transaction &+= 1
        return transaction
    }

    /// In-band, no completion requested, transaction ID 0 (Docs/hyperv-interface.md §10.1).
    /// Once queued, the request is the one whose answer `handle` waits for.
    private func send(_ message: ICMessage, on channel: VSPChannel) throws(VSPError) {
        try channel.send(.inband, transactionID: 0, payload: message.bytes)
        outstanding = (message.header.transactionID, message.header.messageType)
    }
}
