import HyperV
import NetworkProtocol
import VirtualSwitch
import VMBusProtocol

/// The synthetic network adapter's host side (Hyper-V netvsp) as an I/O-free state machine:
/// ring packets and frames in, `NetworkVSPAction`s out.
///
/// One instance serves one adapter: the primary channel (index 0) and its sub-channels
/// (1...n) share the receive and send buffers, the RNDIS state and the counters. Every method
/// runs to completion without blocking; a driver that serves channels on several threads wraps
/// the instance in a `Mutex` (the work under it is bounded memory copies).
///
/// The protocol is Linux's (`drivers/net/hyperv/netvsc.c`, `rndis_filter.c`): NVSP INIT
/// negotiation on the primary channel, SEND_NDIS_CONFIG/SEND_NDIS_VER (never completed), the
/// receive buffer carved into sub-allocations partitioned per channel, the send buffer in
/// sections, SEND_RNDIS_PKT in its three shapes, RNDIS control, SUBCHANNEL, revocation and
/// re-initialization. Guest input is hostile: whatever does not add up is answered with a
/// failure status or dropped, and counted in `counters`.
public struct NetworkVSP<Memory: NetworkGuestMemory> {
    public let configuration: NetworkVSPConfiguration
    private let memory: Memory
    public private(set) var counters = NetworkVSPCounters()
    /// The negotiated NVSP version, once INIT succeeded.
    public private(set) var version: NVSPVersion?
    /// What SEND_NDIS_CONFIG said (MTU, capabilities), if it came.
    public private(set) var guestConfiguration: (mtu: UInt32, capabilities: NDISConfigCapabilities)?
    /// What SEND_NDIS_VER said.
    public private(set) var ndisVersion: (major: UInt32, minor: UInt32)?
    public private(set) var linkConnected: Bool
    /// Sub-channels granted by SUBCHANNEL, once asked.
    public private(set) var subchannelCount = 0

    private struct ReceiveBuffer {
        var gpadl: UInt32
        var pageSetID: UInt16
        var buffer: PagedGuestBuffer
        var pool: ReceiveBufferPool
    }
    private struct SendBuffer {
        var gpadl: UInt32
        var buffer: PagedGuestBuffer
        var sectionCount: Int
    }
    private var receiveBuffer: ReceiveBuffer?
    private var sendBuffer: SendBuffer?
    private var rndis: RNDISControl
    private var openChannels: Set<Int> = []
    /// Encoded control responses waiting for a free sub-allocation, per channel.
    private var pendingControl: [Int: ControlQueue] = [:]

    /// One channel's control responses waiting for a sub-allocation, oldest first, in a ring:
    /// responses leave in time linear in their number however few go out at a time.
    private struct ControlQueue {
        private var messages = FrameRing<[UInt8]>()
        /// Bytes waiting.
        private(set) var bytes = 0

        var first: [UInt8]? { messages.first }

        mutating func append(_ message: [UInt8]) {
            bytes += message.count
            messages.append(message)
        }

        mutating func removeFirst() {
            if let message = messages.removeFirst() { bytes -= message.count }
        }
    }
    /// Storage for the transmit stream of the packet being handled, kept between packets.
    private var transmitScratch: [UInt8] = []

    public init(configuration: NetworkVSPConfiguration, memory: Memory) {
        self.configuration = configuration
        self.memory = memory
        linkConnected = configuration.linkConnected
        rndis = RNDISControl(address: configuration.macAddress)
    }

    // MARK: State the driver and the switch read

