import NetworkProtocol
import Testing

/// RNDIS messages (`include/linux/rndis.h`, `hyperv_net.h`) byte for byte, both directions.
@Suite struct RNDISMessageTests {
    static let cases: [(RNDISMessage, String)] = [
        (.initialize(requestID: 1, majorVersion: 1, minorVersion: 0, maximumTransferSize: 0x4000),
         "02000000 18000000 01000000 01000000 00000000 00400000"),
        (.initializeComplete(RNDISInitializeComplete(requestID: 1, maximumPacketsPerMessage: 8,
                                                     maximumTransferSize: 0x40000, packetAlignmentFactor: 3)),
         "02000080 34000000 01000000 00000000 01000000 00000000 01000000 00000000 08000000 00000400 03000000 00000000 00000000"),
        (.halt(requestID: 9), "03000000 0c000000 09000000"),
        (.query(RNDISRequest(requestID: 2, oid: .maximumFrameSize)),
         "04000000 1c000000 02000000 06010100 00000000 14000000 00000000"),
        (.query(RNDISRequest(requestID: 3, oid: .receiveScaleCapabilities, information: [0x88, 2, 18, 0])),
         "04000000 20000000 03000000 03020100 04000000 14000000 00000000 88021200"),
        (.queryComplete(requestID: 2, status: .success, information: u32le(1500)),
         "04000080 1c000000 02000000 00000000 04000000 10000000 dc050000"),
        (.queryComplete(requestID: 4, status: .notSupported, information: []),
         "04000080 18000000 04000000 bb0000c0 00000000 10000000"),
        (.set(RNDISRequest(requestID: 5, oid: .currentPacketFilter, information: u32le(0x0D))),
         "05000000 20000000 05000000 0e010100 04000000 14000000 00000000 0d000000"),
        (.setComplete(requestID: 5, status: .success), "05000080 10000000 05000000 00000000"),
        (.reset, "06000000 0c000000 00000000"),
        (.resetComplete(status: .success, addressingReset: 0), "06000080 10000000 00000000 00000000"),
        (.indicateStatus(status: .mediaConnect, buffer: []), "07000000 14000000 0b000140 00000000 0c000000"),
        (.indicateStatus(status: .linkSpeedChange, buffer: u32le(100_000_000)),
         "07000000 18000000 13000140 04000000 0c000000 00e1f505"),
        (.keepalive(requestID: 7), "08000000 0c000000 07000000"),
        (.keepaliveComplete(requestID: 7, status: .success), "08000080 10000000 07000000 00000000"),
    ]

