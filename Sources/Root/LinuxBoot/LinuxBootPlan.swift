import HyperV

/// Where a 64-bit direct boot puts everything in guest physical memory, and the e820 map that
/// describes it (Docs/hyperv-interface.md §13.5; Documentation/x86/boot.rst "64-bit Boot
/// Protocol").
///
/// A pure computation: nothing touches guest RAM. The caller copies `regions`, builds the long
/// mode state (GDT and identity map over at least the low 4 GiB, which `BootLayout` keeps in
/// 0x1000..<0x8000), and enters `entryPoint` with RSI = `zeroPageAddress`.
///
///     0x0000_0000 ..< 0x0009_FC00  RAM      boot GDT/page tables (caller), zero page @ 0x8000,
///                                           command line @ 0x9000
///     0x0009_FC00 ..< 0x0010_0000  reserved EBDA, VGA hole, BIOS area; ACPI tables in 0xE0000..<0x100000
///     0x0010_0000 ..< memorySize   RAM      kernel @ pref_address for init_size bytes,
///                                           initrd page-aligned at the highest address allowed
public struct LinuxBootPlan: Sendable {
    /// The zero page's address (the same page Embedded Swift guests get `GuestBootInfo` in).
    public static let zeroPageAddress: UInt64 = GuestBootInfo.address
    /// The command line's address.
    public static let commandLineAddress: UInt64 = 0x9000
    /// The end of conventional low RAM; an EBDA-sized reserved area follows, as on PCs.
    public static let lowMemoryEnd: UInt64 = 0x9_FC00
    /// The start of the BIOS area, where the ACPI tables must lie (the RSDP scan range).
    public static let firmwareAreaStart: UInt64 = 0xE_0000
    /// The start of RAM above the legacy hole.
    public static let highMemoryStart: UInt64 = 0x10_0000
    /// The most RAM a plan describes: 3 GiB, keeping 3-4 GiB free for the IOAPIC, the local
    /// APICs and MMIO, since guest RAM is one contiguous range from 0.
    public static let maximumMemorySize: UInt64 = 0xC000_0000
    /// The initrd's alignment.
    public static let initrdAlignment: UInt64 = 4096

    /// What to copy, in ascending address order.
    public let regions: [LoadRegion]
    /// The 64-bit entry point: the kernel's load address + 0x200.
    public let entryPoint: UInt64
    /// The zero page's address, for RSI at entry.
    public let zeroPageAddress: UInt64
    /// The zero page as written.
    public let zeroPage: ZeroPage
    /// The memory map stored in the zero page.
    public let memoryMap: E820Map
    /// The memory the kernel owns from its load address: `init_size` bytes (or its file size).
    public let kernelRange: Range<UInt64>
    /// The initrd, if there is one.
    public let initrdRange: Range<UInt64>?
    /// The command line, including its terminating NUL.
    public let commandLineRange: Range<UInt64>

