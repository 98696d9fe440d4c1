import HyperV
import NetworkProtocol

/// The RNDIS miniport side of the adapter: INITIALIZE, QUERY, SET, RESET, KEEPALIVE and HALT
/// with honest answers, for the requests Linux `rndis_filter_device_add` and `netvsc_open` send.
/// Pure: a request in, a response and events out.
struct RNDISControl: Sendable {
    enum State: Sendable { case uninitialized, initialized, halted }

    private(set) var state = State.uninitialized
    private(set) var packetFilter: PacketFilter = []
    private(set) var currentAddress: MACAddress
    private(set) var offloadParameters = NDISOffloadParameters()
    private(set) var rssParameters: RSSParameters?
    private(set) var multicastList: [MACAddress] = []

    /// Most multicast addresses kept (OID_802_3_MAXIMUM_LIST_SIZE).
    static let maximumMulticastAddresses = 32

    /// The OIDs QUERY answers (OID_GEN_SUPPORTED_LIST).
    static let supportedQueries: [RNDISObjectID] = [
        .supportedList, .hardwareStatus, .mediaSupported, .mediaInUse, .maximumFrameSize, .linkSpeed,
        .transmitBlockSize, .receiveBlockSize, .currentPacketFilter, .maximumTotalSize, .mediaConnectStatus,
        .maximumSendPackets, .physicalMedium, .transmitOK, .receiveOK, .transmitError, .receiveError, .receiveNoBuffer,
        .friendlyName, .permanentAddress, .currentAddress, .multicastList, .maximumMulticastListSize,
        .tcpOffloadHardwareCapabilities, .receiveScaleCapabilities,
    ]

    init(address: MACAddress) { currentAddress = address }

    /// The channel is (re)opened or RNDIS is reset by a new INIT: forget the guest's settings.
    mutating func reset(address: MACAddress) {
        self = RNDISControl(address: address)
    }

    struct Context {
        var configuration: NetworkVSPConfiguration
        var version: NVSPVersion
        var linkConnected: Bool
        var counters: NetworkVSPCounters
        var channelCount: Int
    }

    /// Handles one control message.
    /// - Returns: the response (nil for HALT and for completions a guest should not send) and
    ///   the events the driver acts on.
    mutating func handle(_ message: RNDISMessage, context: Context, counters: inout NetworkVSPCounters)
        -> (response: RNDISMessage?, events: [NetworkVSPAction])
    {
        switch message {
        case .initialize(let requestID, _, _, _):
            let address = currentAddress
            reset(address: address)
            state = .initialized
            let complete = RNDISInitializeComplete(
                requestID: requestID, status: .success,
                maximumPacketsPerMessage: context.configuration.maximumPacketsPerMessage,
                maximumTransferSize: UInt32(clamping: context.configuration.maximumTransmitBytes),
                packetAlignmentFactor: context.configuration.packetAlignmentFactor)
            // The reset emptied the filter and the multicast list: so must the port.
            return (.initializeComplete(complete), [.packetFilterChanged([]), .multicastListChanged([])])
        case .halt:
            state = .halted
            packetFilter = []
            return (nil, [.packetFilterChanged([])])
        case .keepalive(let requestID):
            return (.keepaliveComplete(requestID: requestID, status: state == .initialized ? .success : .failure), [])
        case .reset:
            packetFilter = []
            return (.resetComplete(status: .success, addressingReset: 0), [.packetFilterChanged([])])
        case .query(let request):
            guard state == .initialized else {
                return (.queryComplete(requestID: request.requestID, status: .failure, information: []), [])
            }
            let (status, information) = query(request, context: context)
            if status == .notSupported { counters.unsupportedOIDs += 1 }
            return (.queryComplete(requestID: request.requestID, status: status, information: information), [])
        case .set(let request):
            guard state == .initialized else {
                return (.setComplete(requestID: request.requestID, status: .failure), [])
            }
            let (status, events) = set(request, context: context)
            if status == .notSupported { counters.unsupportedOIDs += 1 }
            return (.setComplete(requestID: request.requestID, status: status), events)
        case .packet, .initializeComplete, .queryComplete, .setComplete, .resetComplete, .indicateStatus,
             .keepaliveComplete, .other:
            counters.badRNDISMessages += 1
            return (nil, [])
        }
    }

    private func u32(_ value: UInt32) -> [UInt8] {
        var bytes: [UInt8] = .zeros(4)
        bytes.storeLittleEndian(value, at: 0)
        return bytes
    }

    /// A statistics counter: u64 if the guest's buffer template has room, else u32.
    private func statistic(_ value: UInt64, _ request: RNDISRequest) -> [UInt8] {
        if request.information.count >= 8 {
            var bytes: [UInt8] = .zeros(8)
            bytes.storeLittleEndian(value, at: 0)
            return bytes
        }
        return u32(UInt32(truncatingIfNeeded: value))
    }