    /// The RNDIS packet filter the guest set (empty until it sets one, and after HALT).
    public var packetFilter: PacketFilter { rndis.packetFilter }
    /// The MAC address in use (the permanent one unless the guest changed it).
    public var macAddress: MACAddress { rndis.currentAddress }
    /// The offload parameters the guest last set.
    public var offloadParameters: NDISOffloadParameters { rndis.offloadParameters }
    /// The RSS parameters the guest last set.
    public var rssParameters: RSSParameters? { rndis.rssParameters }
    /// Channels in use: 1 + granted sub-channels.
    public var channelCount: Int { 1 + subchannelCount }
    /// Whether frames can be delivered: RNDIS initialized and a receive buffer in place.
    public var isReadyForData: Bool { rndis.state == .initialized && receiveBuffer != nil }
    /// Whether the receive or send buffer is this GPADL (the VMBus server must not tear it down
    /// under the device; call `gpadlTornDown` first).
    public func isUsing(gpadl handle: UInt32) -> Bool {
        receiveBuffer?.gpadl == handle || sendBuffer?.gpadl == handle
    }
    /// Free receive sub-allocations of `channel`.
    public func freeReceiveSlots(on channel: Int) -> Int { receiveBuffer?.pool.available(on: channel) ?? 0 }
    /// Receive packets in flight on `channel`.
    public func receivePacketsInFlight(on channel: Int) -> Int { receiveBuffer?.pool.packetsInFlight(on: channel) ?? 0 }
    /// The receive buffer's carving, once established: sub-allocation size and count.
    public var receiveLayout: (subAllocationSize: Int, count: Int)? {
        receiveBuffer.map { ($0.pool.subAllocationSize, $0.pool.count) }
    }
    /// Receive sub-allocations free on `channel` (not in a packet the guest has yet to complete).
    public func receiveSubAllocationsFree(on channel: Int) -> Int { receiveBuffer?.pool.available(on: channel) ?? 0 }
    /// The send buffer's section count, once established.
    public var sendSectionCount: Int? { sendBuffer?.sectionCount }

    // MARK: Channel lifecycle

    /// Channel `channel` opened. Opening the primary channel starts the device afresh (after a
    /// close, Linux re-runs the whole NVSP and RNDIS initialization on the same relid).
    public mutating func channelOpened(_ channel: Int) {
        if channel == 0 { resetDevice() }
        openChannels.insert(channel)
    }

    /// Channel `channel` closed. Closing the primary channel stops the device: the buffers are
    /// no longer touched and everything is forgotten.
    public mutating func channelClosed(_ channel: Int) {
        openChannels.remove(channel)
        pendingControl[channel] = nil
        if channel == 0 {
            resetDevice()
        } else {
            receiveBuffer?.pool.abandon(channel: channel)
        }
    }

    /// The guest tore down GPADL `handle` (after revoking it, or without doing so): stop using it.
    public mutating func gpadlTornDown(_ handle: UInt32) {
        if receiveBuffer?.gpadl == handle { dropReceiveBuffer() }
        if sendBuffer?.gpadl == handle { sendBuffer = nil }
    }

    private mutating func resetDevice() {
        version = nil
        guestConfiguration = nil
        ndisVersion = nil
        dropReceiveBuffer()
        sendBuffer = nil
        subchannelCount = 0
        rndis.reset(address: configuration.macAddress)
    }

    private mutating func dropReceiveBuffer() {
        receiveBuffer = nil
        pendingControl = [:]
    }

    // MARK: Guest packets

    /// Handles one packet from `channel`'s guest→host ring.
    /// - Parameters:
    ///   - packet: the packet from its descriptor; bytes past `descriptor.totalLength` are ignored.
    ///   - gpadls: resolves the GPADL handles of SEND_RECV_BUF and SEND_SEND_BUF.
    public mutating func handle<Table: GPADLTable>(
        _ packet: [UInt8], descriptor: PacketDescriptor, on channel: Int, gpadls: Table
    ) -> [NetworkVSPAction] {
        var actions: [NetworkVSPAction] = []
        handle(packet, descriptor: descriptor, on: channel, gpadls: gpadls, into: &actions)
        return actions
    }

