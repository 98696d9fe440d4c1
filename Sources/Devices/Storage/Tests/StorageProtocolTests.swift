import StorageProtocol
import Testing
import TestSupport
import VMBusProtocol

@Suite("vstor_packet and vmscsi_request layouts (drivers/scsi/storvsc_drv.c)")
struct StorageProtocolTests {
    @Test("vstor_packet is 64 bytes: operation @0, flags @4, status @8, union @12")
    func packetLayout() throws {
        var packet = VStorPacket(operation: .queryProtocolVersion, flags: .requestCompletion, status: .revisionMismatch)
        packet.setField(UInt16(0x0602), at: 12)
        let bytes = packet.bytes
        #expect(bytes.count == 64)
        #expect(le(bytes, 0, as: UInt32.self) == 9)
        #expect(le(bytes, 4, as: UInt32.self) == 1)
        #expect(le(bytes, 8, as: UInt32.self) == 0xC000_0059)
        #expect(le(bytes, 12, as: UInt16.self) == 0x0602)
        let parsed = try VStorPacket(parsing: bytes)
        #expect(parsed == packet)
        #expect(try StorageVersionRequest(parsing: parsed).version == .win10)
    }

    @Test("Operations keep their Linux numbers and unknown values")
    func operationNumbers() {
        let expected: [(StorageOperation, UInt32)] = [
            (.completeIO, 1), (.removeDevice, 2), (.executeSRB, 3), (.resetLUN, 4), (.resetAdapter, 5), (.resetBus, 6),
            (.beginInitialization, 7), (.endInitialization, 8), (.queryProtocolVersion, 9), (.queryProperties, 10),
            (.enumerateBus, 11), (.fibreChannelHBAData, 12), (.createSubChannels, 13),
        ]
        for (operation, raw) in expected { #expect(operation.rawValue == raw) }
        #expect(StorageOperation(rawValue: 99).rawValue == 99)
    }

    @Test("A short union is kept with its length; fields past it read as absent")
    func shortUnion() throws {
        let bytes = VStorPacket(operation: .queryProtocolVersion).bytes
        let parsed = try VStorPacket(parsing: Array(bytes[0..<13]))
        #expect(parsed.bodyLength == 1)
        #expect(parsed.field(UInt16.self, at: 12) == nil)
        #expect(throws: StorageProtocolError.self) { try StorageVersionRequest(parsing: parsed) }
        #expect(throws: StorageProtocolError.self) { try VStorPacket(parsing: Array(bytes[0..<11])) }
        #expect(VStorPacket.operation(of: Array(bytes[0..<4]), from: 0, to: 4) == .queryProtocolVersion)
        #expect(VStorPacket.operation(of: Array(bytes[0..<3]), from: 0, to: 3) == nil)
    }

    @Test("Protocol versions: Linux's order, and the SRB size per version (52 from Win8, 36 before)")
    func versions() {
        #expect(StorageProtocolVersion.offeredByLinux.map(\.rawValue) == [0x0602, 0x0600, 0x0501])
        #expect(StorageProtocolVersion.win10.srbSize == 52)
        #expect(StorageProtocolVersion.win8.srbSize == 52)
        #expect(StorageProtocolVersion.win7.srbSize == 36)
        #expect(StorageProtocolVersion.win6.srbSize == 36)
        #expect(StorageProtocolVersion.win8.senseBufferSize == 20)
        #expect(StorageProtocolVersion.win7.senseBufferSize == 18)
        #expect(StorageProtocolVersion(major: 6, minor: 2) == .win10)
        #expect(StorageProtocolVersion.win10.major == 6 && StorageProtocolVersion.win10.minor == 2)
    }

    @Test("Channel properties: max_channel_cnt @16, flags @20, max_transfer_bytes @24")
    func properties() throws {
        var packet = VStorPacket(operation: .completeIO)
        StorageChannelProperties(maximumSubChannels: 7, flags: .supportsMultiChannel, maximumTransferBytes: 0x40000)
            .store(into: &packet)
        let bytes = packet.bytes
        #expect(le(bytes, 12, as: UInt32.self) == 0)
        #expect(le(bytes, 16, as: UInt16.self) == 7)
        #expect(le(bytes, 18, as: UInt16.self) == 0)
        #expect(le(bytes, 20, as: UInt32.self) == 1)
        #expect(le(bytes, 24, as: UInt32.self) == 0x40000)
        #expect(le(bytes, 28, as: UInt64.self) == 0)
        #expect(try StorageChannelProperties(parsing: packet).maximumSubChannels == 7)
        #expect(le(SubChannelRequest(count: 3).packet.bytes, 12, as: UInt16.self) == 3)
    }

    @Test("vmscsi_request fields sit at their real offsets, the Win8 extension from @48")
    func requestBlockOffsets() throws {
        var block = SCSIRequestBlock(pathID: 1, targetID: 1, lun: 5, cdb: [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0],
                                     dataDirection: .read, dataTransferLength: 4096,
                                     srbFlags: [.disableSynchronousTransfer, .dataIn], timeOutValue: 60)
        block.portNumber = 3
        block.queueTag = 0xFF
        block.queueAction = 0x20
        block.queueSortKey = 0xDEAD_BEEF
        let bytes = block.packet().bytes
        #expect(le(bytes, 0, as: UInt32.self) == 3)
        #expect(le(bytes, 4, as: UInt32.self) == 1)
        #expect(le(bytes, 12, as: UInt16.self) == 52)
        #expect(bytes[14] == 0 && bytes[15] == 0)
        #expect(bytes[16] == 3 && bytes[17] == 1 && bytes[18] == 1 && bytes[19] == 5)
        #expect(bytes[20] == 10 && bytes[21] == 20 && bytes[22] == 1 && bytes[23] == 0)
        #expect(le(bytes, 24, as: UInt32.self) == 4096)
        #expect(Array(bytes[28..<38]) == [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])
        #expect(le(bytes, 48, as: UInt16.self) == 0)
        #expect(bytes[50] == 0xFF && bytes[51] == 0x20)
        #expect(le(bytes, 52, as: UInt32.self) == 0x48)
        #expect(le(bytes, 56, as: UInt32.self) == 60)
        #expect(le(bytes, 60, as: UInt32.self) == 0xDEAD_BEEF)
        let parsed = try SCSIRequestBlock(parsing: VStorPacket(parsing: bytes), version: .win10)
        #expect(parsed == block)
        #expect(parsed.cdb == [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])
    }

    @Test("A pre-Win8 request block is 36 bytes: the extension is neither required nor read")
    func preWin8RequestBlock() throws {
        let bytes = SCSIRequestBlock(cdb: [0, 0, 0, 0, 0, 0], dataDirection: .noData, dataTransferLength: 0).packet().bytes
        let short = try VStorPacket(parsing: Array(bytes[0..<48]))
        let parsed = try SCSIRequestBlock(parsing: short, version: .win7)
        #expect(parsed.srbFlags == [] && parsed.timeOutValue == 0)
        #expect(throws: StorageProtocolError.self) { try SCSIRequestBlock(parsing: short, version: .win8) }
    }

    @Test("cdb_length outside 1...16 yields no CDB")
    func cdbLength() throws {
        var block = SCSIRequestBlock(cdb: [0x12, 0, 0, 0, 36, 0], dataDirection: .read, dataTransferLength: 36)
        var copied: [UInt8] = [0xFF]
        block.cdbLength = 0
        block.copyCDB(into: &copied)
        #expect(block.cdb == nil && block.cdbOpcode == nil && copied.isEmpty)
        block.cdbLength = 17
        block.copyCDB(into: &copied)
        #expect(block.cdb == nil && block.cdbOpcode == nil && copied.isEmpty)
        block.cdbLength = 16
        block.copyCDB(into: &copied)
        #expect(block.cdb?.count == 16 && block.cdbOpcode == 0x12 && copied == block.cdb)
        block.cdbLength = 6
        block.copyCDB(into: &copied)
        #expect(copied == [0x12, 0, 0, 0, 36, 0])
    }

    @Test("SRB status codes, flags and SCSI status values")
    func statusValues() {
        #expect(SRBStatus.success.rawValue == 0x01)
        #expect(SRBStatus.error.withValidSense.rawValue == 0x84)
        #expect(SRBStatus(rawValue: 0x84).code == .error)
        #expect(SRBStatus(rawValue: 0x84).hasValidSense)
        #expect(SRBStatus.invalidLUN.rawValue == 0x20 && SRBStatus.dataOverrun.rawValue == 0x12)
        #expect(SRBStatus.invalidRequest.rawValue == 0x06 && SRBStatus.busy.rawValue == 0x05)
        #expect(SCSIStatus.checkCondition.rawValue == 2 && SCSIStatus.busy.rawValue == 8)
    }

    @Test("GPA-direct header with one range: reserved @16, rangecount @20, len @24, offset @28, PFNs @32")
    func gpaDirectHeader() throws {
        let header = StorageGPADirectHeader(byteCount: 8192, byteOffset: 512, pfns: [0x10, 0x11, 0x12])
        let bytes = header.bytes
        #expect(bytes.count == 16 + 24)
        #expect(le(bytes, 0, as: UInt32.self) == 0)
        #expect(le(bytes, 4, as: UInt32.self) == 1)
        #expect(le(bytes, 8, as: UInt32.self) == 8192)
        #expect(le(bytes, 12, as: UInt32.self) == 512)
        #expect(le(bytes, 16, as: UInt64.self) == 0x10)
        #expect(try StorageGPADirectHeader(parsing: bytes, from: 0, to: bytes.count, maximumPages: 65) == header)
    }

    @Test("GPA-direct header: two ranges, an offset past the page, too many pages and short PFN lists are refused")
    func gpaDirectRejects() {
        let bytes = StorageGPADirectHeader(byteCount: 8192, byteOffset: 0, pfns: [1, 2]).bytes
        var twoRanges = bytes
        twoRanges[4] = 2
        #expect(throws: StorageProtocolError.rangeCount(2)) {
            try StorageGPADirectHeader(parsing: twoRanges, from: 0, to: twoRanges.count, maximumPages: 65)
        }
        var farOffset = bytes
        farOffset[13] = 0x10  // offset 4096
        #expect(throws: StorageProtocolError.rangeOffset(4096)) {
            try StorageGPADirectHeader(parsing: farOffset, from: 0, to: farOffset.count, maximumPages: 65)
        }
        var huge = bytes
        huge[11] = 0x10  // 256 MiB
        #expect(throws: StorageProtocolError.self) {
            try StorageGPADirectHeader(parsing: huge, from: 0, to: huge.count, maximumPages: 65)
        }
        #expect(throws: StorageProtocolError.self) {
            try StorageGPADirectHeader(parsing: bytes, from: 0, to: bytes.count - 8, maximumPages: 65)
        }
        #expect(throws: StorageProtocolError.self) {
            try StorageGPADirectHeader(parsing: bytes, from: 0, to: bytes.count, maximumPages: 1)
        }
    }

    @Test("Sense data: fixed format with key @2, additional length 10 @7, ASC/ASCQ @12, field pointer @15")
    func senseBytes() throws {
        let sense = SenseData.illegalRequest(.invalidFieldInCDB, cdbByte: 2, bit: 7)
        #expect(sense.bytes == [0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x24, 0x00, 0x00, 0xCF, 0x00, 0x02])
        #expect(try SenseData(parsing: sense.bytes) == sense)
        let attention = SenseData.unitAttention(.capacityDataHasChanged)
        #expect(attention.bytes == [0x70, 0, 0x06, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x2A, 0x09, 0, 0, 0, 0])
        let medium = SenseData(key: .mediumError, additional: .unrecoveredReadError, information: 0x1234)
        #expect(Array(medium.bytes[0..<7]) == [0xF0, 0, 0x03, 0, 0, 0x12, 0x34])
        #expect(try SenseData(parsing: medium.bytes).information == 0x1234)
        let descriptor = try SenseData(parsing: [0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0])
        #expect(descriptor.key == .illegalRequest && descriptor.additional == .invalidFieldInCDB)
        #expect(throws: StorageProtocolError.self) { try SenseData(parsing: [0x7F, 0, 5]) }
        #expect(throws: StorageProtocolError.self) { try SenseData(parsing: [0x70, 0, 5]) }
    }

    @Test("Common additional sense codes")
    func additionalSenseCodes() {
        let codes: [(AdditionalSense, UInt8, UInt8)] = [
            (.invalidCommandOperationCode, 0x20, 0), (.logicalBlockAddressOutOfRange, 0x21, 0), (.invalidFieldInCDB, 0x24, 0),
            (.logicalUnitNotSupported, 0x25, 0), (.invalidFieldInParameterList, 0x26, 0), (.writeProtected, 0x27, 0),
            (.capacityDataHasChanged, 0x2A, 0x09), (.parameterListLengthError, 0x1A, 0),
            (.notReadyInitializingCommandRequired, 0x04, 0x02), (.unrecoveredReadError, 0x11, 0), (.writeError, 0x0C, 0),
            (.spaceAllocationFailedWriteProtect, 0x27, 0x07), (.savingParametersNotSupported, 0x39, 0),
        ]
        for (sense, code, qualifier) in codes { #expect(sense.code == code && sense.qualifier == qualifier) }
    }

    @Test("Every parser of guest or host bytes is total over random input")
    func parsersAreTotal() {
        var generator = SeededGenerator(seed: 0x5707_A6E)
        for _ in 0..<20_000 {
            let bytes = generator.bytes(Int.random(in: 0...96, using: &generator))
            let start = Int.random(in: -2...(bytes.count + 2), using: &generator)
            let end = Int.random(in: -2...(bytes.count + 2), using: &generator)
            _ = try? VStorPacket(parsing: bytes, from: start, to: end)
            _ = VStorPacket.operation(of: bytes, from: start, to: end)
            _ = try? StorageGPADirectHeader(parsing: bytes, from: start, to: end, maximumPages: 65)
            if let packet = try? VStorPacket(parsing: bytes) {
                _ = try? SCSIRequestBlock(parsing: packet, version: .win10)
                _ = try? SCSIRequestBlock(parsing: packet, version: .win7)
                _ = try? StorageVersionRequest(parsing: packet)
                _ = try? StorageChannelProperties(parsing: packet)
                _ = try? SubChannelRequest(parsing: packet)
            }
            _ = try? SCSICommand(parsing: Array(bytes.prefix(16)))
            _ = try? SenseData(parsing: bytes)
            _ = try? StandardInquiryData(parsing: bytes)
            _ = try? VitalProductDataPage(parsing: bytes)
            _ = try? ReadCapacity10Data(parsing: bytes)
            _ = try? ReadCapacity16Data(parsing: bytes)
            _ = try? ReportLUNsData(parsing: bytes)
            _ = try? UnmapParameterList(parsing: bytes)
            _ = try? CachingModePage(parsing: bytes)
            if let data = try? ModeParameterData(parsing: bytes, isTenByte: bytes.first.map { $0 & 1 == 0 } ?? false) {
                _ = data.page(0x08)
            }
        }
    }
}
