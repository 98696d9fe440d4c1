import NetworkProtocol
import Testing

/// Every NVSP message Linux 6.1 sends or expects (`hyperv_net.h` layouts), encoded and parsed
/// byte for byte.
@Suite struct NVSPMessageTests {
    static let cases: [(NVSPMessage, String, Bool)] = [
        // (message, wire bytes before the zero padding to 40, is a completion payload)
        (.initialize(minimum: .v61, maximum: .v61), "01000000 01000600 01000600", false),
        (.initialize(minimum: .v1, maximum: .v1), "01000000 02000000 02000000", false),
        (.initializeComplete(negotiated: .v5, maximumMDLChainLength: 0, status: .success),
         "02000000 00000500 00000000 01000000", true),
        (.sendNDISVersion(major: 6, minor: 30), "64000000 06000000 1e000000", false),
        (.sendNDISConfig(mtu: 1514, capabilities: [.ieee8021q, .sriov, .teaming, .receiveSegmentCoalescing]),
         "7d000000 ea050000 00000000 ac00000000000000", false),
        (.sendReceiveBuffer(gpadl: 0x1234_5678, id: 0xCAFE), "65000000 78563412 feca", false),
        (.sendReceiveBufferComplete(status: .success, sections: [
            ReceiveBufferSection(offset: 0, subAllocationSize: 1728, subAllocationCount: 9709, endOffset: 1728 * 9709)]),
         "66000000 01000000 01000000 00000000 c0060000 ed250000 c0ffff00", true),
        (.revokeReceiveBuffer(id: 0xCAFE), "67000000 feca", false),
        (.sendSendBuffer(gpadl: 0xE2E2, id: 0), "68000000 e2e20000 0000", false),
        (.sendSendBufferComplete(status: .success, sectionSize: 6144), "69000000 01000000 00180000", true),
        (.revokeSendBuffer(id: 0), "6a000000 0000", false),
        (.sendRNDISPacket(channel: .control, sectionIndex: 0xFFFF_FFFF, sectionSize: 0),
         "6b000000 01000000 ffffffff 00000000", false),
        (.sendRNDISPacket(channel: .data, sectionIndex: 3, sectionSize: 1200), "6b000000 00000000 03000000 b0040000", false),
        (.sendRNDISPacketComplete(status: .success), "6c000000 01000000", true),
        (.subchannelRequest(operation: 1, count: 3), "85000000 01000000 03000000", false),
        (.subchannelComplete(status: .success, count: 3), "85000000 01000000 03000000", true),
    ]

    @Test("every NVSP message encodes to its hyperv_net.h layout, padded to sizeof(struct nvsp_message)")
    func encodes() {
        for (message, hex, _) in Self.cases {
            #expect(message.bytes() == padded(hexBytes(hex), to: 40), "\(message)")
        }
    }

    @Test("every NVSP message parses back from its wire bytes")
    func parses() throws {
        for (message, hex, completion) in Self.cases {
            #expect(try NVSPMessage(parsing: padded(hexBytes(hex), to: 40), completion: completion) == message)
        }
    }

    @Test("the guest's 8-byte receive completion {108, status} parses (enq_receive_complete)")
    func shortReceiveCompletion() throws {
        #expect(try NVSPMessage(parsing: hexBytes("6c000000 02000000"), completion: true)
            == .sendRNDISPacketComplete(status: .failure))
        #expect(NVSPMessage.sendRNDISPacketComplete(status: .success).bytes(minimumSize: 8) == hexBytes("6c000000 01000000"))
    }

    @Test("the send indirection table sits right after the 40-byte message, offset 40, 16 entries")
    func indirectionTable() throws {
        let entries = (0..<16).map { UInt32($0 % 3) }
        let bytes = NVSPMessage.sendIndirectionTable(entries: entries).bytes()
        #expect(bytes.count == 104)
        #expect(Array(bytes[0..<12]) == hexBytes("86000000 10000000 28000000"))
        #expect(Array(bytes[40..<48]) == hexBytes("00000000 01000000"))
        #expect(try NVSPMessage(parsing: bytes) == .sendIndirectionTable(entries: entries))
        // Linux ≤ NVSP 6 hosts that put offset 12 but the table at 40: the table is found at 40.
        var legacy = bytes
        legacy.replaceSubrange(8..<12, with: u32le(4))
        #expect(try NVSPMessage(parsing: legacy) == .sendIndirectionTable(entries: entries))
    }

    @Test("short messages are refused with the bytes they lacked")
    func truncated() {
        #expect(throws: NetworkProtocolError.truncated(needed: 12, available: 8)) {
            try NVSPMessage(parsing: hexBytes("01000000 01000600"))
        }
        #expect(throws: NetworkProtocolError.self) { try NVSPMessage(parsing: [1, 0]) }
        #expect(throws: NetworkProtocolError.self) {
            // num_sections 1000 in a 40-byte message.
            try NVSPMessage(parsing: padded(hexBytes("66000000 01000000 e8030000"), to: 40))
        }
    }

    @Test("unknown types parse as .other and keep their number")
    func unknown() throws {
        #expect(try NVSPMessage(parsing: padded(u32le(131), to: 40)) == .other(type: NVSPMessageType(rawValue: 131)))
    }
}
