import HyperV
import NetworkProtocol
import VMBusClient
import VMBusProtocol

/// Why the network VSC could not bring its adapter up.
public enum NetworkVSCError: Error, Equatable {
    /// The host did not answer `what` in time.
    case timedOut(String)
    /// The host refused `what`.
    case refused(String)
    /// The guest→host ring stayed full.
    case ringFull
}

/// A frame the host delivered: its length and its bytes (all of them, or the first
/// `NetworkVSC.prefixLength` when the caller asked for prefixes only).
public struct ReceivedFrame {
    public var length: Int
    public var bytes: [UInt8]
}

/// What the VSC counted.
public struct NetworkVSCCounters {
    public var framesSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var framesReceived: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Receive ranges or messages that did not add up (dropped, completed with FAIL).
    public var badReceives: UInt64 = 0
    /// Host packets of a kind this driver does not use.
    public var ignoredPackets: UInt64 = 0
}

/// The guest side of a synthetic NIC (Linux's `hv_netvsc`, Docs/hyperv-interface.md §17): the
/// NVSP handshake, the receive and send buffers (shared through GPADLs the program created),
/// RNDIS initialization, and raw Ethernet frames both ways at the rate of the ring.
///
/// Transmit: frames that fit are batched into send-buffer sections — up to the host's
/// `max_pkt_per_msg` RNDIS PACKET messages per section, each padded to its alignment — and one
/// INBAND SEND_RNDIS_PKT names the section (Linux's batched shape); larger frames go GPA-direct
/// from a slot of the `large` buffer. The host's completion frees the section or slot.
/// Receive: transfer-page packets whose ranges each hold one RNDIS message in the receive
/// buffer; every packet is completed with the 8-byte {SEND_RNDIS_PKT_COMPLETE, status}.
///
/// Generic over the channel and the buffers' memory, so the same code runs in the Embedded guest
/// and, on the host, against the real VSP in `swift test`. The host is untrusted: every range,
/// length and offset it gives is checked before the buffer is read.
public struct NetworkVSC<Channel: VMBusChannel, Buffer: SharedBuffer> {
    public var channel: Channel
    let receive: Buffer
    let send: Buffer
    let large: Buffer
    let receiveGPADL: UInt32
    let sendGPADL: UInt32

    /// The negotiated NVSP version, once up.
    public private(set) var version: NVSPVersion?
    /// The adapter's MAC address (OID_802_3_PERMANENT_ADDRESS).
    public private(set) var macAddress = MACAddress.zero
    /// The MTU the host reported (OID_GEN_MAXIMUM_FRAME_SIZE).
    public private(set) var mtu = 1500
    /// Whether the host says the cable is plugged in.
    public private(set) var linkConnected = false
    public private(set) var counters = NetworkVSCCounters()

    // Send buffer.
    var sectionSize = 0
    var sectionCount = 0
    var freeSections: [Int] = []
    var maximumPacketsPerMessage = 1
    var alignment = 8
    var batchSection = -1
    var batchBytes = 0
    var batchPackets = 0
    var freeLargeSlots: [Int] = []
    // Receive buffer.
    var subAllocationSize = 0
    var receiveLimit = 0
    var pendingCompletions: [UInt64] = []
    // Requests.
    var nextTransactionID: UInt64 = 1
    var nextRequestID: UInt32 = 1
    var nvspReplies: [(id: UInt64, bytes: [UInt8])] = []
    var controlReplies: [RNDISMessage] = []
    var packet = [UInt8](repeating: 0, count: 8192)
    var header = [UInt8](repeating: 0, count: RNDISPacketLayout.headerSize)
    let completionPayload = NVSPMessage.sendRNDISPacketComplete(status: .success).bytes(minimumSize: 8)

    /// Bytes of each slot of the `large` buffer (a jumbo frame and its RNDIS header).
    public static var largeSlotSize: Int { 16_384 }
    /// Bytes of a frame `poll` copies when it is asked for prefixes only.
    public static var prefixLength: Int { 64 }
    /// How long each step of the bring-up waits for the host (Linux waits forever).
    public static var stepTimeoutNanoseconds: UInt64 { 5_000_000_000 }
    /// Most control responses kept unclaimed.
    static var controlReplyLimit: Int { 16 }

    static var requestTag: UInt64 { 1 << 48 }
    static var sectionTag: UInt64 { 2 << 48 }
    static var largeTag: UInt64 { 3 << 48 }
    static var tagMask: UInt64 { 0xFFFF << 48 }