    /// Handles one packet like `handle(_:descriptor:on:gpadls:)`, appending its actions to
    /// `actions`: a driver that keeps the list between packets handles them without allocating it.
    public mutating func handle<Table: GPADLTable>(
        _ packet: [UInt8], descriptor: PacketDescriptor, on channel: Int, gpadls: Table,
        into actions: inout [NetworkVSPAction]
    ) {
        let end = min(descriptor.totalLength, packet.count)
        let start = descriptor.payloadOffset
        guard start <= end else {
            counters.badNVSPMessages += 1
            return
        }
        switch descriptor.type {
        case .completion:
            handleCompletion(packet, from: start, to: end, transactionID: descriptor.transactionID, on: channel,
                             actions: &actions)
        case .inband, .gpaDirect:
            let message: NVSPMessage
            do throws(NetworkProtocolError) {
                message = try NVSPMessage(parsing: packet, at: start, count: end - start)
            } catch {
                counters.badNVSPMessages += 1
                return
            }
            var ranges: [GPARange] = []
            if descriptor.type == .gpaDirect {
                do throws(PacketError) {
                    ranges = try GPADirectHeader(parsing: packet, from: PacketDescriptor.size, to: start).ranges
                } catch {
                    counters.badGuestRanges += 1
                    complete(descriptor, on: channel, status: .failure, actions: &actions)
                    return
                }
            }
            handle(message, ranges: ranges, descriptor: descriptor, on: channel, gpadls: gpadls, actions: &actions)
        default:
            counters.unexpectedPacketTypes += 1
        }
        flushControl(on: channel, actions: &actions)
    }

    private mutating func handleCompletion(_ packet: [UInt8], from start: Int, to end: Int, transactionID: UInt64,
                                           on channel: Int, actions: inout [NetworkVSPAction]) {
        guard case .sendRNDISPacketComplete(let status)? = try? NVSPMessage(
            parsing: packet, at: start, count: end - start, completion: true)
        else {
            counters.badNVSPMessages += 1
            return
        }
        guard receiveBuffer?.pool.complete(transactionID, on: channel) == true else {
            counters.unknownCompletions += 1
            return
        }
        if status != .success { counters.failedCompletions += 1 }
    }

    /// The answer a rescinded NIC whose state was lost gives a guest packet: a send (an RNDIS
    /// PACKET or control message, HALT included) that asks for its completion gets one, with
    /// NVSP failure status, since nothing was sent; anything else gets none. Linux's netvsc
    /// counts its sends in flight and waits for them all to complete before it closes a
    /// rescinded channel (`rndis_filter_halt_device`, `netvsc_device_idle`).
    public static func withdrawalAnswer(to packet: [UInt8], descriptor: PacketDescriptor) -> OutgoingPacket? {
        // The packet's own bytes only: the worker reads each packet into one reused buffer, and
        // what lies past `totalLength` is an earlier packet's.
        let end = min(descriptor.totalLength, packet.count)
        guard descriptor.type != .completion, descriptor.flags.contains(.completionRequested),
              descriptor.payloadOffset < end,
              let message = try? NVSPMessage(parsing: packet, at: descriptor.payloadOffset,
                                             count: end - descriptor.payloadOffset),
              case .sendRNDISPacket = message else { return nil }
        return OutgoingPacket(type: .completion, transactionID: descriptor.transactionID,
                              payload: NVSPMessage.sendRNDISPacketComplete(status: .failure).bytes())
    }

    /// Sends the NVSP completion `message` if the guest asked for one.
    private func reply(_ descriptor: PacketDescriptor, _ message: NVSPMessage, on channel: Int,
                       actions: inout [NetworkVSPAction]) {
        reply(descriptor, encoded: message.bytes(), on: channel, actions: &actions)
    }

    /// Sends an NVSP completion whose bytes `payload` gives, if the guest asked for one (only then
    /// are they built).
    private func reply(_ descriptor: PacketDescriptor, encoded payload: @autoclosure () -> [UInt8], on channel: Int,
                       actions: inout [NetworkVSPAction]) {
        guard descriptor.flags.contains(.completionRequested) else { return }
        actions.append(.send(channel: channel, OutgoingPacket(
            type: .completion, transactionID: descriptor.transactionID, payload: payload())))
    }

    private func complete(_ descriptor: PacketDescriptor, on channel: Int, status: NVSPStatus,
                          actions: inout [NetworkVSPAction]) {
        // Every data packet is answered: a success's bytes are encoded once and shared.
        reply(descriptor, encoded: status == .success
                  ? NetworkVSPEncodings.successfulSendCompletion
                  : NVSPMessage.sendRNDISPacketComplete(status: status).bytes(),
              on: channel, actions: &actions)
    }

