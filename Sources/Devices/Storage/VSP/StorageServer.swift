import StorageProtocol
import VMBusProtocol

/// The storage protocol of one VMBus channel as an I/O-free state machine: packets from the
/// guest in, `StorageAction`s out (drivers/scsi/storvsc_drv.c is the peer it is written
/// against).
///
/// A primary channel goes through BEGIN_INITIALIZATION → QUERY_PROTOCOL_VERSION (repeated
/// until a version is accepted) → QUERY_PROPERTIES → END_INITIALIZATION and is then ready for
/// SRBs and CREATE_SUB_CHANNELS. A sub-channel is ready from the start with its primary's
/// version. Every packet that asks for an answer gets one, negative if it must; every
/// EXECUTE_SRB is completed exactly once, because Linux never times storage requests out
/// (`storvsc_eh_timed_out`).
///
/// Not thread-safe: one channel worker owns it. The controller it shares with the other
/// channels of the device is.
public struct StorageServer: Sendable {
    public struct Configuration: Hashable, Sendable {
        /// Sub-channels the guest may ask for (QUERY_PROPERTIES max_channel_cnt); the
        /// multi-channel flag is set when this is non-zero.
        public var maximumSubChannels: UInt16
        /// Protocol versions accepted. Linux proposes 6.2, 6.0, 5.1 in that order.
        public var supportedVersions: [StorageProtocolVersion]
        /// Requests handed to the driver at once; more are answered BUSY (Linux retries).
        public var maximumOutstandingRequests: Int

        public init(maximumSubChannels: UInt16 = 0, supportedVersions: [StorageProtocolVersion] = StorageProtocolVersion.offeredByLinux,
                    maximumOutstandingRequests: Int = 256) {
            self.maximumSubChannels = maximumSubChannels
            self.supportedVersions = supportedVersions
            self.maximumOutstandingRequests = max(1, maximumOutstandingRequests)
        }
    }

    /// Which channel of the device this is.
    public enum Role: Hashable, Sendable {
        case primary
        /// A sub-channel of a primary that negotiated this version.
        case subChannel(StorageProtocolVersion)
    }

    /// Where the channel is in its initialization.
    public enum Phase: Hashable, Sendable {
        case awaitingBeginInitialization
        case awaitingProtocolVersion
        case initializing(StorageProtocolVersion)
        case ready(StorageProtocolVersion)
    }

    /// NTSTATUS of a busy answer (STATUS_DEVICE_BUSY).
    static let deviceBusy = StorageStatus(rawValue: 0x8000_0011)

    public let controller: StorageController
    public let configuration: Configuration
    public let role: Role
    public private(set) var phase: Phase
    /// Sub-channels created so far (primary only).
    public private(set) var subChannelsCreated: UInt16 = 0
    private var announcedGeneration: UInt64
    var requests = RequestTable()
    /// The CDB of the request being run, in storage kept from request to request.
    var cdbBytes: [UInt8] = []

    public init(controller: StorageController, configuration: Configuration = Configuration(), role: Role = .primary) {
        self.controller = controller
        self.configuration = configuration
        self.role = role
        switch role {
        case .primary: phase = .awaitingBeginInitialization
        case .subChannel(let version): phase = .ready(version)
        }
        announcedGeneration = controller.busGeneration
        cdbBytes.reserveCapacity(SCSIRequestBlock.maximumCDBLength)
    }

    /// A primary channel's server taken over from a parent that died with the channel ready
    /// (Docs/storage.md, "A parent that restarts"): it starts ready, at the newest accepted
    /// version, with no sub-channels left to create (the guest asked for them already). That is
    /// exact on the wire only while every accepted version has the same packet and request-block
    /// layout, which `resumableVersion` checks.
    /// - Returns: nil when the accepted versions' layouts differ (the channel must be offered again).
    public init?(resuming controller: StorageController, configuration: Configuration) {
        guard let version = Self.resumableVersion(of: configuration) else { return nil }
        self.init(controller: controller, configuration: configuration, role: .primary)
        phase = .ready(version)
        subChannelsCreated = configuration.maximumSubChannels
    }

    /// The version a resumed channel runs at: the newest accepted one, if every accepted version
    /// lays out the request block and its sense data alike (6.2, 6.0 and 5.1 do).
    public static func resumableVersion(of configuration: Configuration) -> StorageProtocolVersion? {
        guard let newest = configuration.supportedVersions.max() else { return nil }
        let alike = configuration.supportedVersions.allSatisfy {
            $0.srbSize == newest.srbSize && $0.senseBufferSize == newest.senseBufferSize
        }
        return alike ? newest : nil
    }

    /// The negotiated version, once there is one.
    public var version: StorageProtocolVersion? {
        switch phase {
        case .initializing(let version), .ready(let version): version
        case .awaitingBeginInitialization, .awaitingProtocolVersion: nil
        }
    }

    /// Requests handed to the driver and not yet completed.
    public var outstandingCount: Int { requests.count }

    /// The most pages a request's buffer may span: the maximum transfer plus one for an
    /// unaligned start.
    public var maximumPages: Int { Int(controller.maximumTransferBytes) / VMBusConstants.pageSize + 1 }

    /// Handles one packet from the guest.
    public mutating func handle(_ packet: StorageIncomingPacket) -> [StorageAction] {
        var actions: [StorageAction] = []
        handle(packet, into: &actions)
        return actions
    }

