import StorageProtocol
import Testing
import TestSupport

@Suite("CDB encoders and decoders (SPC-4, SBC-3)")
struct SCSICommandTests {
    @Test("READ and WRITE round-trip in all four sizes with LBA, length and FUA")
    func readWriteRoundTrip() throws {
        for direction in [ReadWriteCDB.Direction.read, .write] {
            for (size, lba, blocks) in [(6, UInt64(0x1F_FFFF), UInt32(255)), (10, 0xFFFF_FFFF, 0xFFFF), (12, 0x1234_5678, 0x10000),
                                        (16, 0x1_0000_0000, 7)] {
                let cdb = ReadWriteCDB(direction: direction, size: size, logicalBlockAddress: lba, transferLength: blocks,
                                       forceUnitAccess: size != 6)
                let bytes = cdb.bytes
                #expect(bytes.count == size)
                let parsed = try ReadWriteCDB(parsing: bytes)
                #expect(parsed == cdb)
                switch try SCSICommand(parsing: bytes) {
                case .read(let decoded): #expect(direction == .read && decoded == cdb)
                case .write(let decoded): #expect(direction == .write && decoded == cdb)
                default: Issue.record("\(bytes) decoded as something else")
                }
            }
        }
    }

    @Test("READ(10) as Linux's sd builds it: opcode 0x28, FUA @1 bit 3, LBA BE32 @2, blocks BE16 @7")
    func read10Layout() {
        let bytes = ReadWriteCDB(direction: .write, logicalBlockAddress: 0x0102_0304, transferLength: 0x0506, forceUnitAccess: true).bytes
        #expect(bytes == [0x2A, 0x08, 0x01, 0x02, 0x03, 0x04, 0x00, 0x05, 0x06, 0x00])
    }

    @Test("READ(6) with transfer length 0 means 256 blocks; the LBA is 21 bits")
    func read6() throws {
        let parsed = try ReadWriteCDB(parsing: [0x08, 0xFF, 0x12, 0x34, 0x00, 0x00])
        #expect(parsed.logicalBlockAddress == 0x1F_1234)
        #expect(parsed.transferLength == 256)
        #expect(!parsed.forceUnitAccess)
    }

    @Test("smallest picks READ(10) while LBA and length fit, READ(16) beyond")
    func smallest() {
        #expect(ReadWriteCDB.smallest(direction: .read, logicalBlockAddress: 5, transferLength: 8).size == 10)
        #expect(ReadWriteCDB.smallest(direction: .read, logicalBlockAddress: 1 << 32, transferLength: 8).size == 16)
        #expect(ReadWriteCDB.smallest(direction: .read, logicalBlockAddress: 0, transferLength: 0x10000).size == 16)
    }

    @Test("INQUIRY: EVPD, page code, allocation length BE16; CMDDT and a page without EVPD are invalid fields")
    func inquiry() throws {
        let bytes = InquiryCDB(vitalProductData: true, pageCode: 0x83, allocationLength: 0x0102).bytes
        #expect(bytes == [0x12, 0x01, 0x83, 0x01, 0x02, 0x00])
        #expect(try InquiryCDB(parsing: bytes) == InquiryCDB(vitalProductData: true, pageCode: 0x83, allocationLength: 0x102))
        #expect(throws: SCSICommandError.invalidField(byte: 1, bit: 1)) { try InquiryCDB(parsing: [0x12, 0x02, 0, 0, 36, 0]) }
        #expect(throws: SCSICommandError.invalidField(byte: 2, bit: 7)) { try InquiryCDB(parsing: [0x12, 0x00, 0x80, 0, 36, 0]) }
    }