    private mutating func handle<Table: GPADLTable>(
        _ message: NVSPMessage, ranges: [GPARange], descriptor: PacketDescriptor, on channel: Int, gpadls: Table,
        actions: inout [NetworkVSPAction]
    ) {
        // Everything but data and control messages belongs to the primary channel.
        if channel != 0 {
            guard case .sendRNDISPacket = message else {
                counters.badNVSPMessages += 1
                return
            }
        }
        switch message {
        case .initialize(let minimum, let maximum):
            initialize(minimum: minimum, maximum: maximum, descriptor: descriptor, actions: &actions)
        case .sendNDISConfig(let mtu, let capabilities):
            // Never completed (Linux sends it with VMBUS_RQST_ID_NO_RESPONSE).
            guard let version, version >= .v2 else {
                counters.badNVSPMessages += 1
                return
            }
            guestConfiguration = (mtu, capabilities)
        case .sendNDISVersion(let major, let minor):
            guard version != nil else {
                counters.badNVSPMessages += 1
                return
            }
            ndisVersion = (major, minor)
        case .sendReceiveBuffer(let gpadl, let id):
            let result = establishReceiveBuffer(gpadl: gpadl, id: id, gpadls: gpadls)
            reply(descriptor, result, on: channel, actions: &actions)
        case .sendSendBuffer(let gpadl, _):
            let result = establishSendBuffer(gpadl: gpadl, gpadls: gpadls)
            reply(descriptor, result, on: channel, actions: &actions)
        case .revokeReceiveBuffer:
            // Never completed; from now on the buffer is not touched.
            if receiveBuffer == nil { counters.badNVSPMessages += 1 }
            dropReceiveBuffer()
        case .revokeSendBuffer:
            if sendBuffer == nil { counters.badNVSPMessages += 1 }
            sendBuffer = nil
        case .sendRNDISPacket(let type, let sectionIndex, let sectionSize):
            transmit(type: type, sectionIndex: sectionIndex, sectionSize: sectionSize, ranges: ranges,
                     descriptor: descriptor, on: channel, actions: &actions)
        case .subchannelRequest(let operation, let count):
            allocateSubchannels(operation: operation, count: count, descriptor: descriptor, actions: &actions)
        case .initializeComplete, .sendReceiveBufferComplete, .sendSendBufferComplete, .sendRNDISPacketComplete,
             .subchannelComplete, .sendIndirectionTable, .other:
            // Host-to-guest messages, or unknown ones: nothing to do.
            counters.badNVSPMessages += 1
        }
    }

    // MARK: NVSP initialization

    private mutating func initialize(minimum: NVSPVersion, maximum: NVSPVersion, descriptor: PacketDescriptor,
                                     actions: inout [NetworkVSPAction]) {
        // A second INIT after the buffers are in place is out of order.
        let chosen = NVSPVersion.linuxOrder.first { $0 <= configuration.maximumVersion && $0 >= minimum && $0 <= maximum }
        let acceptable = receiveBuffer == nil && sendBuffer == nil
        if let chosen, acceptable {
            version = chosen
            reply(descriptor, .initializeComplete(negotiated: chosen, maximumMDLChainLength: 0, status: .success),
                  on: 0, actions: &actions)
        } else {
            if !acceptable { counters.badNVSPMessages += 1 }
            reply(descriptor, .initializeComplete(negotiated: maximum, maximumMDLChainLength: 0, status: .failure),
                  on: 0, actions: &actions)
        }
    }

    /// Largest receive buffer the guest may hand over (`NETVSC_RECEIVE_BUFFER_SIZE` 31 MiB, 15
    /// MiB up to NVSP 2).
    private var maximumReceiveBufferBytes: Int {
        (version ?? .v1) <= .v2 ? 15 << 20 : 31 << 20
    }