    /// Handles one packet from the guest, appending what to do to `actions`: a driver that keeps
    /// the array from packet to packet handles a request without allocating one.
    public mutating func handle(_ packet: StorageIncomingPacket, into actions: inout [StorageAction]) {
        guard packet.type == .inband || packet.type == .gpaDirect else {
            actions += reject(packet, status: .invalidParameter, "packet type \(packet.type.rawValue) is not in-band or GPA-direct")
            return
        }
        let request: VStorPacket
        do {
            request = try VStorPacket(parsing: packet.bytes, from: packet.payloadRange.lowerBound, to: packet.payloadRange.upperBound)
        } catch {
            actions += reject(packet, status: .invalidParameter, "vstor_packet of \(packet.payloadRange.count) bytes")
            return
        }
        guard request.operation == .executeSRB else {
            actions += control(request, packet)
            return
        }
        guard packet.flags.contains(.completionRequested) else {
            actions.append(.protocolViolation("EXECUTE_SRB \(packet.transactionID) without completion requested was not run"))
            return
        }
        executeSRB(request, packet, into: &actions)
    }

    /// Every operation but EXECUTE_SRB: initialization, sub-channels, resets.
    private mutating func control(_ request: VStorPacket, _ packet: StorageIncomingPacket) -> [StorageAction] {
        let wantsAnswer = packet.flags.contains(.completionRequested)
        if packet.type != .inband {
            return reject(packet, status: .invalidParameter, "operation \(request.operation.rawValue) in a GPA-direct packet")
        }
        var answer = VStorPacket(operation: .completeIO)
        var after: [StorageAction] = []
        var violation: String?
        switch (request.operation, phase) {
        case (.beginInitialization, .awaitingBeginInitialization) where role == .primary:
            phase = .awaitingProtocolVersion
        case (.queryProtocolVersion, .awaitingProtocolVersion) where role == .primary,
             (.queryProtocolVersion, .initializing) where role == .primary:
            do {
                let proposal = try StorageVersionRequest(parsing: request)
                StorageVersionRequest(version: proposal.version).store(into: &answer)
                if configuration.supportedVersions.contains(proposal.version) {
                    phase = .initializing(proposal.version)
                } else {
                    answer.status = .revisionMismatch
                }
            } catch {
                answer.status = .invalidParameter
                violation = "QUERY_PROTOCOL_VERSION without a version"
            }
        case (.queryProperties, .initializing), (.queryProperties, .ready):
            let count = role == .primary ? configuration.maximumSubChannels : 0
            StorageChannelProperties(
                maximumSubChannels: count, flags: count > 0 ? .supportsMultiChannel : [],
                maximumTransferBytes: controller.maximumTransferBytes
            ).store(into: &answer)
        case (.endInitialization, .initializing(let version)):
            phase = .ready(version)
            // The guest scans the bus now; only later changes need announcing.
            announcedGeneration = controller.busGeneration
        case (.createSubChannels, .ready) where role == .primary:
            do {
                let count = try SubChannelRequest(parsing: request).count
                if count >= 1, count <= configuration.maximumSubChannels - subChannelsCreated {
                    subChannelsCreated += count
                    // Offer only after the answer: the guest opens offers from its callback.
                    after.append(.createSubChannels(count))
                } else {
                    answer.status = .invalidParameter
                    violation = "CREATE_SUB_CHANNELS for \(count) of \(configuration.maximumSubChannels - subChannelsCreated) left"
                }
            } catch {
                answer.status = .invalidParameter
                violation = "CREATE_SUB_CHANNELS without a count"
            }
        case (.resetBus, _), (.resetAdapter, _), (.resetLUN, _):
            // Requests in flight keep running and complete normally (`storvsc_host_reset_handler`
            // waits for them after this answer).
            break
        case (.beginInitialization, _), (.queryProtocolVersion, _), (.queryProperties, _), (.endInitialization, _),
             (.createSubChannels, _):
            answer.status = .invalidDeviceState
            violation = "operation \(request.operation.rawValue) in phase \(phase)"
        default:
            // Host → guest operations (COMPLETE_IO, ENUMERATE_BUS, REMOVE_DEVICE), FCHBA_DATA
            // (this is not a Fibre Channel adapter) and unknown ones.
            answer.status = .notSupported
            violation = "operation \(request.operation.rawValue) is not supported"
        }
        var actions: [StorageAction] = []
        if let violation { actions.append(.protocolViolation(violation)) }
        if wantsAnswer {
            actions.append(.send(.completion(answer, transactionID: packet.transactionID)))
        } else if answer.status != .success {
            actions.append(.protocolViolation("operation \(request.operation.rawValue) failed without an answer requested"))
        }
        return actions + after
    }

    /// ENUMERATE_BUS if units were attached, detached or resized since the guest last scanned
    /// (primary channel, once ready). Call on every worker pass; it is one atomic load when
    /// nothing changed.
    public mutating func pollBusChanges() -> [StorageAction] {
        guard role == .primary, case .ready = phase else { return [] }
        let current = controller.busGeneration
        guard current != announcedGeneration else { return [] }
        announcedGeneration = current
        return [.send(.notification(VStorPacket(operation: .enumerateBus)))]
    }

    /// Answers a packet that cannot be handled, if it asked for an answer.
    private func reject(_ packet: StorageIncomingPacket, status: StorageStatus, _ reason: String) -> [StorageAction] {
        var actions: [StorageAction] = [.protocolViolation(reason)]
        if packet.flags.contains(.completionRequested) {
            let operation = VStorPacket.operation(of: packet.bytes, from: packet.payloadRange.lowerBound,
                                                  to: packet.payloadRange.upperBound)
            var answer = VStorPacket(operation: .completeIO, status: status)
            if operation == .executeSRB {
                var block = SCSIRequestBlock(cdb: [], dataDirection: .noData, dataTransferLength: 0)
                block.srbStatus = .invalidRequest
                block.senseInfoLength = 0
                block.store(into: &answer, version: version ?? .win8)
            }
            actions.append(.send(.completion(answer, transactionID: packet.transactionID)))
        }
        return actions
    }
}
