import GuestMemory
import LinuxSupport
import Testing

@Suite("Guest memory accessors")
struct GuestMemoryTests {
    let memory = try! GuestMemory.create(name: "test", size: 1 << 20)

    @Test func valuesRoundTripLittleEndianAtAnyAlignment() throws {
        try memory.store(UInt64(0x1122_3344_5566_7788), at: GuestPhysicalAddress(0x1003))
        #expect(try memory.load(UInt64.self, at: GuestPhysicalAddress(0x1003)) == 0x1122_3344_5566_7788)
        #expect(try memory.read(at: GuestPhysicalAddress(0x1003), count: 2) == [0x88, 0x77])
    }

    @Test func accessesPastTheEndAreRejected() {
        let end = UInt64(1 << 20)
        #expect(throws: GuestMemoryError.outOfBounds(address: GuestPhysicalAddress(end - 4), length: 8)) {
            _ = try memory.load(UInt64.self, at: GuestPhysicalAddress(end - 4))
        }
        #expect(throws: GuestMemoryError.self) { try memory.write([1], at: GuestPhysicalAddress(end)) }
        #expect(throws: GuestMemoryError.self) { _ = try memory.read(at: GuestPhysicalAddress(0), count: (1 << 20) + 1) }
    }

    @Test func addressOverflowIsRejectedNotWrapped() {
        #expect(!memory.contains(GuestPhysicalAddress(UInt64.max - 2), length: 8))
        #expect(throws: GuestMemoryError.self) { _ = try memory.read(at: GuestPhysicalAddress(UInt64.max), count: 2) }
        #expect(!memory.contains(GuestPhysicalAddress(0), length: -1))
    }

    @Test func atomicsRequireNaturalAlignment() throws {
        #expect(throws: GuestMemoryError.misaligned(address: GuestPhysicalAddress(0x102), alignment: 4)) {
            _ = try memory.atomicLoad(UInt32.self, at: GuestPhysicalAddress(0x102), ordering: .acquiring)
        }
        #expect(throws: GuestMemoryError.self) {
            try memory.atomicOr(UInt64(1), at: GuestPhysicalAddress(0x104), ordering: .sequentiallyConsistent)
        }
    }

    @Test func atomicOrAndCompareExchangeBehave() throws {
        let word = GuestPhysicalAddress(0x200)
        #expect(try memory.atomicOr(UInt64(0b01), at: word, ordering: .sequentiallyConsistent) == 0)
        #expect(try memory.atomicOr(UInt64(0b10), at: word, ordering: .sequentiallyConsistent) == 0b01)
        #expect(try memory.load(UInt64.self, at: word) == 0b11)
        let small = GuestPhysicalAddress(0x300)
        try memory.atomicStore(5, at: small, ordering: .releasing)
        #expect(try memory.compareExchange(expected: 4, desired: 9, at: small) == (false, 5))
        #expect(try memory.compareExchange(expected: 5, desired: 9, at: small) == (true, 5))
    }

    @Test func aSecondMappingOfTheSameFileSeesTheSamePages() throws {
        let peer = try GuestMemory(mapping: memory.file.duplicate(), size: memory.size)
        try memory.write([0xAB, 0xCD], at: GuestPhysicalAddress(0x4000))
        #expect(try peer.read(at: GuestPhysicalAddress(0x4000), count: 2) == [0xAB, 0xCD])
    }

    @Test func mappingMoreThanTheFileIsRefused() throws {
        #expect(throws: SystemError.self) { _ = try GuestMemory(mapping: memory.file, size: 2 << 20) }
    }
}