    private mutating func establishReceiveBuffer<Table: GPADLTable>(gpadl: UInt32, id: UInt16, gpadls: Table) -> NVSPMessage {
        let refused = NVSPMessage.sendReceiveBufferComplete(status: .failure, sections: [])
        guard version != nil, receiveBuffer == nil, let descriptor = gpadls.buffer(forGPADL: gpadl),
            let buffer = PagedGuestBuffer(descriptor)
        else {
            counters.refusedBuffers += 1
            return refused
        }
        let size = Int(max(configuration.receiveSubAllocationSize, NetvscConstants.minimumSectionSize))
        let usable = min(buffer.count, maximumReceiveBufferBytes)
        let count = min(usable / size, configuration.maximumSubAllocations)
        if let send = sendBuffer, send.buffer.overlaps(buffer) || send.gpadl == gpadl {
            counters.refusedBuffers += 1
            return refused
        }
        guard count >= 1 + configuration.maximumSubchannels else {
            counters.refusedBuffers += 1
            return refused
        }
        receiveBuffer = ReceiveBuffer(gpadl: gpadl, pageSetID: id, buffer: buffer,
                                      pool: ReceiveBufferPool(subAllocationSize: size, count: count))
        let section = ReceiveBufferSection(
            offset: 0, subAllocationSize: UInt32(size), subAllocationCount: UInt32(count), endOffset: UInt32(size * count))
        return .sendReceiveBufferComplete(status: .success, sections: [section])
    }

    private mutating func establishSendBuffer<Table: GPADLTable>(gpadl: UInt32, gpadls: Table) -> NVSPMessage {
        let refused = NVSPMessage.sendSendBufferComplete(status: .failure, sectionSize: 0)
        guard version != nil, sendBuffer == nil, let descriptor = gpadls.buffer(forGPADL: gpadl),
            let buffer = PagedGuestBuffer(descriptor)
        else {
            counters.refusedBuffers += 1
            return refused
        }
        if let receive = receiveBuffer, receive.buffer.overlaps(buffer) || receive.gpadl == gpadl {
            counters.refusedBuffers += 1
            return refused
        }
        let sectionSize = Int(configuration.sendSectionSize)
        let sections = min(buffer.count, 15 << 20) / sectionSize
        guard sections >= 1 else {
            counters.refusedBuffers += 1
            return refused
        }
        sendBuffer = SendBuffer(gpadl: gpadl, buffer: buffer, sectionCount: sections)
        return .sendSendBufferComplete(status: .success, sectionSize: configuration.sendSectionSize)
    }

    private mutating func allocateSubchannels(operation: UInt32, count: UInt32, descriptor: PacketDescriptor,
                                              actions: inout [NetworkVSPAction]) {
        guard let version, version >= .v5, operation == NVSPMessage.subchannelAllocate, subchannelCount == 0,
            let receive = receiveBuffer
        else {
            counters.badNVSPMessages += 1
            reply(descriptor, .subchannelComplete(status: .failure, count: 0), on: 0, actions: &actions)
            return
        }
        // Grant exactly what can be offered: the guest waits for that many channels to open.
        let granted = min(Int(count), configuration.maximumSubchannels, receive.pool.count - 1)
        subchannelCount = max(granted, 0)
        receiveBuffer?.pool.partition(channels: 1 + subchannelCount)
        reply(descriptor, .subchannelComplete(status: .success, count: UInt32(subchannelCount)), on: 0, actions: &actions)
        if subchannelCount > 0 {
            actions.append(.offerSubchannels(count: subchannelCount))
            let table = (0..<NetvscConstants.sendIndirectionTableSize).map { UInt32($0 % channelCount) }
            actions.append(.send(channel: 0, OutgoingPacket(
                type: .inband, transactionID: 0, payload: NVSPMessage.sendIndirectionTable(entries: table).bytes())))
        }
    }

    // MARK: Transmit (guest → host)