    func query(_ request: RNDISRequest, context: Context) -> (RNDISStatus, [UInt8]) {
        let configuration = context.configuration
        switch request.oid {
        case .supportedList:
            var bytes: [UInt8] = []
            for oid in Self.supportedQueries { bytes.appendLittleEndian(oid.rawValue) }
            return (.success, bytes)
        case .hardwareStatus, .mediaSupported, .mediaInUse, .physicalMedium:
            return (.success, u32(0))  // ready; 802.3; unspecified medium
        case .maximumFrameSize:
            return (.success, u32(configuration.mtu))
        case .maximumTotalSize, .transmitBlockSize, .receiveBlockSize:
            return (.success, u32(configuration.mtu + UInt32(NetworkFrame.ethernetHeaderSize)))
        case .linkSpeed:
            return (.success, u32(configuration.linkSpeed))
        case .mediaConnectStatus:
            return (.success, u32((context.linkConnected ? MediaConnectState.connected : .disconnected).rawValue))
        case .currentPacketFilter:
            return (.success, u32(packetFilter.rawValue))
        case .maximumSendPackets:
            return (.success, u32(configuration.maximumPacketsPerMessage))
        case .permanentAddress:
            return (.success, configuration.macAddress.bytes)
        case .currentAddress:
            return (.success, currentAddress.bytes)
        case .multicastList:
            return (.success, multicastList.flatMap { $0.bytes })
        case .maximumMulticastListSize:
            return (.success, u32(UInt32(Self.maximumMulticastAddresses)))
        case .friendlyName:
            var bytes: [UInt8] = []
            for unit in configuration.friendlyName.utf8.prefix(255) { bytes.appendLittleEndian(UInt16(unit & 0x7F)) }
            bytes.appendLittleEndian(UInt16(0))
            return (.success, bytes)
        case .tcpOffloadHardwareCapabilities:
            return (.success, configuration.offload.bytes)
        case .receiveScaleCapabilities:
            guard context.version >= .v5, configuration.maximumSubchannels > 0 else { return (.notSupported, []) }
            let caps = RSSCapabilities(
                capabilityFlags: RSSCapabilities.hashTCPIPv4 | RSSCapabilities.hashTCPIPv6,
                interruptMessageCount: UInt32(configuration.maximumSubchannels + 1),
                receiveQueueCount: UInt32(configuration.maximumSubchannels + 1),
                indirectionTableEntryCount: UInt16(RSSParameters.maximumIndirectionEntries))
            return (.success, caps.bytes)
        case .transmitOK:
            return (.success, statistic(context.counters.transmittedFrames, request))
        case .receiveOK:
            return (.success, statistic(context.counters.receivedFrames, request))
        case .transmitError:
            return (.success, statistic(context.counters.transmitDrops, request))
        case .receiveError:
            return (.success, statistic(context.counters.receiveDrops, request))
        case .receiveNoBuffer:
            return (.success, statistic(context.counters.receiveNoBuffer, request))
        default:
            return (.notSupported, [])
        }
    }

    mutating func set(_ request: RNDISRequest, context: Context) -> (RNDISStatus, [NetworkVSPAction]) {
        let information = request.information
        switch request.oid {
        case .currentPacketFilter:
            guard let value = information.littleEndian(UInt32.self, at: 0) else { return (.invalidLength, []) }
            packetFilter = PacketFilter(rawValue: value)
            return (.success, [.packetFilterChanged(packetFilter)])
        case .tcpOffloadParameters:
            do throws(NetworkProtocolError) {
                offloadParameters = try NDISOffloadParameters(parsing: information)
                return (.success, [])
            } catch {
                return (.invalidData, [])
            }
        case .rndisConfigParameter:
            let parameter: RNDISConfigParameter
            do throws(NetworkProtocolError) {
                parameter = try RNDISConfigParameter(parsing: information)
            } catch {
                return (.invalidData, [])
            }
            guard parameter.name == RNDISConfigParameter.networkAddressName else { return (.notSupported, []) }
            guard context.configuration.allowsMACAddressChange else { return (.failure, []) }
            guard let address = parameter.macAddress, !address.isGroup, address != .zero else { return (.invalidData, []) }
            currentAddress = address
            return (.success, [.macAddressChanged(address)])
        case .receiveScaleParameters:
            guard context.version >= .v5, context.configuration.maximumSubchannels > 0 else { return (.notSupported, []) }
            do throws(NetworkProtocolError) {
                let parameters = try RSSParameters(parsing: information)
                // Every table entry must name an open queue.
                guard parameters.indirectionTable.allSatisfy({ Int($0) < context.channelCount }) else {
                    return (.invalidData, [])
                }
                rssParameters = parameters
                return (.success, [])
            } catch {
                return (.invalidData, [])
            }
        case .multicastList:
            guard information.count % 6 == 0 else { return (.invalidLength, []) }
            guard information.count / 6 <= Self.maximumMulticastAddresses else { return (.resources, []) }
            multicastList = stride(from: 0, to: information.count, by: 6).compactMap { MACAddress(bytes: information, at: $0) }
            return (.success, [.multicastListChanged(multicastList)])
        default:
            return (.notSupported, [])
        }
    }
}
