import GuestMemory
@testable import Partition
import Testing

/// Embedded guest images come from users: an image's loadable segments are bounded in number and
/// disjoint, so loading one copies at most the partition's RAM once.
@Suite struct ELFImageTests {
    /// An x86-64 ET_EXEC whose program headers are `segments` (guest address, file size, memory
    /// size), each segment's file bytes at offset 0x1000.
    static func image(_ segments: [(address: UInt64, fileSize: UInt64, memorySize: UInt64)]) -> [UInt8] {
        var elf = [UInt8](repeating: 0, count: max(0x1000 + 0x2000, 64 + 56 * segments.count))
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            for index in 0..<(T.bitWidth / 8) { elf[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        elf.replaceSubrange(0..<8, with: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0])
        put(UInt16(2), at: 16)
        put(UInt16(0x3E), at: 18)
        put(UInt64(0x20_0000), at: 24)
        put(UInt64(64), at: 32)
        put(UInt16(56), at: 54)
        put(UInt16(segments.count), at: 56)
        for (index, segment) in segments.enumerated() {
            let header = 64 + 56 * index
            put(UInt32(1), at: header)
            put(UInt64(0x1000), at: header + 8)
            put(segment.address, at: header + 24)
            put(segment.fileSize, at: header + 32)
            put(segment.memorySize, at: header + 40)
        }
        for offset in 0x1000..<(0x1000 + 0x2000) { elf[offset] = UInt8(truncatingIfNeeded: offset) }
        return elf
    }

    @Test("disjoint segments load: file bytes copied, the rest of each segment left zero")
    func disjointSegmentsLoad() throws {
        let elf = try ELFImage(parsing: Self.image([(0x20_0000, 0x100, 0x1000), (0x20_1000, 0x2000, 0x2000)]))
        #expect(elf.segments.count == 2 && elf.end == 0x20_3000)
        let memory = try GuestMemory.create(name: "elf-test", size: 4 << 20)
        try BootLayout.load(elf, into: memory, memoryIsZero: true)
        #expect(try memory.read(at: GuestPhysicalAddress(0x20_0000), count: 0x100) == Array(elf.segments[0].fileBytes))
        #expect(try memory.read(at: GuestPhysicalAddress(0x20_0100), count: 0x10) == [UInt8](repeating: 0, count: 0x10))
        #expect(try memory.read(at: GuestPhysicalAddress(0x20_1000), count: 0x2000) == Array(elf.segments[1].fileBytes))
    }

    @Test("segments that overlap in memory are refused: loading would copy the same memory once per header")
    func overlappingSegmentsAreRefused() {
        #expect(throws: BootError.self) {
            _ = try ELFImage(parsing: Self.image([(0x20_0000, 0x2000, 0x2000), (0x20_1000, 0x100, 0x100)]))
        }
        #expect(throws: BootError.self) {
            _ = try ELFImage(parsing: Self.image(Array(repeating: (0x20_0000, 0x2000, 0x2000), count: 2)))
        }
        // Empty segments overlap nothing.
        #expect(throws: Never.self) {
            _ = try ELFImage(parsing: Self.image([(0x20_0000, 0x2000, 0x2000), (0x20_1000, 0, 0)]))
        }
    }

    @Test("more than 64 loadable segments are refused")
    func tooManySegmentsAreRefused() throws {
        let disjoint = (0..<65).map { (UInt64(0x20_0000 + 0x1000 * $0), UInt64(0x10), UInt64(0x1000)) }
        #expect(throws: BootError.self) { _ = try ELFImage(parsing: Self.image(disjoint)) }
        #expect(try ELFImage(parsing: Self.image(Array(disjoint.prefix(64)))).segments.count == 64)
    }
}