    /// Plans a boot.
    /// - Parameters:
    ///   - memorySize: bytes of guest RAM, one range from address 0.
    ///   - kernel: the parsed bzImage.
    ///   - initrd: the initial ramdisk; `nil` or empty boots without one.
    ///   - commandLine: the kernel command line, without a NUL.
    ///   - acpiTables: the ACPI tables and where their builder placed them, inside 0xE0000..<0x100000.
    /// - Throws: `.commandLineTooLong` or `.invalidCommandLine` for the command line,
    ///   `.doesNotFit` when RAM is too small or too large or the tables are misplaced.
    public init(
        memorySize: UInt64, kernel: BzImage, initrd: [UInt8]?, commandLine: String, acpiTables: ACPITablePlacement
    ) throws(LinuxBootError) {
        guard memorySize > Self.highMemoryStart, memorySize <= Self.maximumMemorySize else {
            throw .doesNotFit("\(memorySize) bytes of RAM; a Linux partition needs more than 1 MiB and at most "
                              + "\(Self.maximumMemorySize >> 20) MiB")
        }

        // Command line: a C string in low RAM.
        var commandLineBytes = Array(commandLine.utf8)
        guard !commandLineBytes.contains(0) else { throw .invalidCommandLine("it contains a NUL byte") }
        let commandLineLength = commandLineBytes.count
        commandLineBytes.append(0)
        let commandLineRange = Self.commandLineAddress..<(Self.commandLineAddress + UInt64(commandLineBytes.count))
        guard commandLineRange.upperBound <= Self.lowMemoryEnd else {
            throw .commandLineTooLong(length: commandLineLength,
                                      limit: Int(Self.lowMemoryEnd - Self.commandLineAddress) - 1)
        }

        // ACPI tables: inside the reserved BIOS area, with the RSDP inside them.
        let acpiSize = UInt64(acpiTables.bytes.count)
        guard acpiSize > 0, acpiTables.address >= Self.firmwareAreaStart, acpiTables.address < Self.highMemoryStart,
              acpiSize <= Self.highMemoryStart - acpiTables.address
        else {
            throw .doesNotFit("ACPI tables of \(acpiSize) bytes at 0x\(String(acpiTables.address, radix: 16)) "
                              + "are not inside 0xE0000..<0x100000")
        }
        guard acpiTables.rsdpAddress >= acpiTables.address, acpiTables.rsdpAddress - acpiTables.address < acpiSize else {
            throw .doesNotFit("the RSDP at 0x\(String(acpiTables.rsdpAddress, radix: 16)) is outside the ACPI tables")
        }

        let kernelRange = try Self.placeKernel(kernel, memorySize: memorySize)
        let initrdRange = try Self.placeInitrd(size: UInt64(initrd?.count ?? 0), kernel: kernel,
                                               above: kernelRange.upperBound, memorySize: memorySize)

        var map = E820Map()
        try map.append(address: 0, size: Self.lowMemoryEnd, type: .ram)
        try map.append(address: Self.lowMemoryEnd, size: Self.highMemoryStart - Self.lowMemoryEnd, type: .reserved)
        try map.append(address: Self.highMemoryStart, size: memorySize - Self.highMemoryStart, type: .ram)

        var zeroPage = ZeroPage(kernel: kernel)
        try zeroPage.setCommandLine(address: Self.commandLineAddress, length: commandLineLength)
        if let initrdRange {
            try zeroPage.setRamdisk(address: initrdRange.lowerBound, size: initrdRange.upperBound - initrdRange.lowerBound)
        }
        zeroPage.setMemoryMap(map)
        zeroPage.setACPIRSDPAddress(acpiTables.rsdpAddress)

        var regions = [
            LoadRegion(.zeroPage, address: Self.zeroPageAddress, bytes: zeroPage.bytes),
            LoadRegion(.commandLine, address: Self.commandLineAddress, bytes: commandLineBytes),
            LoadRegion(.acpiTables, address: acpiTables.address, bytes: acpiTables.bytes),
            LoadRegion(.kernel, address: kernelRange.lowerBound, source: kernel.bytes,
                       sourceRange: kernel.kernelOffset..<kernel.bytes.count),
        ]
        if let initrd, let initrdRange {
            regions.append(LoadRegion(.initrd, address: initrdRange.lowerBound, bytes: initrd))
        }

        self.regions = regions
        self.entryPoint = kernelRange.lowerBound + SetupHeader.entryOffset
        self.zeroPageAddress = Self.zeroPageAddress
        self.zeroPage = zeroPage
        self.memoryMap = map
        self.kernelRange = kernelRange
        self.initrdRange = initrdRange
        self.commandLineRange = commandLineRange
    }

    /// The kernel goes at `pref_address`, rounded up to `kernel_alignment` (and to 1 MiB) if it is
    /// relocatable. Loading lower gains nothing: the decompressor never places its buffer below
    /// LOAD_PHYSICAL_ADDR, which is what `pref_address` holds (arch/x86/boot/compressed/head_64.S).
    private static func placeKernel(_ kernel: BzImage, memorySize: UInt64) throws(LinuxBootError) -> Range<UInt64> {
        var address = kernel.preferredAddress
        if kernel.isRelocatable {
            // BzImage guarantees a power-of-two alignment of at least 4 KiB for relocatable kernels.
            let mask = UInt64(kernel.kernelAlignment) - 1
            let (raised, overflow) = max(address, highMemoryStart).addingReportingOverflow(mask)
            guard !overflow else { throw .doesNotFit("pref_address 0x\(String(address, radix: 16)) cannot be aligned") }
            address = raised & ~mask
        } else {
            guard address >= highMemoryStart else {
                throw .doesNotFit("a non-relocatable kernel wants pref_address 0x\(String(address, radix: 16)), below 1 MiB")
            }
        }
        let (end, overflow) = address.addingReportingOverflow(kernel.memoryFootprint)
        guard !overflow, end <= memorySize else {
            throw .doesNotFit("the kernel needs 0x\(String(kernel.memoryFootprint, radix: 16)) bytes (init_size) from "
                              + "0x\(String(address, radix: 16)) but RAM ends at 0x\(String(memorySize, radix: 16))")
        }
        return address..<end
    }

    /// The initrd goes page-aligned as high as RAM, `initrd_addr_max` and 4 GiB allow, above the
    /// kernel's `init_size` so the decompressor never overwrites it.
    private static func placeInitrd(
        size: UInt64, kernel: BzImage, above floor: UInt64, memorySize: UInt64
    ) throws(LinuxBootError) -> Range<UInt64>? {
        guard size > 0 else { return nil }
        // initrd_addr_max names the highest byte the initrd may occupy; it is 32-bit, so this
        // also keeps the initrd below 4 GiB whatever XLF_CAN_BE_LOADED_ABOVE_4G says.
        let ceiling = min(memorySize, UInt64(kernel.initrdAddressMax) + 1)
        guard size <= ceiling, (ceiling - size) & ~(initrdAlignment - 1) >= floor else {
            throw .doesNotFit("an initrd of \(size) bytes does not fit between the kernel's end at "
                              + "0x\(String(floor, radix: 16)) and 0x\(String(ceiling, radix: 16)) "
                              + "(the lower of RAM's end and initrd_addr_max + 1)")
        }
        let start = (ceiling - size) & ~(initrdAlignment - 1)
        return start..<(start + size)
    }
}