    @Test("every RNDIS control message encodes to its rndis.h layout")
    func encodes() {
        for (message, hex) in Self.cases { #expect(message.bytes == hexBytes(hex), "\(message)") }
    }

    @Test("every RNDIS control message parses back, reporting its msg_len")
    func parses() throws {
        for (message, hex) in Self.cases {
            let bytes = hexBytes(hex)
            let (parsed, length) = try RNDISMessage.parse(bytes)
            #expect(parsed == message)
            #expect(length == bytes.count)
        }
    }

    @Test("PACKET: header at 36, PPIs right after it, frame after the PPIs, as netvsc_xmit builds it")
    func packetLayout() throws {
        let frame = [UInt8](repeating: 0xEE, count: 20)
        let packet = RNDISPacket(data: frame, perPacketInfo: [
            PerPacketInfo(type: .ieee8021Q, value: VLANInfo(priority: 5, vlanID: 100).rawValue),
            PerPacketInfo(type: .checksum, value: ChecksumInfo.transmit(ipv6: false, tcp: true, udp: false,
                                                                        transportHeaderOffset: 34).rawValue),
        ])
        let bytes = packet.bytes()
        let expectedHeader = hexBytes("""
            01000000 60000000 44000000 14000000 00000000 00000000 00000000 24000000 20000000 00000000 00000000
            10000000 06000000 0c000000 45060000
            10000000 00000000 0c000000 05002200
            """)
        #expect(Array(bytes.prefix(expectedHeader.count)) == expectedHeader)
        #expect(Array(bytes.suffix(20)) == frame)
        let (parsed, length) = try RNDISMessage.parse(bytes)
        #expect(parsed == .packet(packet))
        #expect(length == 96)
        // Without PPIs the offset is 0 (Linux's receive path rejects an offset with no length).
        let plain = RNDISPacket(data: frame).bytes()
        #expect(Array(plain.prefix(44)) == hexBytes(
            "01000000 40000000 24000000 14000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000"))
        #expect(try RNDISMessage.parse(plain).0 == .packet(RNDISPacket(data: frame)))
        // Padding for a batch goes into msg_len.
        let aligned = packet.bytes(alignment: 64)
        #expect(aligned.count == 128)
        #expect(aligned[4] == 128)
    }

    @Test("PPI payload bit layouts: checksum, LSOv2, 802.1Q")
    func ppiBits() {
        let checksum = ChecksumInfo.transmit(ipv6: true, tcp: false, udp: true, transportHeaderOffset: 54)
        #expect(checksum.rawValue == 0x0036_000A)
        #expect(checksum.isIPv6 && checksum.udpChecksum && checksum.transportHeaderOffset == 54)
        let lso = LargeSendInfo.version2(maximumSegmentSize: 1448, transportHeaderOffset: 34, ipv6: false)
        #expect(lso.rawValue == 0x4000_0000 | 34 << 20 | 1448)
        #expect(LargeSendInfo.version2(maximumSegmentSize: 1428, transportHeaderOffset: 54, ipv6: true).isIPv6)
        let vlan = VLANInfo(priority: 3, dropEligible: true, vlanID: 0xABC)
        #expect(vlan.rawValue == 0xABCB)
        #expect(vlan.tagControl == 0x7ABC)
        #expect(VLANInfo(tagControl: 0x7ABC) == vlan)
        #expect(ChecksumInfo.received(tcpSucceeded: true, udpSucceeded: false, ipSucceeded: true).rawValue == 0x28)
    }

    @Test("NDIS_OFFLOAD is 156 bytes at revision 3 with the LSOv2 and checksum words where Linux reads them")
    func offload() throws {
        let offload = NDISOffload.checksumAndLargeSend(maximumLargeSend: 65535)
        let bytes = offload.bytes
        #expect(bytes.count == 156)
        #expect(Array(bytes[0..<4]) == hexBytes("a7039c00"))
        #expect(Array(bytes[8..<12]) == u32le(0x54))  // TCP4 | TCP4OPT | UDP4
        #expect(Array(bytes[24..<28]) == u32le(0x55))  // TCP6 | TCP6OPT | IP6EXT | UDP6
        #expect(Array(bytes[80..<88]) == u32le(2) + u32le(65535))
        #expect(Array(bytes[104..<108]) == u32le(5))
        #expect(try NDISOffload(parsing: bytes) == offload)
        #expect(NDISOffload().bytes == hexBytes("a7039c00") + [UInt8](repeating: 0, count: 152))
        // A revision-1 (112-byte) structure parses; anything under 112 does not.
        var small = Array(bytes.prefix(112))
        small[2] = 112
        #expect(try NDISOffload(parsing: small).ipv4TransmitChecksum == 0x54)
        small[2] = 100
        #expect(throws: NetworkProtocolError.self) { try NDISOffload(parsing: small) }
    }

    @Test("NDIS_OFFLOAD_PARAMETERS: 28 bytes at NVSP ≥ 5, 22 before, fields at their offsets")
    func offloadParameters() throws {
        var parameters = NDISOffloadParameters()
        parameters.ipv4Checksum = 1
        parameters.tcpIPv4Checksum = 4
        parameters.udpIPv6Checksum = 4
        parameters.largeSendV2IPv4 = 2
        parameters.largeSendV2IPv6 = 2
        parameters.rscIPv4 = 1
        let bytes = parameters.bytes
        #expect(bytes == hexBytes("80031c00 01040000 04000002 02000000 00000000 00000100 00000000"))
        #expect(try NDISOffloadParameters(parsing: bytes) == parameters)
        parameters.encodedSize = 22
        parameters.rscIPv4 = 0
        let legacy = parameters.bytes
        #expect(legacy.count == 22 && legacy[2] == 22)
        #expect(try NDISOffloadParameters(parsing: legacy) == parameters)
    }

    @Test("RSS capabilities are 18 packed bytes; RSS parameters put the table at 40 and the key after it")
    func receiveScaling() throws {
        let caps = RSSCapabilities(capabilityFlags: 0x300, interruptMessageCount: 4, receiveQueueCount: 4,
                                   indirectionTableEntryCount: 128)
        #expect(caps.bytes == hexBytes("88021200 00030000 04000000 04000000 8000"))
        #expect(try RSSCapabilities(parsing: caps.bytes) == caps)
        let parameters = RSSParameters(flags: 0, hashInformation: 0x0000_3301,
                                       indirectionTable: (0..<128).map { UInt32($0 % 4) },
                                       key: [UInt8](repeating: 0x6D, count: 40))
        let bytes = parameters.bytes
        #expect(bytes.count == 40 + 512 + 40)
        #expect(Array(bytes[12..<28]) == hexBytes("0002 0000 28000000 2800 0000 28020000"))
        #expect(try RSSParameters(parsing: bytes) == parameters)
    }

    @Test("a MAC address read from bytes is the six bytes in wire order at its offset; one that does not fit is nil")
    func macAddressFromBytes() {
        let bytes: [UInt8] = [0x00, 0x15, 0x5D, 0x01, 0x02, 0xAB, 0xCD, 0xEF]
        for offset in [-1, 0, 1, 2, 3, Int.min, Int.max, Int.max - 5] {
            let fits = offset >= 0 && offset <= bytes.count - 6
            let expected = fits ? MACAddress(bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3],
                                             bytes[offset + 4], bytes[offset + 5]) : nil
            #expect(MACAddress(bytes: bytes, at: offset) == expected, "offset \(offset)")
        }
        #expect(MACAddress(bytes: [], at: 0) == nil)
        #expect(MACAddress(bytes: Array(bytes.prefix(5))) == nil)
        #expect(MACAddress(bytes: bytes)?.bytes == Array(bytes.prefix(6)))
        #expect(MACAddress.source(of: ethernetFrame(from: .broadcast, to: .zero)) == .broadcast)
    }

    @Test("config parameter NetworkAddress is laid out as rndis_filter_set_device_mac builds it")
    func networkAddress() throws {
        let address = MACAddress(0x00, 0x15, 0x5D, 0x01, 0x02, 0xAB)
        let bytes = RNDISConfigParameter.networkAddress(address).bytes
        #expect(bytes.count == 72)
        #expect(Array(bytes[0..<20]) == hexBytes("14000000 1c000000 02000000 30000000 18000000"))
        #expect(Array(bytes[20..<24]) == hexBytes("4e006500"))  // "Ne"
        #expect(Array(bytes[48..<52]) == hexBytes("30003000"))  // "00"
        let parsed = try RNDISConfigParameter(parsing: bytes)
        #expect(parsed.name == RNDISConfigParameter.networkAddressName)
        #expect(parsed.macAddress == address)
    }

    @Test("lengths and offsets that do not add up are refused")
    func hostileLayouts() {
        // msg_len beyond the bytes.
        #expect(throws: NetworkProtocolError.self) { try RNDISMessage.parse(hexBytes("04000000 ff000000 01000000")) }
        // msg_len below the header.
        #expect(throws: NetworkProtocolError.self) { try RNDISMessage.parse(hexBytes("04000000 04000000")) }
        // QUERY whose info buffer runs past msg_len.
        #expect(throws: NetworkProtocolError.self) {
            try RNDISMessage.parse(hexBytes("04000000 1c000000 02000000 06010100 08000000 14000000 00000000"))
        }
        // PACKET whose data runs past msg_len.
        var packet = RNDISPacket(data: [1, 2, 3]).bytes()
        packet.replaceSubrange(12..<16, with: u32le(100))
        #expect(throws: NetworkProtocolError.self) { try RNDISMessage.parse(packet) }
        // PPI with size 0 (would loop forever) and with ppi_offset past its size.
        var ppi = RNDISPacket(data: [1, 2, 3], perPacketInfo: [PerPacketInfo(type: .hashValue, value: 7)]).bytes()
        ppi.replaceSubrange(44..<48, with: u32le(0))
        #expect(throws: NetworkProtocolError.self) { try RNDISMessage.parse(ppi) }
        ppi.replaceSubrange(44..<48, with: u32le(16))
        ppi.replaceSubrange(52..<56, with: u32le(20))
        #expect(throws: NetworkProtocolError.self) { try RNDISMessage.parse(ppi) }
    }
}
