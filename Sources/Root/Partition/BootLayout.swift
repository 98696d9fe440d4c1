import GuestMemory
import HyperV
import KVM

/// The state the root builds for a 64-bit direct boot: a boot GDT, identity-mapped page
/// tables over the low 4 GiB, and the entry registers. Linux's 64-bit boot protocol uses the
/// same state (Docs/hyperv-interface.md §13.5), and so do the Embedded Swift guests.
///
///     0x1000  GDT: null, null, 0x10 flat 64-bit code, 0x18 flat data
///     0x2000  PML4
///     0x3000  PDPT
///     0x4000  four page directories of 2 MiB pages (0-4 GiB)
///     0x8000  boot information (the Linux zero page, or GuestBootInfo)
///     0x9000  command line / arguments
///     0x100000 and up: the image
public enum BootLayout {
    public static let gdtAddress: UInt64 = 0x1000
    public static let pml4Address: UInt64 = 0x2000
    public static let pdptAddress: UInt64 = 0x3000
    public static let pageDirectoryAddress: UInt64 = 0x4000
    public static let bootInfoAddress: UInt64 = GuestBootInfo.address
    public static let commandLineAddress: UInt64 = 0x9000
    /// The lowest address an image may occupy.
    public static let imageFloor: UInt64 = 0x10_0000

    public static let codeSelector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18

    /// The CPU state at entry.
    public static var entryState: LongModeEntryState {
        LongModeEntryState(code: .flatCode64(selector: codeSelector), data: .flatData(selector: dataSelector),
                           gdtBase: gdtAddress, gdtLimit: 4 * 8 - 1, cr3: pml4Address)
    }

    /// Writes the GDT and page tables into guest RAM.
    public static func writeTables(into memory: GuestMemory) throws(GuestMemoryError) {
        var gdt = [UInt8](repeating: 0, count: 32)
        gdt.storeLittleEndian(UInt64(0x00AF_9A00_0000_FFFF), at: 16)  // 0x10: code, L=1, P, DPL0
        gdt.storeLittleEndian(UInt64(0x00CF_9200_0000_FFFF), at: 24)  // 0x18: data, P, DPL0
        try memory.write(gdt, at: GuestPhysicalAddress(gdtAddress))

        var pml4 = [UInt8](repeating: 0, count: 4096)
        pml4.storeLittleEndian(pdptAddress | 0x3, at: 0)  // present, writable
        try memory.write(pml4, at: GuestPhysicalAddress(pml4Address))

        var pdpt = [UInt8](repeating: 0, count: 4096)
        var directories = [UInt8](repeating: 0, count: 4 * 4096)
        for gigabyte in 0..<4 {
            let directory = pageDirectoryAddress + UInt64(gigabyte) * 4096
            pdpt.storeLittleEndian(directory | 0x3, at: gigabyte * 8)
            for entry in 0..<512 {
                let physical = (UInt64(gigabyte) << 30) | (UInt64(entry) << 21)
                directories.storeLittleEndian(physical | 0x83, at: (gigabyte * 512 + entry) * 8)  // present, writable, 2 MiB
            }
        }
        try memory.write(pdpt, at: GuestPhysicalAddress(pdptAddress))
        try memory.write(directories, at: GuestPhysicalAddress(pageDirectoryAddress))
    }

    /// Copies an ELF image's segments into guest RAM. With `memoryIsZero` (a fresh memfd, which
    /// reads as zeros until written) the zero tails (.bss) are left alone: writing them would give
    /// every partition pages it may never use (the Embedded guest's .bss holds its 8 MiB heap).
    public static func load(_ image: ELFImage, into memory: GuestMemory, memoryIsZero: Bool = false) throws(BootError) {
        for segment in image.segments {
            guard segment.address >= imageFloor else {
                throw .doesNotFit("segment at 0x\(String(segment.address, radix: 16)) is below 1 MiB")
            }
            guard memory.contains(GuestPhysicalAddress(segment.address), length: Int(clamping: segment.memorySize)) else {
                throw .doesNotFit("segment at 0x\(String(segment.address, radix: 16)) of \(segment.memorySize) bytes "
                                  + "is beyond the partition's \(memory.size) bytes of RAM")
            }
            do throws(GuestMemoryError) {
                try memory.write(segment.fileBytes, at: GuestPhysicalAddress(segment.address))
                let tail = Int(segment.memorySize) - segment.fileBytes.count
                if tail > 0 && !memoryIsZero {
                    try memory.fill(0, at: GuestPhysicalAddress(segment.address + UInt64(segment.fileBytes.count)), count: tail)
                }
            } catch {
                throw .doesNotFit(error.description)
            }
        }
    }

    /// Writes the boot-information page for an Embedded Swift guest.
    public static func writeGuestBootInfo(
        into memory: GuestMemory, name: String, processorCount: Int, tscFrequencyHz: UInt64,
        arguments: String, freeMemoryStart: UInt64
    ) throws(BootError) {
        var info = [UInt8](repeating: 0, count: 4096)
        let argumentBytes = Array(arguments.utf8)
        let nameBytes = Array(name.utf8.prefix(GuestBootInfo.maximumNameLength))
        guard argumentBytes.count <= GuestBootInfo.maximumArgumentsLength else {
            throw .doesNotFit("arguments longer than \(GuestBootInfo.maximumArgumentsLength) bytes")
        }
        info.storeLittleEndian(GuestBootInfo.magic, at: GuestBootInfo.magicOffset)
        info.storeLittleEndian(UInt32(processorCount), at: GuestBootInfo.processorCountOffset)
        info.storeLittleEndian(UInt64(memory.size), at: GuestBootInfo.memorySizeOffset)
        info.storeLittleEndian(tscFrequencyHz, at: GuestBootInfo.tscFrequencyOffset)
        info.storeLittleEndian(UInt32(argumentBytes.count), at: GuestBootInfo.argumentsLengthOffset)
        info.replaceSubrange(GuestBootInfo.argumentsOffset..<(GuestBootInfo.argumentsOffset + argumentBytes.count),
                             with: argumentBytes)
        info.storeLittleEndian(freeMemoryStart, at: GuestBootInfo.freeMemoryStartOffset)
        info.storeLittleEndian(UInt32(nameBytes.count), at: GuestBootInfo.nameLengthOffset)
        info.replaceSubrange(GuestBootInfo.nameOffset..<(GuestBootInfo.nameOffset + nameBytes.count), with: nameBytes)
        do throws(GuestMemoryError) {
            try memory.write(info, at: GuestPhysicalAddress(bootInfoAddress))
        } catch {
            throw .doesNotFit(error.description)
        }
    }
}
