import HyperV
import Testing
@testable import LinuxBoot

@Suite("Linux boot plan: guest physical layout (Docs/hyperv-interface.md §13.5)")
struct LinuxBootPlanTests {
    static let memorySize: UInt64 = 256 << 20
    static let acpi = ACPITablePlacement(address: 0xE_0000, bytes: [UInt8](repeating: 0xAC, count: 0x400),
                                         rsdpAddress: 0xE_0000)
    static let initrd = [UInt8](repeating: 0x1D, count: 0x12_3457)

    func plan(
        _ synthetic: SyntheticBzImage = SyntheticBzImage(), memorySize: UInt64 = memorySize,
        initrd: [UInt8]? = initrd, commandLine: String = "console=ttyS0 root=/dev/sda1",
        acpi: ACPITablePlacement = acpi
    ) throws -> LinuxBootPlan {
        try LinuxBootPlan(memorySize: memorySize, kernel: BzImage(parsing: synthetic.bytes), initrd: initrd,
                          commandLine: commandLine, acpiTables: acpi)
    }

    @Test func zeroPageAt0x8000AndCommandLineAt0x9000() throws {
        let plan = try plan()
        #expect(plan.zeroPageAddress == 0x8000)
        #expect(plan.commandLineRange == 0x9000..<(0x9000 + 29))
        let commandLine = try #require(plan.regions.first { $0.contents == .commandLine })
        #expect(Array(commandLine.bytes) == Array("console=ttyS0 root=/dev/sda1".utf8) + [0])
    }

    @Test func kernelLoadsAtPrefAddressAndEntersAt0x200() throws {
        let plan = try plan()
        #expect(plan.kernelRange == 0x100_0000..<0x300_0000)
        #expect(plan.entryPoint == 0x100_0200)
        let kernel = try #require(plan.regions.first { $0.contents == .kernel })
        #expect(kernel.address == 0x100_0000)
        #expect(kernel.count == SyntheticBzImage().payloadSize)
        #expect(kernel.bytes.first == SyntheticBzImage.payloadByte(0))
    }

    @Test func misalignedPrefAddressIsRoundedUpToKernelAlignment() throws {
        var synthetic = SyntheticBzImage()
        synthetic.preferredAddress = 0x100_1000
        #expect(try plan(synthetic).kernelRange.lowerBound == 0x120_0000)
        synthetic.preferredAddress = 0x8_0000
        #expect(try plan(synthetic).kernelRange.lowerBound == 0x20_0000)
    }

    @Test func nonRelocatableKernelBelow1MiBIsRejected() {
        var synthetic = SyntheticBzImage()
        synthetic.relocatable = 0
        synthetic.preferredAddress = 0x1_0000
        #expect(throws: LinuxBootError.self) { try plan(synthetic) }
    }

    @Test func initrdIsPageAlignedAtTheTopOfRAM() throws {
        let plan = try plan()
        let range = try #require(plan.initrdRange)
        #expect(range.lowerBound % 4096 == 0)
        #expect(range.upperBound - range.lowerBound == UInt64(Self.initrd.count))
        #expect(range.upperBound <= Self.memorySize)
        #expect(Self.memorySize - range.upperBound < 4096)
        #expect(plan.zeroPage.bytes.littleEndian(UInt32.self, at: 0x218) == UInt32(range.lowerBound))
        #expect(plan.zeroPage.bytes.littleEndian(UInt32.self, at: 0x21C) == UInt32(Self.initrd.count))
    }

    @Test func initrdStaysBelowInitrdAddrMaxAndAboveTheKernel() throws {
        var synthetic = SyntheticBzImage()
        synthetic.initrdAddressMax = 0x37FF_FFFF
        let plan = try plan(synthetic, memorySize: 2 << 30)
        let range = try #require(plan.initrdRange)
        #expect(range.upperBound - 1 <= 0x37FF_FFFF)
        #expect(range.lowerBound >= plan.kernelRange.upperBound)
    }

