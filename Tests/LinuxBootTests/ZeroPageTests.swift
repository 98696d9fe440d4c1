import HyperV
import Testing
@testable import LinuxBoot

@Suite("Zero page (boot_params) fields (Docs/hyperv-interface.md §13.5)")
struct ZeroPageTests {
    let kernel: BzImage

    init() throws {
        kernel = try BzImage(parsing: SyntheticBzImage().bytes)
    }

    @Test func isOnePageWithTheSetupHeaderAt0x1F1() {
        let page = ZeroPage(kernel: kernel).bytes
        #expect(page.count == 4096)
        #expect(page.littleEndian(UInt32.self, at: 0x202) == 0x5372_6448)
        #expect(page.littleEndian(UInt64.self, at: 0x258) == 0x100_0000)
        #expect(page.littleEndian(UInt32.self, at: 0x260) == 0x200_0000)
        #expect(page[0x1F1] == 0x1B)
    }

    /// The initrd and setup_data fields are the loader's: a kernel file that fills them in
    /// cannot point the kernel at an initrd or a setup_data list the root did not place.
    @Test func theLoadersFieldsDoNotComeFromTheFile() throws {
        var image = SyntheticBzImage().bytes
        image.storeLittleEndian(UInt32(0x0123_4567), at: 0x218)
        image.storeLittleEndian(UInt32(0x89AB_CDEF), at: 0x21C)
        image.storeLittleEndian(UInt64(0x0000_0000_0009_F000), at: 0x250)
        let page = ZeroPage(kernel: try BzImage(parsing: image)).bytes
        #expect(page.littleEndian(UInt32.self, at: 0x218) == 0 && page.littleEndian(UInt32.self, at: 0x21C) == 0)
        #expect(page.littleEndian(UInt64.self, at: 0x250) == 0)
        #expect(page.littleEndian(UInt64.self, at: 0x258) == 0x100_0000, "the kernel's own fields stay")
    }

    @Test func sentinelStaysZeroSoTheKernelTrustsTheFields() {
        #expect(ZeroPage(kernel: kernel).bytes[0x1EF] == 0)
    }

    @Test func typeOfLoaderIsNonZeroOrTheInitrdIsIgnored() {
        #expect(ZeroPage(kernel: kernel).bytes[0x210] == 0xFF)
    }

    @Test func loadFlagsHaveLoadedHigh() {
        #expect(ZeroPage(kernel: kernel).bytes[0x211] & 0x01 == 0x01)
    }