    /// - Parameters:
    ///   - receive: the receive buffer, already a GPADL (`receiveGPADL`) of the channel.
    ///   - send: the send buffer, a GPADL (`sendGPADL`) of the channel.
    ///   - large: memory for jumbo frames sent GPA-direct (any guest pages; no GPADL).
    public init(channel: Channel, receive: Buffer, receiveGPADL: UInt32, send: Buffer, sendGPADL: UInt32, large: Buffer) {
        self.channel = channel
        self.receive = receive
        self.send = send
        self.large = large
        self.receiveGPADL = receiveGPADL
        self.sendGPADL = sendGPADL
        freeLargeSlots = Array((0..<(large.size / Self.largeSlotSize)).reversed())
    }

    // MARK: Bring-up

    /// Negotiates NVSP (newest version first), hands over the buffers, initializes RNDIS, reads
    /// the MAC address, MTU and link state, and sets the packet filter (`filter`; directed,
    /// broadcast and all-multicast by default, as Linux sets at `ip link set up`).
    public mutating func start(filter: PacketFilter = .linuxDefault) throws(NetworkVSCError) {
        for candidate in NVSPVersion.linuxOrder {
            let reply = try request(.initialize(minimum: candidate, maximum: candidate), what: "NVSP INIT")
            if case .initializeComplete(_, _, let status) = reply, status == .success {
                version = candidate
                break
            }
        }
        guard let version else { throw .refused("every NVSP version") }
        if version >= .v2 {
            try post(.sendNDISConfig(mtu: NetvscConstants.ethernetMTU, capabilities: [.ieee8021q]))
        }
        try post(.sendNDISVersion(major: 6, minor: version >= .v5 ? 30 : 1))
        let receiveReply = try request(.sendReceiveBuffer(gpadl: receiveGPADL, id: NetvscConstants.receiveBufferID),
                                       what: "the receive buffer")
        guard case .sendReceiveBufferComplete(.success, let sections) = receiveReply, sections.count == 1,
              sections[0].offset == 0, sections[0].subAllocationSize >= NetvscConstants.minimumSectionSize,
              Int(sections[0].endOffset) <= receive.size else { throw .refused("the receive buffer") }
        subAllocationSize = Int(sections[0].subAllocationSize)
        receiveLimit = Int(sections[0].endOffset)
        let sendReply = try request(.sendSendBuffer(gpadl: sendGPADL, id: NetvscConstants.sendBufferID),
                                    what: "the send buffer")
        guard case .sendSendBufferComplete(.success, let size) = sendReply, size >= NetvscConstants.minimumSectionSize,
              Int(size) <= send.size else { throw .refused("the send buffer") }
        sectionSize = Int(size)
        sectionCount = send.size / sectionSize
        freeSections = Array((0..<sectionCount).reversed())

        let initialized = try control(.initialize(requestID: requestID(), majorVersion: 1, minorVersion: 0,
                                                  maximumTransferSize: 0x4000), what: "RNDIS INITIALIZE")
        guard case .initializeComplete(let complete) = initialized, complete.status == .success else {
            throw .refused("RNDIS INITIALIZE")
        }
        maximumPacketsPerMessage = Int(min(max(complete.maximumPacketsPerMessage, 1), 64))
        alignment = 1 << Int(min(complete.packetAlignmentFactor, 6))
        let address = try query(.permanentAddress)
        guard let parsed = MACAddress(bytes: address) else { throw .refused("the permanent address query") }
        macAddress = parsed
        // Linux carries on without these two answers (`rndis_filter_device_add`), and so does this driver.
        if let frameSize = (try? query(.maximumFrameSize))?.littleEndian(UInt32.self, at: 0), frameSize >= 576 {
            mtu = Int(frameSize)
        }
        if let status = (try? query(.mediaConnectStatus))?.littleEndian(UInt32.self, at: 0) {
            linkConnected = status == MediaConnectState.connected.rawValue
        }
        var value: [UInt8] = .zeros(4)
        value.storeLittleEndian(filter.rawValue, at: 0)
        let set = try control(.set(RNDISRequest(requestID: requestID(), oid: .currentPacketFilter, information: value)),
                              what: "the packet filter")
        guard case .setComplete(_, .success) = set else { throw .refused("the packet filter") }
    }

    mutating func requestID() -> UInt32 {
        defer { nextRequestID &+= 1 }
        return nextRequestID
    }

    /// Sends an NVSP message that wants no completion.
    mutating func post(_ message: NVSPMessage) throws(NetworkVSCError) {
        guard channel.send(.inband, flags: [], transactionID: NetvscConstants.noResponseTransactionID,
                           payload: message.bytes(), timeoutNanoseconds: Self.stepTimeoutNanoseconds)
        else { throw .ringFull }
    }