    /// Reads the logical RNDIS stream of one SEND_RNDIS_PKT: the send-buffer section (if any),
    /// then every GPA range in order (Linux `netvsc_send_pkt`; the "partial copy" shape ends the
    /// section with the header whose frame continues in the ranges).
    private mutating func transmitStream(sectionIndex: UInt32, sectionSize: UInt32, ranges: [GPARange]) -> [UInt8]? {
        var total = 0
        if sectionIndex != NetvscConstants.noSection {
            guard let send = sendBuffer, Int(sectionIndex) < send.sectionCount,
                sectionSize <= configuration.sendSectionSize
            else {
                counters.badSendSections += 1
                return nil
            }
            total += Int(sectionSize)
        }
        for range in ranges {
            guard range.byteOffset < UInt32(VMBusConstants.pageSize) else {
                counters.badGuestRanges += 1
                return nil
            }
            total += Int(range.byteCount)
        }
        guard total <= configuration.maximumTransmitBytes else {
            counters.badGuestRanges += 1
            return nil
        }
        // The last packet's stream is reused (a uniquely held array keeps its storage), cut or
        // grown to this packet's length; every byte of it is read from the guest below.
        var stream = transmitScratch
        transmitScratch = []
        if stream.count > total {
            stream.removeLast(stream.count - total)
        } else if stream.count < total {
            stream.append(contentsOf: repeatElement(0, count: total - stream.count))
        }
        defer { transmitScratch = stream }
        var position = 0
        do throws(GuestAccessError) {
            if sectionIndex != NetvscConstants.noSection, let send = sendBuffer {
                try send.buffer.read(memory, at: Int(sectionIndex) * Int(configuration.sendSectionSize),
                                     count: Int(sectionSize), into: &stream, bufferOffset: 0)
                position = Int(sectionSize)
            }
            for range in ranges {
                guard let buffer = PagedGuestBuffer(pages: range.pfns, byteOffset: range.byteOffset,
                                                    byteCount: range.byteCount)
                else { throw GuestAccessError(address: 0, length: Int(range.byteCount)) }
                try buffer.read(memory, at: 0, count: buffer.count, into: &stream, bufferOffset: position)
                position += buffer.count
            }
        } catch {
            counters.badGuestRanges += 1
            return nil
        }
        return stream
    }

    private mutating func transmit(type: RNDISChannelType, sectionIndex: UInt32, sectionSize: UInt32, ranges: [GPARange],
                                   descriptor: PacketDescriptor, on channel: Int, actions: inout [NetworkVSPAction]) {
        guard let stream = transmitStream(sectionIndex: sectionIndex, sectionSize: sectionSize, ranges: ranges),
            !stream.isEmpty
        else {
            if sectionIndex == NetvscConstants.noSection && ranges.isEmpty { counters.badNVSPMessages += 1 }
            complete(descriptor, on: channel, status: .failure, actions: &actions)
            return
        }
        var offset = 0
        var status = NVSPStatus.success
        while offset < stream.count {
            let length: Int
            do throws(NetworkProtocolError) {
                let header = try RNDISMessage.header(in: stream, at: offset, limit: stream.count)
                length = header.length
                if header.type == .packet {
                    let layout = try RNDISPacketLayout(parsing: stream, at: offset, length: length)
                    transmitFrame(stream, layout, on: channel, actions: &actions)
                } else {
                    let (message, _) = try RNDISMessage.parse(stream, at: offset, limit: offset + length)
                    control(message, on: channel, actions: &actions)
                }
            } catch {
                counters.badRNDISMessages += 1
                status = .invalidRNDISPacket
                break
            }
            offset += length
        }
        _ = type  // Linux marks control and data; the message type decides here.
        // The guest frees the section and pages when this arrives: everything was read above.
        complete(descriptor, on: channel, status: status == .success ? .success : .failure, actions: &actions)
    }

    private mutating func transmitFrame(_ stream: [UInt8], _ layout: RNDISPacketLayout, on channel: Int,
                                        actions: inout [NetworkVSPAction]) {
        let offload = FrameOffload(transmitted: layout)
        let limit = offload.segmentation == nil ? configuration.maximumFrameSize : NetworkFrame.largestSegmentedFrameSize
        // A disconnected NIC sends nothing, whether or not its guest heeds MEDIA_DISCONNECT: the
        // cable is out.
        guard rndis.state == .initialized, linkConnected, layout.dataCount >= NetworkFrame.ethernetHeaderSize,
              layout.dataCount <= limit
        else {
            counters.transmitDrops += 1
            return
        }
        let frame = Array(stream[layout.dataStart..<(layout.dataStart + layout.dataCount)])
        counters.transmittedFrames += 1
        counters.transmittedBytes += UInt64(frame.count)
        if offload.segmentation != nil { counters.largeSendFrames += 1 }
        if offload.checksum != nil { counters.checksumOffloadFrames += 1 }
        actions.append(.transmit(channel: channel, NetworkFrame(bytes: frame, offload: offload)))
    }

