import HyperV

/// Builds the minimal ACPI table set a Linux partition needs: RSDP, XSDT, FADT, MADT and DSDT
/// (Docs/hyperv-interface.md §13.4).
public enum ACPITables {
    /// The IOAPIC's conventional address.
    public static let defaultIOAPICAddress: UInt32 = 0xFEC0_0000
    /// Processor Local APIC structures hold 8-bit APIC IDs, 0xFF is the broadcast ID and the
    /// IOAPIC takes the ID after the last processor.
    public static let processorLimit = 1...254
    /// Tables are aligned to this many bytes; the RSDP needs 16 for the BIOS-area scan.
    public static let alignment = 16

    /// Lays out the tables for `baseAddress`, typically 0xE0000.
    /// - Parameters:
    ///   - processorCount: virtual processors, with APIC IDs 0..<processorCount.
    ///   - ioapicAddress: the IOAPIC's MMIO address.
    ///   - baseAddress: where the blob will be copied; 16-byte aligned, with the whole blob below 4 GiB.
    ///   - mmioWindows: ranges to publish in `\_SB.VMOD._CRS` for VMBus MMIO; none by default.
    ///   - legacyPC: describe the legacy-PC platform (an 8259 pair, ISA IRQ numbers, a PM1 block)
    ///     instead of hardware-reduced ACPI (`FADT.build`).
    /// - Throws: `.invalidConfiguration` for a processor count outside 1...254, a misaligned or
    ///   too-high base address, or an empty MMIO window.
    public static func build(
        processorCount: Int, ioapicAddress: UInt32 = defaultIOAPICAddress, baseAddress: UInt64,
        mmioWindows: [Range<UInt64>] = [], legacyPC: Bool = false
    ) throws(ACPIError) -> ACPIBlob {
        guard processorLimit.contains(processorCount) else {
            throw .invalidConfiguration("\(processorCount) processors; the MADT describes 1 to 254")
        }
        guard baseAddress % UInt64(alignment) == 0 else {
            throw .invalidConfiguration("base address 0x\(String(baseAddress, radix: 16)) is not 16-byte aligned")
        }
        let dsdt = try DSDT.build(mmioWindows: mmioWindows)
        let madt = MADT.build(processorCount: processorCount, ioapicAddress: ioapicAddress, legacyPC: legacyPC)

        let xsdtOffset = aligned(RSDP.size)
        let fadtOffset = aligned(xsdtOffset + XSDT.size(entries: 2))
        let madtOffset = aligned(fadtOffset + FADT.size)
        let dsdtOffset = aligned(madtOffset + madt.count)
        let totalSize = dsdtOffset + dsdt.count
        let (end, overflow) = baseAddress.addingReportingOverflow(UInt64(totalSize))
        guard !overflow, end <= 1 << 32 else {
            throw .invalidConfiguration("tables at 0x\(String(baseAddress, radix: 16)) would cross 4 GiB, "
                                        + "beyond the FADT's 32-bit DSDT field")
        }

        let fadt = FADT.build(dsdtAddress: baseAddress + UInt64(dsdtOffset), legacyPC: legacyPC)
        let xsdt = XSDT.build(tables: [baseAddress + UInt64(fadtOffset), baseAddress + UInt64(madtOffset)])
        let rsdp = RSDP.build(xsdtAddress: baseAddress + UInt64(xsdtOffset))

        var bytes = [UInt8].zeros(totalSize)
        var tables: [ACPIBlob.Table] = []
        bytes.replaceSubrange(0..<rsdp.count, with: rsdp)
        for (signature, offset, table) in [(XSDT.signature, xsdtOffset, xsdt), (FADT.signature, fadtOffset, fadt),
                                           (MADT.signature, madtOffset, madt), (DSDT.signature, dsdtOffset, dsdt)] {
            bytes.replaceSubrange(offset..<(offset + table.count), with: table)
            tables.append(.init(signature: signature, address: baseAddress + UInt64(offset), offset: offset,
                                length: table.count))
        }
        return ACPIBlob(address: baseAddress, bytes: bytes, rsdpAddress: baseAddress, tables: tables)
    }

    private static func aligned(_ offset: Int) -> Int {
        (offset + alignment - 1) / alignment * alignment
    }
}