    /// Sends an NVSP request and waits for its completion.
    mutating func request(_ message: NVSPMessage, what: String) throws(NetworkVSCError) -> NVSPMessage {
        let id = Self.requestTag | nextTransactionID
        nextTransactionID &+= 1
        guard channel.send(.inband, flags: .completionRequested, transactionID: id, payload: message.bytes(),
                           timeoutNanoseconds: Self.stepTimeoutNanoseconds) else { throw .ringFull }
        let deadline = channel.timestamp() &+ channel.ticks(nanoseconds: Self.stepTimeoutNanoseconds)
        while channel.timestamp() < deadline {
            if let index = nvspReplies.firstIndex(where: { $0.id == id }) {
                let bytes = nvspReplies.remove(at: index).bytes
                guard let reply = try? NVSPMessage(parsing: bytes, completion: true) else { throw .refused(what) }
                return reply
            }
            if poll(copyFrames: false, { _ in }) == 0 { channel.relax() }
        }
        throw .timedOut(what)
    }

    /// Sends an RNDIS control message in a send-buffer section and waits for its response.
    mutating func control(_ message: RNDISMessage, what: String) throws(NetworkVSCError) -> RNDISMessage {
        let bytes = message.bytes
        let deadline = channel.timestamp() &+ channel.ticks(nanoseconds: Self.stepTimeoutNanoseconds)
        var section: Int? = nil
        while section == nil {
            section = freeSections.popLast()
            if section == nil {
                guard channel.timestamp() < deadline else { throw .timedOut(what) }
                _ = poll(copyFrames: false, { _ in })
            }
        }
        guard let section, bytes.count <= sectionSize else { throw .refused(what) }
        send.write(bytes, from: 0, count: bytes.count, at: section * sectionSize)
        let nvsp = NVSPMessage.sendRNDISPacket(channel: .control, sectionIndex: UInt32(section), sectionSize: UInt32(bytes.count))
        guard channel.send(.inband, flags: .completionRequested, transactionID: Self.sectionTag | UInt64(section),
                           payload: nvsp.bytes(), timeoutNanoseconds: Self.stepTimeoutNanoseconds) else { throw .ringFull }
        let wanted = Self.requestIDOf(message)
        while channel.timestamp() < deadline {
            if let index = controlReplies.firstIndex(where: { Self.requestIDOf($0) == wanted }) {
                return controlReplies.remove(at: index)
            }
            if poll(copyFrames: false, { _ in }) == 0 { channel.relax() }
        }
        throw .timedOut(what)
    }

    /// QUERYs `oid` and returns its information buffer.
    mutating func query(_ oid: RNDISObjectID) throws(NetworkVSCError) -> [UInt8] {
        let reply = try control(.query(RNDISRequest(requestID: requestID(), oid: oid)), what: "QUERY")
        guard case .queryComplete(_, .success, let information) = reply else { throw .refused("QUERY") }
        return information
    }

    static func requestIDOf(_ message: RNDISMessage) -> UInt32? {
        switch message {
        case .initialize(let id, _, _, _), .halt(let id), .keepalive(let id), .keepaliveComplete(let id, _): id
        case .initializeComplete(let complete): complete.requestID
        case .query(let request), .set(let request): request.requestID
        case .queryComplete(let id, _, _), .setComplete(let id, _): id
        default: nil
        }
    }

    // MARK: Transmit

