import StorageProtocol
import StorageVSP
import Testing
import TestSupport

@Suite("SCSI disk device server: every command's answer (SPC-4, SBC-3, as Linux's sd probes it)")
struct SCSIDiskTests {
    let disk = SCSIDisk(configuration: testDisk(), maximumTransferBytes: 0x40000)

    static let vendor = ascii("Msft    ")
    static let product = ascii("Virtual Disk    ")

    @Test("Standard INQUIRY: direct access, SPC-3, CmdQue, Msft / Virtual Disk / 1.0")
    func standardInquiry() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(allocationLength: 36).bytes)))
        #expect(data == [0x00, 0x00, 0x05, 0x02, 0x1F, 0x00, 0x00, 0x02] + Self.vendor + Self.product + ascii("1.0 "))
        let parsed = try StandardInquiryData(parsing: data)
        #expect(parsed.commandQueueing && parsed.version == 5)
    }

    @Test("INQUIRY honours the allocation length but keeps the true length in byte 4")
    func inquiryAllocationLength() throws {
        var disk = disk
        let short = try #require(dataIn(run(&disk, InquiryCDB(allocationLength: 5).bytes)))
        #expect(short == [0x00, 0x00, 0x05, 0x02, 0x1F])
        let long = try #require(dataIn(run(&disk, InquiryCDB(allocationLength: 255).bytes)))
        #expect(long.count == 36)
        #expect(try #require(dataIn(run(&disk, InquiryCDB(allocationLength: 0).bytes))).isEmpty)
    }

    @Test("VPD 0x00 lists 00, 80, 83, B0, B1, B2")
    func supportedPages() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0x00, allocationLength: 255).bytes)))
        #expect(data == [0x00, 0x00, 0x00, 0x06, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])
        // Linux's first probe reads 4 bytes and needs a non-zero length (`scsi_vpd_inquiry`).
        let probe = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0x00, allocationLength: 4).bytes)))
        #expect(probe == [0x00, 0x00, 0x00, 0x06])
    }

    @Test("VPD 0x80: the serial number")
    func serialPage() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0x80, allocationLength: 255).bytes)))
        #expect(data == [0x00, 0x80, 0x00, 0x07] + ascii("SN-0001"))
    }

    @Test("VPD 0x83: one T10 vendor ID designator (ASCII, logical unit, type 1) of vendor, product, serial")
    func identificationPage() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0x83, allocationLength: 255).bytes)))
        #expect(data == [0x00, 0x83, 0x00, 35, 0x02, 0x01, 0x00, 31] + Self.vendor + Self.product + ascii("SN-0001"))
    }

    @Test("VPD 0xB0: 64 bytes with granularity, maximum transfer and the unmap fields Linux needs for UNMAP")
    func blockLimitsPage() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0xB0, allocationLength: 255).bytes)))
        var expected = [UInt8](repeating: 0, count: 64)
        expected[1] = 0xB0
        expected[3] = 0x3C
        expected[7] = 8  // optimal transfer length granularity: 4096 / 512
        expected[10] = 0x02  // maximum transfer length: 0x40000 / 512 = 0x200 blocks
        expected[21] = 0x40  // maximum unmap LBA count 0x400000
        expected[27] = 16  // maximum unmap block descriptor count
        expected[31] = 8  // optimal unmap granularity
        expected[32] = 0x80  // UGAVALID, alignment 0
        #expect(data == expected)
        let limits = BlockLimitsPage(page: try VitalProductDataPage(parsing: data))
        #expect(limits.maximumUnmapLBACount == 0x40_0000 && limits.unmapGranularityAlignment == 0)
    }

    @Test("VPD 0xB0 without discard has no unmap fields")
    func blockLimitsWithoutDiscard() throws {
        var disk = SCSIDisk(configuration: testDisk(discard: false), maximumTransferBytes: 0x40000)
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0xB0, allocationLength: 255).bytes)))
        #expect(data[20..<36].allSatisfy { $0 == 0 })
        #expect(data[10] == 0x02)
    }

    @Test("VPD 0xB1: non-rotating medium")
    func characteristicsPage() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0xB1, allocationLength: 255).bytes)))
        var expected = [UInt8](repeating: 0, count: 64)
        expected[1] = 0xB1
        expected[3] = 0x3C
        expected[5] = 0x01
        #expect(data == expected)
    }

    @Test("VPD 0xB2: LBPU and LBPRZ, thin provisioning with discard; nothing without")
    func provisioningPage() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0xB2, allocationLength: 255).bytes)))
        #expect(data == [0x00, 0xB2, 0x00, 0x04, 0x00, 0x84, 0x02, 0x00])
        var plain = SCSIDisk(configuration: testDisk(discard: false), maximumTransferBytes: 0x40000)
        let none = try #require(dataIn(run(&plain, InquiryCDB(vitalProductData: true, pageCode: 0xB2, allocationLength: 255).bytes)))
        #expect(none == [0x00, 0xB2, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00])
    }

    @Test("An unimplemented VPD page is ILLEGAL REQUEST, INVALID FIELD IN CDB pointing at byte 2")
    func unknownPage() {
        var disk = disk
        let outcome = run(&disk, InquiryCDB(vitalProductData: true, pageCode: 0x89, allocationLength: 255).bytes)
        #expect(sense(outcome) == .illegalRequest(.invalidFieldInCDB, cdbByte: 2, bit: 7))
    }

    @Test("READ CAPACITY(10): last LBA and block length")
    func readCapacity10() throws {
        var disk = disk
        #expect(dataIn(run(&disk, ReadCapacity10CDB().bytes)) == [0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00])
        var huge = SCSIDisk(configuration: testDisk(blockCount: 1 << 33), maximumTransferBytes: 0x40000)
        #expect(dataIn(run(&huge, ReadCapacity10CDB().bytes)) == [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x02, 0x00])
    }

    @Test("READ CAPACITY(16): last LBA, block length, physical exponent, LBPME and LBPRZ only with discard")
    func readCapacity16() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, ReadCapacity16CDB(allocationLength: 32).bytes)))
        #expect(data == [0, 0, 0, 0, 0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00, 0x00, 0x03, 0xC0, 0x00] + [UInt8](repeating: 0, count: 16))
        var plain = SCSIDisk(configuration: testDisk(blockSize: 4096, blockCount: 256, discard: false), maximumTransferBytes: 0x40000)
        let other = try #require(dataIn(run(&plain, ReadCapacity16CDB(allocationLength: 12).bytes)))
        #expect(other == [0, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0, 0x10, 0x00])
        let full = try ReadCapacity16Data(parsing: try #require(dataIn(run(&plain, ReadCapacity16CDB(allocationLength: 32).bytes))))
        #expect(!full.provisioningManagementEnabled && full.logicalBlocksPerPhysicalBlockExponent == 0)
    }

    @Test("MODE SENSE(6) caching page: block descriptor unless DBD, DPOFUA, WCE set, full length in byte 0")
    func modeSenseCaching() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, ModeSenseCDB(pageCode: 0x08, allocationLength: 255).bytes)))
        let caching: [UInt8] = [0x08, 0x12, 0x04] + [UInt8](repeating: 0, count: 17)
        #expect(data == [31, 0x00, 0x10, 0x08] + [0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00] + caching)
        // Linux's probe reads 4 bytes, then header[0] + 1 (`sd_read_cache_type`).
        let probe = try #require(dataIn(run(&disk, ModeSenseCDB(pageCode: 0x08, allocationLength: 4).bytes)))
        #expect(probe == [31, 0x00, 0x10, 0x08])
        let noDescriptors = try #require(dataIn(run(&disk, ModeSenseCDB(disableBlockDescriptors: true, pageCode: 0x08,
                                                                          allocationLength: 255).bytes)))
        #expect(noDescriptors == [23, 0x00, 0x10, 0x00] + caching)
        let parsed = try ModeParameterData(parsing: noDescriptors, isTenByte: false)
        #expect(try CachingModePage(parsing: try #require(parsed.page(0x08))).writeCacheEnabled)
        #expect(parsed.deviceSpecific.contains(.dpoAndFUASupported))
    }

    @Test("MODE SENSE tells the truth: WCE clear without a write cache, WP on a read-only disk")
    func modeSenseTruth() throws {
        var writeThrough = SCSIDisk(configuration: testDisk(writeCache: false), maximumTransferBytes: 0x40000)
        let data = try #require(dataIn(run(&writeThrough, ModeSenseCDB(disableBlockDescriptors: true, pageCode: 0x3F,
                                                                        allocationLength: 255).bytes)))
        #expect(data[2] == 0x10 && data[6] == 0x00)
        var readOnly = SCSIDisk(configuration: testDisk(readOnly: true), maximumTransferBytes: 0x40000)
        let header = try #require(dataIn(run(&readOnly, ModeSenseCDB(pageCode: 0x3F, allocationLength: 4).bytes)))
        #expect(header[2] == 0x90)
    }

    @Test("MODE SENSE(10) with LLBAA: 8-byte header, long LBA block descriptor, LONGLBA set")
    func modeSense10() throws {
        var disk = disk
        let data = try #require(dataIn(run(&disk, ModeSenseCDB(isTenByte: true, longLBAAccepted: true, pageCode: 0x08,
                                                                allocationLength: 255).bytes)))
        let header: [UInt8] = [0x00, 42, 0x00, 0x10, 0x01, 0x00, 0x00, 0x10]
        let descriptor: [UInt8] = [0, 0, 0, 0, 0, 0, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x02, 0x00]
        #expect(data == header + descriptor + [0x08, 0x12, 0x04] + [UInt8](repeating: 0, count: 17))
    }

    @Test("MODE SENSE: changeable values are all zero; saved values, other pages and subpages are refused")
    func modeSenseRefusals() throws {
        var disk = disk
        let changeable = try #require(dataIn(run(&disk, ModeSenseCDB(disableBlockDescriptors: true, pageControl: .changeable,
                                                                      pageCode: 0x08, allocationLength: 255).bytes)))
        #expect(changeable == [23, 0, 0x10, 0, 0x08, 0x12] + [UInt8](repeating: 0, count: 18))
        #expect(sense(run(&disk, ModeSenseCDB(pageControl: .saved, pageCode: 0x08, allocationLength: 255).bytes))?.additional
            == .savingParametersNotSupported)
        #expect(sense(run(&disk, ModeSenseCDB(pageCode: 0x0A, allocationLength: 255).bytes))
            == .illegalRequest(.invalidFieldInCDB, cdbByte: 2, bit: 5))
        #expect(sense(run(&disk, ModeSenseCDB(pageCode: 0x08, subpageCode: 1, allocationLength: 255).bytes))
            == .illegalRequest(.invalidFieldInCDB, cdbByte: 3, bit: 7))
        #expect(dataIn(run(&disk, ModeSenseCDB(pageCode: 0x3F, subpageCode: 0xFF, allocationLength: 255).bytes)) != nil)
    }

    @Test("READ and WRITE become image transfers; FUA passes through; zero blocks is GOOD")
    func transfers() {
        var disk = disk
        #expect(run(&disk, ReadWriteCDB(direction: .read, logicalBlockAddress: 8, transferLength: 8).bytes)
            == .read(offset: 4096, length: 4096, forceUnitAccess: false))
        #expect(run(&disk, ReadWriteCDB(direction: .write, size: 16, logicalBlockAddress: 2040, transferLength: 8,
                                        forceUnitAccess: true).bytes)
            == .write(offset: 2040 * 512, length: 4096, forceUnitAccess: true))
        #expect(run(&disk, ReadWriteCDB(direction: .read, size: 6, logicalBlockAddress: 0, transferLength: 1).bytes)
            == .read(offset: 0, length: 512, forceUnitAccess: false))
        #expect(run(&disk, ReadWriteCDB(direction: .read, logicalBlockAddress: 2048, transferLength: 0).bytes) == .good)
    }

    @Test("Without a write cache every write is FUA")
    func writeThrough() {
        var disk = SCSIDisk(configuration: testDisk(writeCache: false), maximumTransferBytes: 0x40000)
        #expect(run(&disk, ReadWriteCDB(direction: .write, logicalBlockAddress: 0, transferLength: 1).bytes)
            == .write(offset: 0, length: 512, forceUnitAccess: true))
    }

    @Test("LBAs past the end are LOGICAL BLOCK ADDRESS OUT OF RANGE, also when LBA + length overflows")
    func outOfRange() {
        var disk = disk
        let outOfRange = SenseData.illegalRequest(.logicalBlockAddressOutOfRange)
        #expect(sense(run(&disk, ReadWriteCDB(direction: .read, logicalBlockAddress: 2041, transferLength: 8).bytes)) == outOfRange)
        #expect(sense(run(&disk, ReadWriteCDB(direction: .write, logicalBlockAddress: 2049, transferLength: 0).bytes)) == outOfRange)
        #expect(sense(run(&disk, ReadWriteCDB(direction: .read, size: 16, logicalBlockAddress: UInt64.max - 2,
                                              transferLength: 8).bytes)) == outOfRange)
        #expect(sense(run(&disk, SynchronizeCacheCDB(logicalBlockAddress: 3000).bytes)) == outOfRange)
    }

    @Test("A transfer above the maximum transfer length is INVALID FIELD IN CDB at the length field")
    func oversizedTransfer() {
        var disk = disk
        #expect(sense(run(&disk, ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 513).bytes))
            == .illegalRequest(.invalidFieldInCDB, cdbByte: 7, bit: 7))
        #expect(sense(run(&disk, ReadWriteCDB(direction: .read, size: 16, logicalBlockAddress: 0, transferLength: 1024).bytes))
            == .illegalRequest(.invalidFieldInCDB, cdbByte: 10, bit: 7))
    }

    @Test("Protection information fields are refused")
    func protectionRefused() {
        var disk = disk
        var cdb = ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1)
        cdb.protect = 1
        #expect(sense(run(&disk, cdb.bytes)) == .illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 7))
    }

    @Test("A read-only disk refuses writes and UNMAP with DATA PROTECT, WRITE PROTECTED; flushes are GOOD")
    func readOnly() {
        var disk = SCSIDisk(configuration: testDisk(readOnly: true), maximumTransferBytes: 0x40000)
        let protected = SenseData(key: .dataProtect, additional: .writeProtected)
        #expect(sense(run(&disk, ReadWriteCDB(direction: .write, logicalBlockAddress: 0, transferLength: 1).bytes)) == protected)
        #expect(sense(run(&disk, UnmapCDB(parameterListLength: 24).bytes)) == protected)
        #expect(run(&disk, SynchronizeCacheCDB().bytes) == .good)
        #expect(run(&disk, ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes)
            == .read(offset: 0, length: 512, forceUnitAccess: false))
    }

    @Test("SYNCHRONIZE CACHE(10)/(16) flush")
    func synchronizeCache() {
        var disk = disk
        #expect(run(&disk, SynchronizeCacheCDB().bytes) == .flush)
        #expect(run(&disk, SynchronizeCacheCDB(isSixteenByte: true, logicalBlockAddress: 10, blockCount: 10).bytes) == .flush)
    }

    @Test("UNMAP asks for its parameter list, then yields byte ranges; zero-block descriptors are skipped")
    func unmap() {
        var disk = disk
        #expect(run(&disk, UnmapCDB(parameterListLength: 24).bytes) == .needsParameterList(length: 24))
        #expect(run(&disk, UnmapCDB(parameterListLength: 0).bytes) == .good)
        let list = UnmapParameterList(descriptors: [
            UnmapBlockDescriptor(logicalBlockAddress: 8, blockCount: 16), UnmapBlockDescriptor(logicalBlockAddress: 100, blockCount: 0),
            UnmapBlockDescriptor(logicalBlockAddress: 2040, blockCount: 8),
        ])
        #expect(disk.unmap(parameterList: list.bytes)
            == .unmap([ByteRange(offset: 4096, length: 8192), ByteRange(offset: 2040 * 512, length: 4096)]))
    }

    @Test("UNMAP validation: anchor, short list, range, descriptor count, total blocks; no discard, no UNMAP")
    func unmapValidation() {
        var disk = disk
        #expect(sense(run(&disk, UnmapCDB(anchor: true, parameterListLength: 24).bytes))
            == .illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 0))
        #expect(sense(run(&disk, UnmapCDB(parameterListLength: 7).bytes))?.additional == .parameterListLengthError)
        let past = UnmapParameterList(descriptors: [UnmapBlockDescriptor(logicalBlockAddress: 2047, blockCount: 2)])
        #expect(sense(disk.unmap(parameterList: past.bytes))?.additional == .logicalBlockAddressOutOfRange)
        let many = UnmapParameterList(descriptors: (0..<17).map { UnmapBlockDescriptor(logicalBlockAddress: UInt64($0), blockCount: 1) })
        #expect(sense(disk.unmap(parameterList: many.bytes)) == .invalidParameter(byte: 2, bit: 7))
        var big = SCSIDisk(configuration: testDisk(blockCount: 1 << 24), maximumTransferBytes: 0x40000)
        let tooMuch = UnmapParameterList(descriptors: [
            UnmapBlockDescriptor(logicalBlockAddress: 0, blockCount: 0x30_0000),
            UnmapBlockDescriptor(logicalBlockAddress: 0x30_0000, blockCount: 0x20_0000),
        ])
        #expect(sense(big.unmap(parameterList: tooMuch.bytes)) == .invalidParameter(byte: 24 + 8, bit: 7))
        #expect(sense(disk.unmap(parameterList: [0, 22, 0])).map(\.additional) == .parameterListLengthError)
        var plain = SCSIDisk(configuration: testDisk(discard: false), maximumTransferBytes: 0x40000)
        #expect(sense(run(&plain, UnmapCDB(parameterListLength: 24).bytes)) == .illegalRequest(.invalidCommandOperationCode))
    }

    @Test("TEST UNIT READY is GOOD; START STOP UNIT stops the unit (NOT READY 04/02) and starts it again")
    func startStop() {
        var disk = disk
        #expect(run(&disk, TestUnitReadyCDB().bytes) == .good)
        // A stop writes the cache to the medium first (SBC-3), unless NO_FLUSH is set.
        #expect(run(&disk, StartStopUnitCDB(start: false).bytes) == .flush)
        let notReady = SenseData(key: .notReady, additional: .notReadyInitializingCommandRequired)
        #expect(sense(run(&disk, TestUnitReadyCDB().bytes)) == notReady)
        #expect(sense(run(&disk, ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes)) == notReady)
        #expect(dataIn(run(&disk, RequestSenseCDB().bytes)) == notReady.bytes)
        #expect(dataIn(run(&disk, InquiryCDB().bytes)) != nil)
        // Power conditions other than START_VALID leave the state alone.
        #expect(run(&disk, StartStopUnitCDB(start: true, powerCondition: 2).bytes) == .good)
        #expect(sense(run(&disk, TestUnitReadyCDB().bytes)) == notReady)
        #expect(run(&disk, StartStopUnitCDB(start: true).bytes) == .good)
        #expect(run(&disk, TestUnitReadyCDB().bytes) == .good)
        var noFlush = StartStopUnitCDB(start: false)
        noFlush.noFlush = true
        #expect(run(&disk, noFlush.bytes) == .good)
        #expect(sense(run(&disk, TestUnitReadyCDB().bytes)) == notReady)
    }

    @Test("REQUEST SENSE: NO SENSE when nothing is pending, cut to the allocation length; descriptor format refused")
    func requestSense() {
        var disk = disk
        #expect(dataIn(run(&disk, RequestSenseCDB(allocationLength: 252).bytes)) == SenseData.noSense.bytes)
        #expect(dataIn(run(&disk, RequestSenseCDB(allocationLength: 8).bytes)) == [0x70, 0, 0, 0, 0, 0, 0, 0x0A])
        #expect(sense(run(&disk, RequestSenseCDB(descriptorFormat: true).bytes)) == .illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 0))
    }

    @Test("A capacity change is reported once as UNIT ATTENTION 2A/09, but not to INQUIRY")
    func capacityChange() {
        var disk = disk
        disk.resize(blockCount: 4096)
        #expect(dataIn(run(&disk, InquiryCDB().bytes)) != nil)
        #expect(sense(run(&disk, ReadCapacity16CDB().bytes)) == .unitAttention(.capacityDataHasChanged))
        #expect(dataIn(run(&disk, ReadCapacity10CDB().bytes)) == [0, 0, 0x0F, 0xFF, 0, 0, 0x02, 0x00])
        disk.resize(blockCount: 4096)
        #expect(run(&disk, TestUnitReadyCDB().bytes) == .good)
        disk.resize(blockCount: 1024)
        #expect(dataIn(run(&disk, RequestSenseCDB().bytes)) == SenseData.unitAttention(.capacityDataHasChanged).bytes)
        #expect(run(&disk, TestUnitReadyCDB().bytes) == .good)
        // No capacity a configuration could not have: READ CAPACITY reports the last block.
        #expect(!disk.resize(blockCount: 0) && !disk.resize(blockCount: UInt64.max / 256))
        #expect(disk.blockCount == 1024 && run(&disk, TestUnitReadyCDB().bytes) == .good)
        #expect(dataIn(run(&disk, ReadCapacity10CDB().bytes)) == [0, 0, 0x03, 0xFF, 0, 0, 0x02, 0x00])
    }

    @Test("Unknown opcodes are INVALID COMMAND OPERATION CODE; malformed CDBs INVALID FIELD IN CDB")
    func unknownCommands() {
        var disk = disk
        for opcode: UInt8 in [0x4D, 0x41, 0x93, 0xA3, 0x15, 0x2F] {
            var cdb = [UInt8](repeating: 0, count: 16)
            cdb[0] = opcode
            #expect(sense(run(&disk, cdb)) == .illegalRequest(.invalidCommandOperationCode), "opcode \(opcode)")
        }
        #expect(sense(run(&disk, [0x12, 0x02, 0, 0, 36, 0])) == .illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 1))
    }

    @Test("Disk configuration is validated: identity strings, block sizes, capacity, the MSFT/Virtual HD pair")
    func configurationValidation() {
        #expect(throws: Never.self) { try testDisk().validated() }
        var bad = testDisk()
        bad.vendor = "TooLongVendor"
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
        bad = testDisk(blockSize: 1024)
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
        bad = testDisk()
        bad.physicalBlockSize = 3000
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
        bad = testDisk(blockCount: 0)
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
        bad = testDisk(blockCount: UInt64.max / 256)
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
        bad = testDisk(serial: "tab\there")
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
        bad = testDisk()
        bad.vendor = "MSFT"
        bad.product = "Virtual HD"
        #expect(throws: SCSIDiskConfigurationError.self) { try bad.validated() }
    }
}
