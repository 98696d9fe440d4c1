import HyperV

/// A `boot_params` page for the 64-bit boot protocol (Docs/hyperv-interface.md §13.5;
/// Documentation/x86/zero-page.rst).
///
/// Starts zero-filled with the kernel's setup header copied to 0x1F1, `type_of_loader` 0xFF
/// (without it the kernel ignores the initrd) and LOADED_HIGH set. CAN_USE_HEAP stays clear:
/// `heap_end_ptr` is only read by the real-mode setup code, which a 64-bit boot never runs.
public struct ZeroPage: Sendable {
    /// The page, `BootParams.size` bytes.
    public private(set) var bytes: [UInt8]
    /// The kernel's `cmdline_size`.
    public let commandLineLimit: UInt32
    /// Whether the kernel accepts boot structures above 4 GiB.
    public let acceptsAddressesAbove4G: Bool

    /// `type_of_loader` for a loader without an assigned ID.
    public static let undefinedLoader: UInt8 = 0xFF

    /// A zero page carrying `kernel`'s setup header.
    public init(kernel: BzImage) {
        var bytes = [UInt8].zeros(BootParams.size)
        // A header longer than boot_params has room for would run into the EDD and e820 fields.
        let header = kernel.setupHeader.prefix(SetupHeader.zeroPageLimit - SetupHeader.start)
        bytes.replaceSubrange(SetupHeader.start..<(SetupHeader.start + header.count), with: header)
        // Fields the loader writes, whatever the file says: no initrd until `setRamdisk`, and no
        // setup_data list (a kernel file must not point the kernel at memory it chose).
        for field in [SetupHeader.ramdiskImage..<(SetupHeader.ramdiskSize + 4),
                      SetupHeader.setupData..<(SetupHeader.setupData + 8)] {
            bytes.replaceSubrange(field, with: [UInt8].zeros(field.count))
        }
        bytes[SetupHeader.typeOfLoader] = Self.undefinedLoader
        bytes[SetupHeader.loadFlags] |= LoadFlags.loadedHigh.rawValue
        self.bytes = bytes
        commandLineLimit = kernel.commandLineSize
        acceptsAddressesAbove4G = kernel.xLoadFlags.contains(.canBeLoadedAbove4G)
    }

    /// Points the kernel at a NUL-terminated command line of `length` bytes (NUL excluded).
    /// - Throws: `.commandLineTooLong` past `cmdline_size`; `.doesNotFit` above 4 GiB for a
    ///   kernel without XLF_CAN_BE_LOADED_ABOVE_4G.
    public mutating func setCommandLine(address: UInt64, length: Int) throws(LinuxBootError) {
        guard length >= 0, UInt64(length) <= UInt64(commandLineLimit) else {
            throw .commandLineTooLong(length: length, limit: Int(commandLineLimit))
        }
        try checkReachable(address, size: UInt64(length) + 1, what: "the command line")
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: address), at: SetupHeader.commandLinePointer)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: address >> 32), at: BootParams.extCommandLinePointer)
    }

    /// Points the kernel at an initrd of `size` bytes.
    /// - Throws: `.doesNotFit` above 4 GiB for a kernel without XLF_CAN_BE_LOADED_ABOVE_4G.
    public mutating func setRamdisk(address: UInt64, size: UInt64) throws(LinuxBootError) {
        try checkReachable(address, size: size, what: "the initrd")
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: address), at: SetupHeader.ramdiskImage)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: address >> 32), at: BootParams.extRamdiskImage)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: size), at: SetupHeader.ramdiskSize)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: size >> 32), at: BootParams.extRamdiskSize)
    }

    /// Stores `map` as `e820_entries` and `e820_table`.
    public mutating func setMemoryMap(_ map: E820Map) {
        let table = map.encoded
        let tableEnd = BootParams.e820Table + E820Map.maximumEntries * E820Map.entrySize
        bytes.replaceSubrange(BootParams.e820Table..<tableEnd, with: [UInt8].zeros(tableEnd - BootParams.e820Table))
        bytes.replaceSubrange(BootParams.e820Table..<(BootParams.e820Table + table.count), with: table)
        // E820Map holds at most 128 entries, so the count fits in its byte.
        bytes[BootParams.e820EntryCount] = UInt8(truncatingIfNeeded: map.entries.count)
    }

    /// Stores the RSDP's physical address in `acpi_rsdp_addr`.
    public mutating func setACPIRSDPAddress(_ address: UInt64) {
        bytes.storeLittleEndian(address, at: BootParams.acpiRSDPAddress)
    }

    private func checkReachable(_ address: UInt64, size: UInt64, what: String) throws(LinuxBootError) {
        let (end, overflow) = address.addingReportingOverflow(size)
        guard !overflow else { throw .doesNotFit("\(what) wraps the address space") }
        guard acceptsAddressesAbove4G || end <= 1 << 32 else {
            throw .doesNotFit("\(what) ends above 4 GiB and the kernel lacks XLF_CAN_BE_LOADED_ABOVE_4G")
        }
    }
}