    /// Queues one Ethernet frame (its first 14 bytes the header, no FCS).
    /// - Returns: `false` if no section or slot is free now (poll, then try again) or the frame
    ///   is larger than the host takes; the frame was not sent.
    public mutating func transmit(_ frame: [UInt8]) -> Bool {
        let length = RNDISPacketLayout.headerSize + frame.count
        guard frame.count >= 14, frame.count <= mtu + 18 else { return false }
        if length <= sectionSize {
            let padded = (length + alignment - 1) / alignment * alignment
            if batchSection >= 0, batchBytes + padded > sectionSize || batchPackets >= maximumPacketsPerMessage {
                guard flush() else { return false }
            }
            if batchSection < 0 {
                guard let section = freeSections.popLast() else { return false }
                batchSection = section
                batchBytes = 0
                batchPackets = 0
            }
            writeHeader(dataCount: frame.count, messageLength: padded)
            let offset = batchSection * sectionSize + batchBytes
            send.write(header, from: 0, count: header.count, at: offset)
            send.write(frame, from: 0, count: frame.count, at: offset + header.count)
            batchBytes += padded
            batchPackets += 1
        } else {
            guard length <= Self.largeSlotSize, flush(), let slot = freeLargeSlots.popLast() else { return false }
            writeHeader(dataCount: frame.count, messageLength: length)
            let offset = slot * Self.largeSlotSize
            large.write(header, from: 0, count: header.count, at: offset)
            large.write(frame, from: 0, count: frame.count, at: offset + header.count)
            let address = large.physicalAddress + UInt64(offset)
            let range = GPARange(byteCount: UInt32(length), byteOffset: UInt32(address % 4096),
                                 pfns: large.pageNumbers(at: offset, count: length))
            let nvsp = NVSPMessage.sendRNDISPacket(channel: .data, sectionIndex: NetvscConstants.noSection, sectionSize: 0)
            guard channel.stage(.gpaDirect, flags: .completionRequested, transactionID: Self.largeTag | UInt64(slot),
                                header: GPADirectHeader(ranges: [range]).bytes, payload: nvsp.bytes()) else {
                freeLargeSlots.append(slot)
                return false
            }
            channel.publish()
        }
        counters.framesSent += 1
        counters.bytesSent += UInt64(frame.count)
        return true
    }

    /// The RNDIS PACKET header for a frame that follows it directly, no per-packet information.
    mutating func writeHeader(dataCount: Int, messageLength: Int) {
        for index in 0..<header.count { header[index] = 0 }
        header.storeLittleEndian(RNDISMessageType.packet.rawValue, at: 0)
        header.storeLittleEndian(UInt32(messageLength), at: 4)
        header.storeLittleEndian(UInt32(RNDISPacketLayout.headerSize - RNDISMessage.headerSize), at: 8)
        header.storeLittleEndian(UInt32(dataCount), at: 12)
    }

    /// Sends the open batch, if any, and publishes.
    /// - Returns: `false` if the ring had no room for it (the batch stays open).
    @discardableResult
    public mutating func flush() -> Bool {
        guard batchSection >= 0 else { return true }
        let nvsp = NVSPMessage.sendRNDISPacket(channel: .data, sectionIndex: UInt32(batchSection), sectionSize: UInt32(batchBytes))
        guard channel.stage(.inband, flags: .completionRequested, transactionID: Self.sectionTag | UInt64(batchSection),
                            payload: nvsp.bytes()) else {
            channel.publish()
            return false
        }
        batchSection = -1
        channel.publish()
        return true
    }

    /// Whether a frame of `length` bytes could be queued now without waiting for completions.
    public var canTransmit: Bool { batchSection >= 0 || !freeSections.isEmpty }

    // MARK: Receive

    /// Reads what the host sent — frames, completions, control responses — and completes the
    /// receive packets; calls `body` for each frame.
    /// - Parameters:
    ///   - copyFrames: give `body` whole frames; otherwise only the first `prefixLength` bytes.
    ///   - maximumPackets: most ring packets read in this call.
    /// - Returns: the number of ring packets read.
    @discardableResult
    public mutating func poll(copyFrames: Bool, maximumPackets: Int = 64, _ body: (ReceivedFrame) -> Void) -> Int {
        retryCompletions()
        var count = 0
        while count < maximumPackets, let descriptor = channel.receive(into: &packet) {
            count += 1
            switch descriptor.type {
            case .completion:
                completed(descriptor)
            case .transferPages:
                received(descriptor, copyFrames: copyFrames, body)
            default:
                counters.ignoredPackets += 1
            }
        }
        if count > 0 { channel.publish() }
        return count
    }

    mutating func completed(_ descriptor: PacketDescriptor) {
        let id = descriptor.transactionID
        let index = Int(truncatingIfNeeded: id & ~Self.tagMask)
        switch id & Self.tagMask {
        case Self.sectionTag where index < sectionCount && !freeSections.contains(index) && index != batchSection:
            freeSections.append(index)
        case Self.largeTag where index < large.size / Self.largeSlotSize && !freeLargeSlots.contains(index):
            freeLargeSlots.append(index)
        case Self.requestTag:
            let start = min(descriptor.payloadOffset, packet.count)
            let end = min(descriptor.totalLength, packet.count)
            if nvspReplies.count < Self.controlReplyLimit { nvspReplies.append((id, Array(packet[start..<max(start, end)]))) }
        default:
            counters.ignoredPackets += 1
        }
    }

