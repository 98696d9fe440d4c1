import Testing
import VMBusProtocol
import TestSupport

/// Checks the contract every channel message shares: exact round trip through `bytes`, the
/// enum dispatch, rejection of every truncation, and rejection of a foreign msgtype.
func checkMessageContract<M: ChannelMessageRepresentable>(_ message: M, wrap: (M) -> ChannelMessage) throws {
    let bytes = message.bytes
    #expect(bytes.count >= M.minimumSize)
    #expect(bytes.count <= 240)
    #expect(le(bytes, 0, as: UInt32.self) == M.messageType.rawValue)
    #expect(try M(parsing: bytes) == message)
    #expect(try ChannelMessage(parsing: bytes) == wrap(message))
    #expect(wrap(message).bytes == bytes)
    #expect(wrap(message).type == M.messageType)

    for length in 0..<M.minimumSize {
        let truncated = Array(bytes.prefix(length))
        #expect(throws: VMBusError.truncated(M.messageType, size: length, minimum: M.minimumSize)) {
            try M(parsing: truncated)
        }
        #expect(throws: VMBusError.self) { try ChannelMessage(parsing: truncated) }
    }

    var foreign = bytes
    let otherType = M.messageType.rawValue == 1 ? UInt32(2) : UInt32(1)
    foreign[0] = UInt8(otherType)
    #expect(throws: VMBusError.unexpectedType(expected: M.messageType, found: ChannelMessageType(rawValue: otherType)))
    {
        try M(parsing: foreign)
    }

    #expect(throws: VMBusError.oversized(size: 241)) {
        try M(parsing: bytes + [UInt8](repeating: 0, count: 241 - bytes.count))
    }
}

@Suite("Channel messages (Docs/hyperv-interface.md §6)")
struct ChannelMessageTests {
    static let offer = OfferChannel(
        interfaceType: .heartbeat, interfaceInstance: GUID(0x1122_3344, 0x5566, 0x7788, 0x99aa_bbcc_ddee_ff00),
        childRelID: 0x0102_0304, connectionID: VMBusConstants.eventConnectionID(childRelID: 7),
        channelFlags: 0xA1A2, mmioMegabytes: 0xB1B2, userDefined: (0..<120).map { UInt8($0 + 1) },
        subChannelIndex: 0xC1C2, monitorID: 0xD1, monitorAllocated: true, isDedicatedInterrupt: true)

    @Test("INITIATE_CONTACT round-trips and exposes the message SINT")
    func initiateContact() throws {
        let message = InitiateContact(
            version: .v5_3, targetVP: 3, interruptPageOrTargetInfo: 0x0000_0000_0000_0002,
            monitorPage1: 0x1234_5000, monitorPage2: 0x1234_6000)
        try checkMessageContract(message, wrap: ChannelMessage.initiateContact)
        let bytes = message.bytes
        #expect(bytes.count == 40)
        #expect(le(bytes, 8, as: UInt32.self) == 0x50003)
        #expect(le(bytes, 12, as: UInt32.self) == 3)
        #expect(le(bytes, 16, as: UInt64.self) == 2)
        #expect(le(bytes, 24, as: UInt64.self) == 0x1234_5000)
        #expect(le(bytes, 32, as: UInt64.self) == 0x1234_6000)
        #expect(message.messageSINT == 2)
    }

    @Test("VERSION_RESPONSE is 16 bytes: supported @8, state @9, connection @12")
    func versionResponse() throws {
        let message = VersionResponse(versionSupported: true, connectionState: 0, messageConnectionID: .init(1))
        try checkMessageContract(message, wrap: ChannelMessage.versionResponse)
        let bytes = message.bytes
        #expect(bytes.count == 16)
        #expect(bytes[8] == 1 && bytes[9] == 0)
        #expect(le(bytes, 12, as: UInt32.self) == 1)
        try checkMessageContract(VersionResponse(versionSupported: false), wrap: ChannelMessage.versionResponse)
    }

