import HyperV
import NetworkProtocol
import NetworkVSP
import Testing
import VMBusProtocol

/// GPADLs a test guest has "created".
final class TestGPADLs: GPADLTable {
    var table: [UInt32: GuestBufferDescriptor] = [:]
    func buffer(forGPADL handle: UInt32) -> GuestBufferDescriptor? { table[handle] }
}

/// A ring packet as a guest writes it: descriptor, extra header (a multiple of 8 bytes), payload,
/// padding to 8 bytes.
func ringPacket(_ type: PacketType, flags: PacketFlags = .completionRequested, transactionID: UInt64,
                header: [UInt8] = [], payload: [UInt8]) -> (PacketDescriptor, [UInt8]) {
    let offset = PacketDescriptor.size + header.count
    let total = (offset + payload.count + 7) / 8 * 8
    let descriptor = PacketDescriptor(type: type, dataOffset8: UInt16(offset / 8), length8: UInt16(total / 8),
                                      flags: flags, transactionID: transactionID)
    var bytes = descriptor.bytes + header + payload
    bytes += [UInt8](repeating: 0, count: total - bytes.count)
    return (descriptor, bytes)
}

/// Drives a `NetworkVSP` the way Linux 6.1's hv_netvsc does, over flat guest memory.
///
/// Guest RAM layout (4 KiB pages): receive buffer pages listed in reverse order (so the VSP must
/// walk the page list), send buffer pages, then a scratch area for RNDIS control messages and
/// GPA-direct frames.
struct NetvscTestGuest {
    static let pageSize = 4096
    let memory: FlatGuestMemory
    var vsp: NetworkVSP<FlatGuestMemory>
    let gpadls = TestGPADLs()
    var nextTransactionID: UInt64 = 1
    var nextRequestID: UInt32 = 1
    let receivePages: [UInt64]
    let sendPages: [UInt64]
    let scratchPage: UInt64
    static let receiveGPADL: UInt32 = 0xE1E1
    static let sendGPADL: UInt32 = 0xE2E2
    /// Actions of every call, in order, for tests that look at everything.
    var log: [NetworkVSPAction] = []

    init(configuration: NetworkVSPConfiguration, receivePageCount: Int = 64, sendPageCount: Int = 255) {
        let scratchPages = 64
        memory = FlatGuestMemory(size: (receivePageCount + sendPageCount + scratchPages + 1) * Self.pageSize)
        vsp = NetworkVSP(configuration: configuration, memory: memory)
        receivePages = (1...receivePageCount).reversed().map { UInt64($0) }
        sendPages = (0..<sendPageCount).map { UInt64(receivePageCount + 1 + $0) }
        scratchPage = UInt64(receivePageCount + sendPageCount + 1)
        gpadls.table[Self.receiveGPADL] = GuestBufferDescriptor(
            byteOffset: 0, byteCount: UInt32(receivePageCount * Self.pageSize), pageNumbers: receivePages)
        gpadls.table[Self.sendGPADL] = GuestBufferDescriptor(
            byteOffset: 0, byteCount: UInt32(sendPageCount * Self.pageSize), pageNumbers: sendPages)
        vsp.channelOpened(0)
    }

    mutating func transactionID() -> UInt64 {
        defer { nextTransactionID += 1 }
        return nextTransactionID
    }

    /// Delivers a raw ring packet, through the form that appends to a list the driver keeps (as
    /// `NetworkAdapter` does), and checks that it appends exactly what the array form returns.
    /// The twin that runs the array form shares the guest's memory: the VSP is deterministic, so
    /// whatever the twin writes there (a control response) the VSP writes again, byte for byte.
    mutating func raw(_ packet: (PacketDescriptor, [UInt8]), channel: Int = 0) -> [NetworkVSPAction] {
        var twin = vsp
        let returned = twin.handle(packet.1, descriptor: packet.0, on: channel, gpadls: gpadls)
        var kept = log
        vsp.handle(packet.1, descriptor: packet.0, on: channel, gpadls: gpadls, into: &kept)
        let actions = Array(kept[log.count...])
        #expect(actions == returned, "handle(into:) appends what handle returns")
        log = kept
        return actions
    }

    /// An INBAND NVSP message; `completion: false` is how Linux sends the no-response messages
    /// (with trans_id U64_MAX − 2).
    mutating func inband(_ message: NVSPMessage, channel: Int = 0, completion: Bool = true) -> [NetworkVSPAction] {
        let id = completion ? transactionID() : NetvscConstants.noResponseTransactionID
        return raw(ringPacket(.inband, flags: completion ? .completionRequested : [], transactionID: id,
                              payload: message.bytes()), channel: channel)
    }

