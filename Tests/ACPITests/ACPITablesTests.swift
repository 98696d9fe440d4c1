import HyperV
import Testing
@testable import ACPI

@Suite("ACPI table set (Docs/hyperv-interface.md §13.4)")
struct ACPITablesTests {
    static let base: UInt64 = 0xE_0000
    let blob: ACPIBlob

    init() throws {
        blob = try ACPITables.build(processorCount: 4, baseAddress: Self.base)
    }

    /// The table whose header is at guest physical `address`, sized by its length field.
    func table(at address: UInt64) throws -> [UInt8] {
        let offset = try #require(Int(exactly: address - blob.address))
        let length = try #require(blob.bytes.littleEndian(UInt32.self, at: offset + 4))
        try #require(offset + Int(length) <= blob.bytes.count)
        return Array(blob.bytes[offset..<(offset + Int(length))])
    }

    func signature(_ bytes: [UInt8]) -> String { String(decoding: bytes.prefix(4), as: UTF8.self) }
    func sum(_ bytes: some Collection<UInt8>) -> UInt8 { bytes.reduce(0, &+) }

    func xsdtEntries() throws -> [UInt64] {
        let rsdp = Array(blob.bytes.prefix(36))
        let xsdt = try table(at: try #require(rsdp.littleEndian(UInt64.self, at: 24)))
        return stride(from: 36, to: xsdt.count, by: 8).compactMap { xsdt.littleEndian(UInt64.self, at: $0) }
    }

    func tableBySignature(_ wanted: String) throws -> [UInt8] {
        for address in try xsdtEntries() where signature(try table(at: address)) == wanted {
            return try table(at: address)
        }
        if wanted == "DSDT" {
            let fadt = try tableBySignature("FACP")
            return try table(at: try #require(fadt.littleEndian(UInt64.self, at: 140)))
        }
        Issue.record("no \(wanted) table")
        return []
    }

    @Test func rsdpIsRevision2With36BytesAndBothChecksums() {
        let rsdp = Array(blob.bytes.prefix(36))
        #expect(blob.rsdpAddress == Self.base)
        #expect(String(decoding: rsdp.prefix(8), as: UTF8.self) == "RSD PTR ")
        #expect(rsdp[15] == 2)
        #expect(rsdp.littleEndian(UInt32.self, at: 20) == 36)
        #expect(sum(rsdp.prefix(20)) == 0)
        #expect(sum(rsdp) == 0)
        #expect(String(decoding: rsdp[9..<15], as: UTF8.self) == "HVSWFT")
    }

    @Test func rsdpIsOn16ByteBoundaryForTheBIOSAreaScan() {
        #expect(blob.rsdpAddress % 16 == 0)
    }

    @Test func xsdtPointsAtFACPAndAPIC() throws {
        let signatures = try xsdtEntries().map { signature(try table(at: $0)) }
        #expect(signatures == ["FACP", "APIC"])
    }

    @Test func everyTableChecksumsToZeroAndItsLengthIsItsByteCount() throws {
        for name in ["XSDT", "FACP", "APIC", "DSDT"] {
            let bytes = try #require(blob.table(name))
            #expect(sum(bytes) == 0, "\(name)")
            #expect(bytes.count == Int(Array(bytes).littleEndian(UInt32.self, at: 4) ?? 0), "\(name)")
            #expect(String(decoding: bytes[bytes.startIndex + 10..<bytes.startIndex + 16], as: UTF8.self) == "HVSWFT")
        }
        #expect(blob.tables.map(\.signature) == ["XSDT", "FACP", "APIC", "DSDT"])
        #expect(blob.tables.allSatisfy { $0.address % 16 == 0 && $0.address == Self.base + UInt64($0.offset) })
    }

    @Test func fadtIsRevision6Of276BytesAndHardwareReduced() throws {
        let fadt = try tableBySignature("FACP")
        #expect(fadt.count == 276)
        #expect(fadt[8] == 6)
        #expect(fadt[131] == FADT.minorVersion)
        let flags = try #require(fadt.littleEndian(UInt32.self, at: 112))
        #expect(flags & (1 << 20) != 0, "HW_REDUCED_ACPI")
        #expect(flags & (1 << 10) != 0, "RESET_REG_SUP")
    }

    @Test func fadtPointsAtTheDSDTThroughBothFields() throws {
        let fadt = try tableBySignature("FACP")
        let dsdt = try #require(blob.tables.first { $0.signature == "DSDT" })
        #expect(fadt.littleEndian(UInt32.self, at: 40) == UInt32(dsdt.address))
        #expect(fadt.littleEndian(UInt64.self, at: 140) == dsdt.address)
    }

    @Test func fadtResetAndSleepRegistersAreThePowerPort() throws {
        let fadt = try tableBySignature("FACP")
        let power = GenericAddress(addressSpace: 1, bitWidth: 8, bitOffset: 0, accessSize: 1, address: 0x3C0)
        #expect(GenericAddress(fadt, at: 116) == power)
        #expect(fadt[128] == PowerCommand.reset)
        #expect(GenericAddress(fadt, at: 244) == power)
        #expect(GenericAddress(fadt, at: 256) == power)
    }

    @Test func fadtBootArchitectureSaysNoVGANoRTCAndNo8042() throws {
        let fadt = try tableBySignature("FACP")
        let flags = try #require(fadt.littleEndian(UInt16.self, at: 109))
        #expect(flags & (1 << 2) != 0, "VGA not present")
        #expect(flags & (1 << 5) != 0, "CMOS RTC not present")
        #expect(flags & (1 << 1) == 0, "8042")
    }

    @Test func fadtNamesTheHypervisorVendor() throws {
        let fadt = try tableBySignature("FACP")
        #expect(String(decoding: fadt[268..<276], as: UTF8.self) == FADT.hypervisorVendor)
    }

    @Test(arguments: [1, 4, 64, 254])
    func madtHasOneLocalAPICPerProcessorThenTheIOAPICAndIRQ0Override(processors: Int) throws {
        let blob = try ACPITables.build(processorCount: processors, ioapicAddress: 0xFEC0_0000, baseAddress: Self.base)
        let madt = Array(try #require(blob.table("APIC")))
        #expect(madt.littleEndian(UInt32.self, at: 36) == 0xFEE0_0000)
        #expect(madt.littleEndian(UInt32.self, at: 40) == 0, "PCAT_COMPAT is clear")
        var entries: [(type: UInt8, bytes: [UInt8])] = []
        var offset = 44
        while offset < madt.count {
            let length = Int(madt[offset + 1])
            try #require(length >= 2 && offset + length <= madt.count)
            entries.append((madt[offset], Array(madt[offset..<(offset + length)])))
            offset += length
        }
        #expect(entries.count == processors + 4)
        for (index, entry) in entries.prefix(processors).enumerated() {
            #expect(entry.type == 0)
            #expect(entry.bytes.count == 8)
            #expect(entry.bytes[2] == UInt8(index), "ACPI processor UID")
            #expect(entry.bytes[3] == UInt8(index), "APIC ID")
            #expect(entry.bytes.littleEndian(UInt32.self, at: 4) == 1, "enabled")
        }
        let ioapic = entries[processors]
        #expect(ioapic.type == 1)
        #expect(ioapic.bytes[2] == UInt8(processors))
        #expect(ioapic.bytes.littleEndian(UInt32.self, at: 4) == 0xFEC0_0000)
        #expect(ioapic.bytes.littleEndian(UInt32.self, at: 8) == 0)
        let override = entries[processors + 1]
        #expect(override.type == 2)
        #expect(override.bytes == [2, 10, 0, 0, 2, 0, 0, 0, 0, 0])
        // The IDE channels' IRQs, identity-mapped, so that Linux sets them up without an ACPI device.
        #expect(entries[processors + 2].bytes == [2, 10, 0, 14, 14, 0, 0, 0, 0, 0])
        #expect(entries[processors + 3].bytes == [2, 10, 0, 15, 15, 0, 0, 0, 0, 0])
    }

    /// The legacy-PC flavour: not hardware-reduced, PCAT_COMPAT, a PM1a event and control block
    /// on the root's ports, SCI on IRQ 9; the DSDT and the rest as usual.
    @Test func legacyPCTablesDescribeAPM1BlockAndThe8259Pair() throws {
        let blob = try ACPITables.build(processorCount: 2, baseAddress: Self.base, legacyPC: true)
        let fadt = Array(try #require(blob.table("FACP")))
        let flags = try #require(fadt.littleEndian(UInt32.self, at: FADT.flagsOffset))
        #expect(flags & FADT.hardwareReducedACPI == 0)
        #expect(flags & FADT.resetRegisterSupported != 0)
        #expect(fadt.littleEndian(UInt16.self, at: FADT.sciInterruptOffset) == 9)
        #expect(fadt.littleEndian(UInt32.self, at: FADT.pm1aEventBlockOffset) == UInt32(PlatformPorts.pm1Event))
        #expect(fadt.littleEndian(UInt32.self, at: FADT.pm1aControlBlockOffset) == UInt32(PlatformPorts.pm1Control))
        #expect(fadt[FADT.pm1EventLengthOffset] == 4 && fadt[FADT.pm1ControlLengthOffset] == 2)
        #expect(GenericAddress(fadt, at: FADT.extendedPM1aControlBlockOffset)?.address == UInt64(PlatformPorts.pm1Control))
        #expect(GenericAddress(fadt, at: FADT.extendedPM1aEventBlockOffset)?.bitWidth == 32)
        let madt = Array(try #require(blob.table("APIC")))
        #expect(madt.littleEndian(UInt32.self, at: 40) == MADT.pcatCompatible)
        // The default stays hardware-reduced.
        let reduced = try ACPITables.build(processorCount: 2, baseAddress: Self.base)
        let reducedFADT = Array(try #require(reduced.table("FACP")))
        #expect(try #require(reducedFADT.littleEndian(UInt32.self, at: FADT.flagsOffset)) & FADT.hardwareReducedACPI != 0)
        #expect(reducedFADT.littleEndian(UInt32.self, at: FADT.pm1aControlBlockOffset) == 0)
    }

    @Test(arguments: [0, 255, -1])
    func processorCountsTheMADTCannotDescribeAreRejected(processors: Int) {
        #expect(throws: ACPIError.self) { try ACPITables.build(processorCount: processors, baseAddress: Self.base) }
    }

    @Test func misalignedOrTooHighBaseAddressesAreRejected() {
        #expect(throws: ACPIError.self) { try ACPITables.build(processorCount: 1, baseAddress: 0xE_0008) }
        #expect(throws: ACPIError.self) { try ACPITables.build(processorCount: 1, baseAddress: 0xFFFF_FF00) }
    }

    @Test func blobFitsTheBIOSAreaForAFullSizedPartition() throws {
        let blob = try ACPITables.build(processorCount: 254, baseAddress: Self.base)
        #expect(Self.base + UInt64(blob.bytes.count) <= 0x10_0000)
    }

    @Test func mmioWindowsBecomeQWordMemoryInVMODsCRS() throws {
        let blob = try ACPITables.build(processorCount: 1, baseAddress: Self.base,
                                        mmioWindows: [0xF800_0000..<0xFC00_0000, 0x10_0000_0000..<0x20_0000_0000])
        let root = try AMLDecoder.decode(table: Array(try #require(blob.table("DSDT"))))
        let crs = try #require(root.value(at: "\\_SB.VMOD._CRS")?.buffer)
        #expect(try ResourceTemplate.decode(crs) == [
            .qwordMemory(.mmio(0xF800_0000..<0xFC00_0000)),
            .qwordMemory(.mmio(0x10_0000_0000..<0x20_0000_0000)),
        ])
        #expect(throws: ACPIError.self) {
            try ACPITables.build(processorCount: 1, baseAddress: Self.base, mmioWindows: [0x1000..<0x1000])
        }
    }
}