    @Test func initrdThatCannotClearTheKernelsInitSizeIsRejected() {
        #expect(throws: LinuxBootError.self) {
            try plan(memorySize: 0x300_0000 + 0x10_0000, initrd: [UInt8](repeating: 1, count: 0x20_0000))
        }
    }

    @Test func ramTooSmallForInitSizeIsRejected() {
        #expect(throws: LinuxBootError.self) { try plan(memorySize: 0x2FF_F000, initrd: nil) }
    }

    @Test func ramBeyondThreeGiBIsRejectedToKeepTheMMIOGap() {
        #expect(throws: LinuxBootError.self) { try plan(memorySize: 0xC000_1000) }
    }

    @Test func noInitrdLeavesTheRamdiskFieldsZero() throws {
        for initrd in [nil, [UInt8]()] {
            let plan = try plan(initrd: initrd)
            #expect(plan.initrdRange == nil)
            #expect(!plan.regions.contains { $0.contents == .initrd })
            #expect(plan.zeroPage.bytes.littleEndian(UInt32.self, at: 0x218) == 0)
            #expect(plan.zeroPage.bytes.littleEndian(UInt32.self, at: 0x21C) == 0)
        }
    }

    @Test func e820IsLowRAMThenTheReservedLegacyHoleThenRAMFrom1MiB() throws {
        let map = try plan().memoryMap
        #expect(map.entries == [
            E820Map.Entry(address: 0, size: 0x9_FC00, type: .ram),
            E820Map.Entry(address: 0x9_FC00, size: 0x6_0400, type: .reserved),
            E820Map.Entry(address: 0x10_0000, size: Self.memorySize - 0x10_0000, type: .ram),
        ])
    }

    @Test func zeroPageCarriesCommandLineE820AndRSDP() throws {
        let plan = try plan()
        let page = plan.zeroPage.bytes
        #expect(page.littleEndian(UInt32.self, at: 0x228) == 0x9000)
        #expect(page[0x1E8] == 3)
        #expect(page.littleEndian(UInt64.self, at: 0x070) == 0xE_0000)
        #expect(page[0x210] != 0)
        let region = try #require(plan.regions.first { $0.contents == .zeroPage })
        #expect(Array(region.bytes) == page)
    }

    @Test func regionsDoNotOverlapAndLieInRAMOrTheirReservedHome() throws {
        let plan = try plan()
        let sorted = plan.regions.sorted { $0.address < $1.address }
        #expect(sorted.map(\.address) == plan.regions.map(\.address))
        for (lower, upper) in zip(sorted, sorted.dropFirst()) {
            #expect(lower.guestRange.upperBound <= upper.address, "\(lower.contents) overlaps \(upper.contents)")
        }
        for region in plan.regions {
            #expect(region.guestRange.upperBound <= Self.memorySize)
            let expected: E820Map.EntryType = region.contents == .acpiTables ? .reserved : .ram
            #expect(plan.memoryMap.type(at: region.address) == expected, "\(region.contents)")
            #expect(plan.memoryMap.type(at: region.guestRange.upperBound - 1) == expected, "\(region.contents)")
        }
        let initrd = try #require(plan.initrdRange)
        #expect(plan.kernelRange.upperBound <= initrd.lowerBound)
    }

    @Test func acpiTablesOutsideTheBIOSAreaAreRejected() {
        let low = ACPITablePlacement(address: 0xD_F000, bytes: [1, 2, 3], rsdpAddress: 0xD_F000)
        let straddling = ACPITablePlacement(address: 0xF_FF00, bytes: [UInt8](repeating: 0, count: 0x200),
                                            rsdpAddress: 0xF_FF00)
        let strayRSDP = ACPITablePlacement(address: 0xE_0000, bytes: [1, 2, 3], rsdpAddress: 0xE_1000)
        for placement in [low, straddling, strayRSDP] {
            #expect(throws: LinuxBootError.self) { try plan(acpi: placement) }
        }
    }

    @Test func commandLineLongerThanCmdlineSizeIsRejected() {
        var synthetic = SyntheticBzImage()
        synthetic.commandLineSize = 16
        #expect(throws: LinuxBootError.commandLineTooLong(length: 17, limit: 16)) {
            try plan(synthetic, commandLine: String(repeating: "x", count: 17))
        }
        #expect(throws: Never.self) { try plan(synthetic, commandLine: String(repeating: "x", count: 16)) }
    }

    @Test func commandLineLongerThanOnePageIsPlacedWhenTheKernelAllowsIt() throws {
        var synthetic = SyntheticBzImage()
        synthetic.commandLineSize = 0xFFFF_FFFF
        let plan = try plan(synthetic, commandLine: String(repeating: "y", count: 0x8000))
        #expect(plan.commandLineRange.upperBound <= 0x9_FC00)
        #expect(plan.commandLineRange.upperBound > 0xA000)
        #expect(throws: LinuxBootError.self) {
            try self.plan(synthetic, commandLine: String(repeating: "y", count: 0x9_FC00 - 0x9000))
        }
    }

    @Test func commandLineWithANulByteIsRejected() {
        #expect(throws: LinuxBootError.invalidCommandLine("it contains a NUL byte")) {
            try plan(commandLine: "console=ttyS0\u{0}init=/bin/sh")
        }
    }
}