    @Test func commandLinePointerAt0x228WithHighBitsAt0x0C8() throws {
        var page = ZeroPage(kernel: kernel)
        try page.setCommandLine(address: 0x9000, length: 100)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x228) == 0x9000)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x0C8) == 0)
        try page.setCommandLine(address: 0x1_2345_6000, length: 100)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x228) == 0x2345_6000)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x0C8) == 1)
    }

    @Test func commandLineLongerThanCmdlineSizeIsRejected() throws {
        var page = ZeroPage(kernel: kernel)
        try page.setCommandLine(address: 0x9000, length: 2047)
        #expect(throws: LinuxBootError.commandLineTooLong(length: 2048, limit: 2047)) {
            try page.setCommandLine(address: 0x9000, length: 2048)
        }
    }

    @Test func ramdiskFieldsAt0x218And0x21CWithHighBitsAt0x0C0And0x0C4() throws {
        var page = ZeroPage(kernel: kernel)
        try page.setRamdisk(address: 0x7F00_0000, size: 0x80_1234)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x218) == 0x7F00_0000)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x21C) == 0x80_1234)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x0C0) == 0)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x0C4) == 0)
        try page.setRamdisk(address: 0x2_0000_0000, size: 0x1_0000_0010)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x218) == 0)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x0C0) == 2)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x21C) == 0x10)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x0C4) == 1)
    }

    @Test func addressesAbove4GiBNeedXLFCanBeLoadedAbove4G() throws {
        var synthetic = SyntheticBzImage()
        synthetic.xLoadFlags = 0x01
        var page = ZeroPage(kernel: try BzImage(parsing: synthetic.bytes))
        #expect(throws: LinuxBootError.self) { try page.setRamdisk(address: 0xFFFF_F000, size: 0x2000) }
        #expect(throws: LinuxBootError.self) { try page.setCommandLine(address: 0x1_0000_0000, length: 1) }
        try page.setRamdisk(address: 0xFFFF_E000, size: 0x2000)
    }

    @Test func e820CountAt0x1E8AndTwentyByteEntriesAt0x2D0() throws {
        var map = E820Map()
        try map.append(address: 0, size: 0x9_FC00, type: .ram)
        try map.append(address: 0x9_FC00, size: 0x6_0400, type: .reserved)
        try map.append(address: 0x10_0000, size: 0x3FF0_0000, type: .ram)
        var page = ZeroPage(kernel: kernel)
        page.setMemoryMap(map)
        #expect(page.bytes[0x1E8] == 3)
        #expect(page.bytes.littleEndian(UInt64.self, at: 0x2D0) == 0)
        #expect(page.bytes.littleEndian(UInt64.self, at: 0x2D8) == 0x9_FC00)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x2E0) == 1)
        #expect(page.bytes.littleEndian(UInt64.self, at: 0x2E4) == 0x9_FC00)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x2F4) == 2)
        #expect(page.bytes.littleEndian(UInt64.self, at: 0x2F8) == 0x10_0000)
        #expect(page.bytes.littleEndian(UInt64.self, at: 0x300) == 0x3FF0_0000)
        #expect(page.bytes.littleEndian(UInt32.self, at: 0x308) == 1)
        #expect(page.bytes[0x30C] == 0)
    }

    @Test func acpiRSDPAddressAt0x070() {
        var page = ZeroPage(kernel: kernel)
        page.setACPIRSDPAddress(0xE_0000)
        #expect(page.bytes.littleEndian(UInt64.self, at: 0x070) == 0xE_0000)
    }

    @Test func anOverlongHeaderStopsBeforeTheEDDAndE820Fields() throws {
        var synthetic = SyntheticBzImage()
        synthetic.headerLengthByte = 0xFF  // claims to end at 0x301
        var bytes = synthetic.bytes
        for offset in 0x290..<0x301 { bytes[offset] = 0xEE }
        let page = ZeroPage(kernel: try BzImage(parsing: bytes)).bytes
        #expect(page[0x28F] == 0)
        #expect(page[0x290..<0x301].allSatisfy { $0 == 0 })
    }
}

@Suite("e820 map")
struct E820MapTests {
    @Test func encodesEachEntryAsAddressSizeType() throws {
        var map = E820Map()
        try map.append(address: 0x1000, size: 0x2000, type: .acpi)
        #expect(map.encoded == [0x00, 0x10, 0, 0, 0, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0])
    }

    @Test func holdsAtMost128Entries() throws {
        var map = E820Map()
        for index in 0..<128 { try map.append(address: UInt64(index) * 0x1000, size: 0x1000, type: .ram) }
        #expect(throws: LinuxBootError.self) { try map.append(address: 0x100_0000, size: 0x1000, type: .ram) }
    }

    @Test func rejectsEmptyWrappingAndOverlappingEntries() throws {
        var map = E820Map()
        try map.append(address: 0x1000, size: 0x1000, type: .ram)
        #expect(throws: LinuxBootError.self) { try map.append(address: 0x5000, size: 0, type: .ram) }
        #expect(throws: LinuxBootError.self) { try map.append(address: UInt64.max - 1, size: 4, type: .ram) }
        #expect(throws: LinuxBootError.self) { try map.append(address: 0x1FFF, size: 2, type: .reserved) }
        try map.append(address: 0x2000, size: 0x1000, type: .reserved)
        #expect(map.type(at: 0x1FFF) == .ram)
        #expect(map.type(at: 0x2000) == .reserved)
        #expect(map.type(at: 0x3000) == nil)
    }
}