    // MARK: RNDIS control

    private mutating func control(_ message: RNDISMessage, on channel: Int, actions: inout [NetworkVSPAction]) {
        let context = RNDISControl.Context(
            configuration: configuration, version: version ?? .v1, linkConnected: linkConnected, counters: counters,
            channelCount: channelCount)
        let (response, events) = rndis.handle(message, context: context, counters: &counters)
        actions += events
        if let response { queueControl(response.bytes, on: channel) }
    }

    private mutating func queueControl(_ bytes: [UInt8], on channel: Int) {
        let queued = pendingControl[channel]?.bytes ?? 0
        guard receiveBuffer != nil, queued + bytes.count <= configuration.controlQueueLimit else {
            counters.controlResponsesDropped += 1
            return
        }
        pendingControl[channel, default: ControlQueue()].append(bytes)
    }

    /// Sends queued control responses while sub-allocations are free, one message per packet.
    ///
    /// The queue and the receive buffer are moved out of `self` while it works (and put back
    /// when it returns), so changing them never copies them: a copy per response would make a
    /// guest's stream of control messages cost time quadratic in the queue's length.
    private mutating func flushControl(on channel: Int, actions: inout [NetworkVSPAction]) {
        guard var queue = pendingControl.removeValue(forKey: channel) else { return }
        guard var receive = receiveBuffer.take() else {
            pendingControl[channel] = queue
            return
        }
        var dropAll = false
        defer {
            receiveBuffer = receive
            if !dropAll, queue.first != nil { pendingControl[channel] = queue }
        }
        let size = receive.pool.subAllocationSize
        while let message = queue.first {
            guard message.count <= size else {
                // Cannot be expressed in one range; drop it rather than block the queue.
                counters.controlResponsesDropped += 1
                queue.removeFirst()
                continue
            }
            guard let section = receive.pool.takeOne(on: channel) else { return }
            let offset = section * size
            do throws(GuestAccessError) {
                try receive.buffer.write(memory, message, from: 0, count: message.count, at: offset)
            } catch {
                // The buffer is unusable: the whole queue goes.
                receive.pool.giveBack([section])
                counters.controlResponsesDropped += 1
                dropAll = true
                return
            }
            let id = receive.pool.send([section], on: channel)
            queue.removeFirst()
            let header = NetvscReceivePacket.header(
                ranges: [TransferPageRange(byteCount: UInt32(message.count), byteOffset: UInt32(offset))],
                pageSetID: receive.pageSetID)
            actions.append(.send(channel: channel, OutgoingPacket(
                type: .transferPages, flags: .completionRequested, transactionID: id, header: header.bytes,
                payload: NetvscReceivePacket.payload(channel: .control))))
        }
    }

    // MARK: Receive (host → guest)