    @Test("Header-only messages are 8 bytes")
    func headerOnly() throws {
        try checkMessageContract(RequestOffers(), wrap: ChannelMessage.requestOffers)
        try checkMessageContract(AllOffersDelivered(), wrap: ChannelMessage.allOffersDelivered)
        try checkMessageContract(Unload(), wrap: ChannelMessage.unload)
        try checkMessageContract(UnloadResponse(), wrap: ChannelMessage.unloadResponse)
        #expect(RequestOffers().bytes == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(UnloadResponse().bytes == [17, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("OFFERCHANNEL is exactly 196 bytes with every field at its Docs/hyperv-interface.md §6.4 offset")
    func offerChannelLayout() throws {
        try checkMessageContract(Self.offer, wrap: ChannelMessage.offerChannel)
        let bytes = Self.offer.bytes
        #expect(bytes.count == 196)
        #expect(le(bytes, 0, as: UInt32.self) == 1)
        #expect(Array(bytes[8..<24]) == GUID.heartbeat.wireBytes)
        #expect(hex(Array(bytes[24..<40])) == "4433221166558877" + "99aabbccddeeff00")
        #expect(bytes[40..<56].allSatisfy { $0 == 0 })
        #expect(le(bytes, 56, as: UInt16.self) == 0xA1A2)
        #expect(le(bytes, 58, as: UInt16.self) == 0xB1B2)
        #expect(Array(bytes[60..<180]) == (0..<120).map { UInt8($0 + 1) })
        #expect(le(bytes, 180, as: UInt16.self) == 0xC1C2)
        #expect(le(bytes, 182, as: UInt16.self) == 0)
        #expect(le(bytes, 184, as: UInt32.self) == 0x0102_0304)
        #expect(bytes[188] == 0xD1)
        #expect(bytes[189] == 1)
        #expect(le(bytes, 190, as: UInt16.self) == 1)
        #expect(le(bytes, 192, as: UInt32.self) == 0x2007)
    }

    @Test("OFFERCHANNEL flag bits: only bit 0 of @189 and @190 counts")
    func offerFlagBits() throws {
        var bytes = Self.offer.bytes
        bytes[189] = 0xFE
        bytes[190] = 0xFE
        bytes[191] = 0xFF
        let parsed = try OfferChannel(parsing: bytes)
        #expect(!parsed.monitorAllocated)
        #expect(!parsed.isDedicatedInterrupt)
    }

    @Test("OFFERCHANNEL user-defined area is zero-padded or truncated to 120 bytes")
    func offerUserDefinedNormalized() throws {
        var offer = Self.offer
        offer.userDefined = [9, 9]
        #expect(Array(offer.bytes[60..<63]) == [9, 9, 0])
        offer.userDefined = [UInt8](repeating: 7, count: 200)
        #expect(offer.bytes.count == 196)
        #expect(offer.bytes[180] == 0xC2)
    }

    @Test("GPADL_HEADER carries the first range and at most as many PFNs as range_buflen announces")
    func gpadlHeader() throws {
        let pfns: [UInt64] = (0..<26).map { 0x1000 + $0 }
        let message = GPADLHeader(
            childRelID: 5, gpadl: 0xE1E10, rangeBufferLength: GPADLHeader.rangeBufferLength(pfnCount: 40)!,
            byteCount: 40 * 4096, byteOffset: 0, pfns: pfns)
        try checkMessageContract(message, wrap: ChannelMessage.gpadlHeader)
        let bytes = message.bytes
        #expect(bytes.count == 236)
        #expect(le(bytes, 8, as: UInt32.self) == 5)
        #expect(le(bytes, 12, as: UInt32.self) == 0xE1E10)
        #expect(le(bytes, 16, as: UInt16.self) == 8 + 40 * 8)
        #expect(le(bytes, 18, as: UInt16.self) == 1)
        #expect(le(bytes, 20, as: UInt32.self) == 40 * 4096)
        #expect(le(bytes, 24, as: UInt32.self) == 0)
        #expect(le(bytes, 28, as: UInt64.self) == 0x1000)
        #expect(message.requiredPFNCount == 40)
        #expect(message.announcedPFNCount == 40)

        // A 2-page GPADL: range_buflen limits the PFNs even if the payload has more bytes.
        let small = GPADLHeader(
            childRelID: 5, gpadl: 1, rangeBufferLength: GPADLHeader.rangeBufferLength(pfnCount: 2)!,
            byteCount: 8192, byteOffset: 0, pfns: [7, 8])
        let padded = small.bytes + [UInt8](repeating: 0xFF, count: 16)
        #expect(try GPADLHeader(parsing: padded).pfns == [7, 8])
    }

    @Test("GPADL_HEADER with range_buflen below one range header is rejected")
    func gpadlHeaderShortRangeBuffer() {
        var bytes = GPADLHeader(childRelID: 1, gpadl: 1, rangeBufferLength: 8, byteCount: 0, byteOffset: 0, pfns: [])
            .bytes
        bytes[16] = 7
        #expect(throws: VMBusError.self) { try GPADLHeader(parsing: bytes) }
    }

    @Test("GPADL_BODY takes PFNs to the end of the payload, ignoring a partial word")
    func gpadlBody() throws {
        let message = GPADLBody(messageNumber: 0, gpadl: 0xE1E10, pfns: (0..<28).map { UInt64($0) << 12 })
        try checkMessageContract(message, wrap: ChannelMessage.gpadlBody)
        #expect(message.bytes.count == 240)
        let short = GPADLBody(gpadl: 1, pfns: [1, 2]).bytes + [0xAA, 0xBB]
        #expect(try GPADLBody(parsing: short).pfns == [1, 2])
    }

    @Test("Fixed-size channel messages round-trip at their Docs/hyperv-interface.md §6.2 sizes")
    func fixedSizeMessages() throws {
        try checkMessageContract(GPADLCreated(childRelID: 1, gpadl: 2, status: 3), wrap: ChannelMessage.gpadlCreated)
        try checkMessageContract(GPADLTeardown(childRelID: 4, gpadl: 5), wrap: ChannelMessage.gpadlTeardown)
        try checkMessageContract(GPADLTorndown(gpadl: 6), wrap: ChannelMessage.gpadlTorndown)
        try checkMessageContract(OpenResult(childRelID: 7, openID: 8, status: 9), wrap: ChannelMessage.openResult)
        try checkMessageContract(CloseChannel(childRelID: 10), wrap: ChannelMessage.closeChannel)
        try checkMessageContract(RescindOffer(childRelID: 11), wrap: ChannelMessage.rescindOffer)
        try checkMessageContract(RelIDReleased(childRelID: 12), wrap: ChannelMessage.relIDReleased)
        try checkMessageContract(ModifyChannel(childRelID: 13, targetVP: 14), wrap: ChannelMessage.modifyChannel)
        try checkMessageContract(
            ModifyChannelResponse(childRelID: 15, status: 16), wrap: ChannelMessage.modifyChannelResponse)
        #expect(GPADLCreated(childRelID: 1, gpadl: 2).bytes.count == 20)
        #expect(GPADLTeardown(childRelID: 1, gpadl: 2).bytes.count == 16)
        #expect(GPADLTorndown(gpadl: 1).bytes.count == 12)
        #expect(OpenResult(childRelID: 1, openID: 1).bytes.count == 20)
        #expect(CloseChannel(childRelID: 1).bytes.count == 12)
        #expect(ModifyChannel(childRelID: 1, targetVP: 1).bytes.count == 16)
        #expect(ModifyChannelResponse(childRelID: 1).bytes.count == 16)
        #expect(le(ModifyChannelResponse(childRelID: 0x33, status: 0x44).bytes, 12, as: UInt32.self) == 0x44)
        #expect(le(GPADLTorndown(gpadl: 0x55).bytes, 8, as: UInt32.self) == 0x55)
    }

    @Test("OPENCHANNEL is 148 bytes with user data at @28")
    func openChannel() throws {
        let message = OpenChannel(
            childRelID: 1, openID: 1, ringBufferGPADL: 0xE1E10, targetVP: 2, downstreamRingBufferPageOffset: 4,
            userData: [UInt8](repeating: 0x5A, count: 120))
        try checkMessageContract(message, wrap: ChannelMessage.openChannel)
        let bytes = message.bytes
        #expect(bytes.count == 148)
        #expect(le(bytes, 16, as: UInt32.self) == 0xE1E10)
        #expect(le(bytes, 20, as: UInt32.self) == 2)
        #expect(le(bytes, 24, as: UInt32.self) == 4)
        #expect(bytes[28] == 0x5A && bytes[147] == 0x5A)
    }

    @Test(
        "Types without a layout decode as .unknown and keep their bytes",
        arguments: [0, 18, 21, 23, 25, 29, 30, 0xFFFF_FFFF] as [UInt32])
    func unknownTypes(type: UInt32) throws {
        var payload: [UInt8] = [UInt8](repeating: 0, count: 12)
        for index in 0..<4 { payload[index] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(index))) }
        let message = try ChannelMessage(parsing: payload)
        #expect(message == .unknown(type: type, payload: payload))
        #expect(message.bytes == payload)
        #expect(message.type.rawValue == type)
    }

    @Test("A payload shorter than the 8-byte header is rejected")
    func shortHeader() {
        for length in 0..<8 {
            #expect(throws: VMBusError.self) { try ChannelMessage(parsing: [UInt8](repeating: 3, count: length)) }
        }
    }
}

@Suite("Channel messages under hostile input")
struct ChannelMessageHostileTests {
    @Test("Random payloads never trap, and parsed messages re-serialize stably")
    func randomPayloadsNeverTrap() throws {
        var generator = SeededGenerator(seed: 0x5EED_0001)
        var parsedCount = 0
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...260, using: &generator)
            var payload = generator.bytes(length)
            // Bias towards real message types so the per-type parsers see hostile fields.
            if length >= 4, Bool.random(using: &generator) {
                payload[0] = UInt8.random(in: 0...30, using: &generator)
                payload[1] = 0
                payload[2] = 0
                payload[3] = 0
            }
            guard let message = try? ChannelMessage(parsing: payload) else { continue }
            parsedCount += 1
            let reparsed = try ChannelMessage(parsing: message.bytes)
            #expect(reparsed == message)
        }
        #expect(parsedCount > 1000)
    }
}