    mutating func received(_ descriptor: PacketDescriptor, copyFrames: Bool, _ body: (ReceivedFrame) -> Void) {
        let id = descriptor.transactionID
        // The transfer-page header (§9.3) and the NVSP message, read in place: pageset 0xCAFE,
        // a range count that fits the header, SEND_RNDIS_PKT after it.
        let headerEnd = min(descriptor.payloadOffset, packet.count)
        let headerStart = PacketDescriptor.size
        guard headerEnd >= headerStart + 8, headerEnd <= packet.count,
              packet.littleEndian(UInt16.self, at: headerStart) == NetvscConstants.receiveBufferID,
              let rangeCount = packet.littleEndian(UInt32.self, at: headerStart + 4),
              UInt64(rangeCount) <= UInt64((headerEnd - headerStart - 8) / 8),
              descriptor.payloadOffset + 4 <= min(descriptor.totalLength, packet.count),
              packet.littleEndian(UInt32.self, at: descriptor.payloadOffset) == NVSPMessageType.sendRNDISPacket.rawValue
        else {
            counters.badReceives += 1
            complete(id)
            return
        }
        // One prefix buffer for the packet's frames: handed to `body` and read into again once
        // `body` has let go of it, so prefixes cost no allocation per frame.
        var prefix = [UInt8](repeating: 0, count: copyFrames ? 0 : Self.prefixLength)
        for index in 0..<Int(rangeCount) {
            let entry = headerStart + 8 + 8 * index
            guard let rangeCount = packet.littleEndian(UInt32.self, at: entry),
                  let rangeOffset = packet.littleEndian(UInt32.self, at: entry + 4) else { break }
            let offset = Int(rangeOffset)
            let count = Int(rangeCount)
            guard count >= RNDISMessage.headerSize, count <= subAllocationSize, offset <= receiveLimit - count else {
                counters.badReceives += 1
                continue
            }
            let type = receive.load32(at: offset)
            let messageLength = Int(receive.load32(at: offset + 4))
            guard messageLength >= RNDISMessage.headerSize, messageLength <= count else {
                counters.badReceives += 1
                continue
            }
            if type == RNDISMessageType.packet.rawValue {
                guard messageLength >= RNDISPacketLayout.headerSize else {
                    counters.badReceives += 1
                    continue
                }
                let dataOffset = Int(receive.load32(at: offset + 8))
                let dataLength = Int(receive.load32(at: offset + 12))
                let start = RNDISMessage.headerSize + dataOffset
                guard dataOffset >= RNDISPacketLayout.headerSize - RNDISMessage.headerSize, dataLength >= 14,
                      dataOffset < messageLength, dataLength <= messageLength - start else {
                    counters.badReceives += 1
                    continue
                }
                counters.framesReceived += 1
                counters.bytesReceived += UInt64(dataLength)
                if !copyFrames && dataLength >= Self.prefixLength {
                    receive.read(at: offset + start, count: Self.prefixLength, into: &prefix, bufferOffset: 0)
                    body(ReceivedFrame(length: dataLength, bytes: prefix))
                } else {
                    let copied = copyFrames ? dataLength : min(dataLength, Self.prefixLength)
                    var bytes = [UInt8](repeating: 0, count: copied)
                    receive.read(at: offset + start, count: copied, into: &bytes, bufferOffset: 0)
                    body(ReceivedFrame(length: dataLength, bytes: bytes))
                }
            } else {
                var bytes = [UInt8](repeating: 0, count: messageLength)
                receive.read(at: offset, count: messageLength, into: &bytes, bufferOffset: 0)
                guard let (message, _) = try? RNDISMessage.parse(bytes) else {
                    counters.badReceives += 1
                    continue
                }
                if case .indicateStatus(let status, _) = message {
                    if status == .mediaConnect { linkConnected = true }
                    if status == .mediaDisconnect { linkConnected = false }
                } else if controlReplies.count < Self.controlReplyLimit {
                    controlReplies.append(message)
                }
            }
        }
        complete(id)
    }

    /// Completes receive packet `id` (the host may reuse its sub-allocations).
    mutating func complete(_ id: UInt64) {
        if !pendingCompletions.isEmpty || !channel.stage(.completion, flags: [], transactionID: id, payload: completionPayload) {
            pendingCompletions.append(id)
        }
    }

    /// Sends completions that found the ring full earlier.
    mutating func retryCompletions() {
        var sent = 0
        while sent < pendingCompletions.count,
              channel.stage(.completion, flags: [], transactionID: pendingCompletions[sent], payload: completionPayload) {
            sent += 1
        }
        if sent > 0 {
            pendingCompletions.removeFirst(sent)
            channel.publish()
        }
    }
}