    @Test("REPORT LUNS, READ CAPACITY(10)/(16), REQUEST SENSE, TEST UNIT READY layouts")
    func smallCommands() throws {
        #expect(ReportLUNsCDB(selectReport: 0, allocationLength: 4096).bytes == [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0])
        #expect(ReadCapacity16CDB(allocationLength: 32).bytes
            == [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0])
        #expect(throws: SCSICommandError.invalidField(byte: 1, bit: 4)) {
            try ReadCapacity16CDB(parsing: [0x9E, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0])
        }
        #expect(throws: SCSICommandError.invalidField(byte: 2, bit: 7)) {
            try ReadCapacity10CDB(parsing: [0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        }
        #expect(try ReadCapacity10CDB(parsing: [0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0]).partialMediumIndicator)
        #expect(RequestSenseCDB(allocationLength: 18).bytes == [0x03, 0, 0, 0, 18, 0])
        #expect(TestUnitReadyCDB().bytes == [0, 0, 0, 0, 0, 0])
        #expect(try SCSICommand(parsing: [0, 0, 0, 0, 0, 0]) == .testUnitReady)
    }

    @Test("MODE SENSE(6)/(10): DBD, LLBAA, page control, page, subpage, allocation length")
    func modeSense() throws {
        let six = ModeSenseCDB(disableBlockDescriptors: true, pageControl: .current, pageCode: 0x08, allocationLength: 4)
        #expect(six.bytes == [0x1A, 0x08, 0x08, 0x00, 0x04, 0x00])
        #expect(try ModeSenseCDB(parsing: six.bytes) == six)
        let ten = ModeSenseCDB(isTenByte: true, longLBAAccepted: true, pageControl: .changeable, pageCode: 0x3F,
                               subpageCode: 0xFF, allocationLength: 0x1234)
        #expect(ten.bytes == [0x5A, 0x10, 0x7F, 0xFF, 0, 0, 0, 0x12, 0x34, 0])
        #expect(try ModeSenseCDB(parsing: ten.bytes) == ten)
    }

    @Test("SYNCHRONIZE CACHE(10)/(16), UNMAP, START STOP UNIT layouts")
    func otherCommands() throws {
        let sync = SynchronizeCacheCDB(immediate: true, logicalBlockAddress: 0x10, blockCount: 0x20)
        #expect(sync.bytes == [0x35, 0x02, 0, 0, 0, 0x10, 0, 0, 0x20, 0])
        let sync16 = SynchronizeCacheCDB(isSixteenByte: true, logicalBlockAddress: 1 << 40, blockCount: 9)
        #expect(try SynchronizeCacheCDB(parsing: sync16.bytes) == sync16)
        #expect(UnmapCDB(parameterListLength: 24).bytes == [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0])
        #expect(StartStopUnitCDB(start: true, immediate: true).bytes == [0x1B, 1, 0, 0, 1, 0])
        #expect(try StartStopUnitCDB(parsing: [0x1B, 0, 0, 0, 0x32, 0]).powerCondition == 3)
    }

    @Test("UNMAP parameter list: Linux's 24-byte list, SBC truncation rules, 1-7 bytes refused")
    func unmapParameterList() throws {
        let list = UnmapParameterList(descriptors: [UnmapBlockDescriptor(logicalBlockAddress: 0x1000, blockCount: 8)])
        #expect(list.bytes == [0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 8, 0, 0, 0, 0])
        #expect(try UnmapParameterList(parsing: list.bytes) == list)
        // A descriptor length that is not a multiple of 16 drops the partial descriptor.
        var partial = list.bytes
        partial[3] = 15
        #expect(try UnmapParameterList(parsing: partial).descriptors.isEmpty)
        // The transferred bytes bound the list whatever the lengths say.
        #expect(try UnmapParameterList(parsing: Array(list.bytes[0..<20])).descriptors.isEmpty)
        #expect(try UnmapParameterList(parsing: []).descriptors.isEmpty)
        #expect(throws: StorageProtocolError.self) { try UnmapParameterList(parsing: [0, 22, 0]) }
    }

    @Test("Truncated CDBs, empty CDBs and unknown opcodes decode to typed results")
    func decodeErrors() {
        #expect(throws: SCSICommandError.empty) { try SCSICommand(parsing: []) }
        #expect(throws: SCSICommandError.truncated(opcode: .read10, needed: 10, available: 6)) {
            try SCSICommand(parsing: [0x28, 0, 0, 0, 0, 0])
        }
        #expect(throws: SCSICommandError.self) { try SCSICommand(parsing: [0x9E, 0x10, 0, 0]) }
        #expect((try? SCSICommand(parsing: [0x4D, 0, 0, 0, 0, 0, 0, 0, 0, 0])) == .unsupported(SCSIOperationCode(rawValue: 0x4D)))
        #expect(SCSIOperationCode.read16.groupLength == 16 && SCSIOperationCode.read12.groupLength == 12)
        #expect(SCSIOperationCode(rawValue: 0x7F).groupLength == nil)
    }
}