    /// A GPA-direct SEND_RNDIS_PKT whose ranges hold `stream` (written to the scratch area,
    /// split into pieces of at most `pieceSize` bytes, each its own range).
    mutating func gpaDirect(stream: [UInt8], channelType: RNDISChannelType, section: UInt32 = NetvscConstants.noSection,
                            sectionSize: UInt32 = 0, pieceSize: Int = 4096, channel: Int = 0,
                            transactionID: UInt64? = nil) -> [NetworkVSPAction] {
        var ranges: [GPARange] = []
        var address = scratchPage * UInt64(Self.pageSize) + 100
        var offset = 0
        repeat {
            let count = min(pieceSize, stream.count - offset)
            memory.store(Array(stream[offset..<(offset + count)]), at: address)
            let first = address / UInt64(Self.pageSize)
            let within = UInt32(address % UInt64(Self.pageSize))
            let pages = VMBusConstants.pageCount(byteOffset: within, byteCount: UInt32(count))
            ranges.append(GPARange(byteCount: UInt32(count), byteOffset: within,
                                   pfns: (0..<pages).map { first + UInt64($0) }))
            address += UInt64(count) + 24
            offset += count
        } while offset < stream.count
        let message = NVSPMessage.sendRNDISPacket(channel: channelType, sectionIndex: section, sectionSize: sectionSize)
        return raw(ringPacket(.gpaDirect, transactionID: transactionID ?? self.transactionID(),
                              header: GPADirectHeader(ranges: ranges).bytes, payload: message.bytes()), channel: channel)
    }

    /// Writes `bytes` into send-buffer section `index`.
    func fillSection(_ index: Int, with bytes: [UInt8], sectionSize: Int = 6144) {
        // The send buffer's pages are contiguous in this layout.
        let address = sendPages[0] * UInt64(Self.pageSize) + UInt64(index * sectionSize)
        memory.store(bytes, at: address)
    }

    /// An INBAND SEND_RNDIS_PKT naming a send-buffer section (shape A).
    mutating func inbandSection(_ index: UInt32, size: UInt32, channelType: RNDISChannelType = .data,
                                channel: Int = 0) -> [NetworkVSPAction] {
        inband(.sendRNDISPacket(channel: channelType, sectionIndex: index, sectionSize: size), channel: channel)
    }

    /// The guest's 8-byte receive completion {108, status}.
    mutating func completeReceive(_ transactionID: UInt64, channel: Int = 0, status: NVSPStatus = .success)
        -> [NetworkVSPAction]
    {
        raw(ringPacket(.completion, flags: [], transactionID: transactionID,
                       payload: NVSPMessage.sendRNDISPacketComplete(status: status).bytes(minimumSize: 8)),
            channel: channel)
    }

    /// A control request as Linux sends it: GPA-direct, one range, channel type 1.
    mutating func control(_ message: RNDISMessage) -> [NetworkVSPAction] {
        gpaDirect(stream: message.bytes, channelType: .control)
    }

    mutating func requestID() -> UInt32 {
        defer { nextRequestID += 1 }
        return nextRequestID
    }
}

/// The NVSP completions in `actions`: (channel, transaction ID, message).
func completions(_ actions: [NetworkVSPAction]) -> [(channel: Int, id: UInt64, message: NVSPMessage)] {
    actions.compactMap { action in
        guard case .send(let channel, let packet) = action, packet.type == .completion,
            let message = try? NVSPMessage(parsing: packet.payload, completion: true)
        else { return nil }
        return (channel, packet.transactionID, message)
    }
}

/// A receive packet the VSP sent: its ranges' RNDIS messages read from guest memory.
struct ReceivedPacket {
    var channel: Int
    var transactionID: UInt64
    var header: TransferPageHeader
    var nvsp: NVSPMessage
    var messages: [[UInt8]]
}

/// The transfer-page packets in `actions`, with the messages read out of the receive buffer
/// through the guest's view (the page list in `guest.receivePages` order).
func receivedPackets(_ actions: [NetworkVSPAction], guest: NetvscTestGuest) -> [ReceivedPacket] {
    actions.compactMap { action in
        guard case .send(let channel, let packet) = action, packet.type == .transferPages,
            let header = try? TransferPageHeader(parsing: packet.header, from: 0, to: packet.header.count),
            let nvsp = try? NVSPMessage(parsing: packet.payload)
        else { return nil }
        let messages = header.ranges.map { range in
            (0..<Int(range.byteCount)).map { index -> UInt8 in
                let position = Int(range.byteOffset) + index
                let page = guest.receivePages[position / NetvscTestGuest.pageSize]
                return guest.memory.load(at: page * UInt64(NetvscTestGuest.pageSize)
                                         + UInt64(position % NetvscTestGuest.pageSize), count: 1)[0]
            }
        }
        return ReceivedPacket(channel: channel, transactionID: packet.transactionID, header: header, nvsp: nvsp,
                              messages: messages)
    }
}

/// The control responses in `actions`, parsed; completes their receive packets so the
/// sub-allocations recycle.
func controlResponses(_ actions: [NetworkVSPAction], guest: inout NetvscTestGuest) -> [RNDISMessage] {
    var responses: [RNDISMessage] = []
    for packet in receivedPackets(actions, guest: guest) {
        for bytes in packet.messages {
            if let (message, _) = try? RNDISMessage.parse(bytes) { responses.append(message) }
        }
        _ = guest.completeReceive(packet.transactionID, channel: packet.channel)
    }
    return responses
}

/// The frames the VSP handed to the switch.
func transmittedFrames(_ actions: [NetworkVSPAction]) -> [NetworkFrame] {
    actions.compactMap { action in
        guard case .transmit(_, let frame) = action else { return nil }
        return frame
    }
}

/// A minimal Ethernet frame of `count` bytes from `source` to `destination`.
func ethernetFrame(from source: MACAddress, to destination: MACAddress, count: Int = 60, fill: UInt8 = 0xA5,
                   etherType: UInt16 = 0x88B5) -> [UInt8] {
    var frame = destination.bytes + source.bytes + [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
    frame += [UInt8](repeating: fill, count: max(count - frame.count, 0))
    return frame
}