    /// Writes frames for the guest into free sub-allocations of `channel` and sends them as one
    /// transfer-page packet (one range per frame).
    /// - Returns: how many leading frames were consumed (delivered or dropped and counted); the
    ///   rest found no free sub-allocation and should be offered again after the guest completes
    ///   packets (`receiveNoBuffer` counts those refusals).
    public mutating func deliver(_ frames: [NetworkFrame], on channel: Int) -> (consumed: Int, actions: [NetworkVSPAction]) {
        var actions: [NetworkVSPAction] = []
        flushControl(on: channel, actions: &actions)
        // Moved out while frames go in and put back on return, so taking sub-allocations never
        // copies the pool's tables.
        guard rndis.state == .initialized, openChannels.contains(channel), var receive = receiveBuffer.take() else {
            counters.receiveDrops += UInt64(frames.count)
            return (frames.count, actions)
        }
        defer { receiveBuffer = receive }
        guard channel < receive.pool.channelCount else {
            counters.receiveDrops += UInt64(frames.count)
            return (frames.count, actions)
        }
        var ranges: [TransferPageRange] = []
        var used: [Int] = []
        ranges.reserveCapacity(min(frames.count, configuration.maximumRangesPerReceivePacket))
        used.reserveCapacity(ranges.capacity)
        var consumed = 0
        let size = receive.pool.subAllocationSize
        // One header array for the batch, rebuilt in place for each frame; for a frame without
        // per-packet information after another, only its two lengths change.
        var header: [UInt8] = []
        header.reserveCapacity(RNDISPacketLayout.maximumReceiveHeaderSize)
        var headerIsPlain = false
        // Each frame read in place through a span, which lends it: iterating, or the array's
        // subscript, would copy every frame (a reference count taken and dropped on frames the
        // sender's core has just released).
        let span = frames.span
        for index in span.indices {
            guard ranges.count < configuration.maximumRangesPerReceivePacket else { break }
            let infos = span[index].offload.receivePerPacketInfo
            if infos.isEmpty && headerIsPlain {
                header.storeLittleEndian(UInt32(truncatingIfNeeded: RNDISPacketLayout.headerSize + span[index].bytes.count), at: 4)
                header.storeLittleEndian(UInt32(truncatingIfNeeded: span[index].bytes.count), at: 12)
            } else {
                RNDISPacketLayout.header(dataCount: span[index].bytes.count, perPacketInfo: infos, into: &header)
                headerIsPlain = infos.isEmpty
            }
            let length = header.count + span[index].bytes.count
            guard length <= size, span[index].bytes.count >= NetworkFrame.ethernetHeaderSize, linkConnected else {
                counters.receiveDrops += 1
                consumed += 1
                continue
            }
            guard let section = receive.pool.takeOne(on: channel) else {
                counters.receiveNoBuffer += 1
                break
            }
            let offset = section * size
            do throws(GuestAccessError) {
                try receive.buffer.write(memory, header, from: 0, count: header.count, at: offset)
                try receive.buffer.write(memory, span[index].bytes, from: 0, count: span[index].bytes.count, at: offset + header.count)
            } catch {
                receive.pool.giveBack([section])
                counters.receiveDrops += 1
                consumed += 1
                continue
            }
            used.append(section)
            ranges.append(TransferPageRange(byteCount: UInt32(length), byteOffset: UInt32(offset)))
            counters.receivedFrames += 1
            counters.receivedBytes += UInt64(span[index].bytes.count)
            consumed += 1
        }
        if !ranges.isEmpty {
            let id = receive.pool.send(used, on: channel)
            actions.append(.send(channel: channel, OutgoingPacket(
                type: .transferPages, flags: .completionRequested, transactionID: id,
                header: NetvscReceivePacket.header(ranges: ranges, pageSetID: receive.pageSetID).bytes,
                payload: NetvscReceivePacket.payload(channel: .data))))
        }
        return (consumed, actions)
    }

    /// Sends queued control responses that were waiting for sub-allocations; call after the
    /// guest completed receive packets if nothing else is delivered.
    public mutating func flushPending(on channel: Int) -> [NetworkVSPAction] {
        var actions: [NetworkVSPAction] = []
        flushControl(on: channel, actions: &actions)
        return actions
    }

    /// The link went up or down: the guest is told with an INDICATE_STATUS on the primary
    /// channel (MEDIA_CONNECT / MEDIA_DISCONNECT) once RNDIS is initialized.
    public mutating func setLinkConnected(_ connected: Bool) -> [NetworkVSPAction] {
        guard connected != linkConnected else { return [] }
        linkConnected = connected
        var actions: [NetworkVSPAction] = []
        guard rndis.state == .initialized else { return actions }
        let indication = RNDISMessage.indicateStatus(status: connected ? .mediaConnect : .mediaDisconnect, buffer: [])
        queueControl(indication.bytes, on: 0)
        flushControl(on: 0, actions: &actions)
        return actions
    }
}

/// Encodings the VSP sends often, built once (a generic type has no stored statics).
private enum NetworkVSPEncodings {
    static let successfulSendCompletion = NVSPMessage.sendRNDISPacketComplete(status: .success).bytes()
}
