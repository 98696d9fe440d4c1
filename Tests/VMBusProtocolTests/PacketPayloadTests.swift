import Testing
import VMBusProtocol
import TestSupport

@Suite("GPA-direct and transfer-page headers (Docs/hyperv-interface.md §9.3)")
struct PacketPayloadTests {
    @Test("GPA-direct header round-trips with ⌈(offset + count) / 4096⌉ PFNs per range")
    func gpaDirectRoundTrip() throws {
        let header = GPADirectHeader(ranges: [
            GPARange(byteCount: 4096, byteOffset: 0, pfns: [0x100]),
            GPARange(byteCount: 7000, byteOffset: 200, pfns: [0x200, 0x201]),
            GPARange(byteCount: 0, byteOffset: 0, pfns: []),
        ])
        let bytes = header.bytes
        #expect(bytes.count == 8 + (8 + 8) + (8 + 16) + 8)
        #expect(le(bytes, 0, as: UInt32.self) == 0)
        #expect(le(bytes, 4, as: UInt32.self) == 3)
        #expect(le(bytes, 8, as: UInt32.self) == 4096)
        #expect(le(bytes, 16, as: UInt64.self) == 0x100)
        #expect(try GPADirectHeader(parsing: bytes, from: 0, to: bytes.count) == header)
    }

    @Test("GPA-direct header rejects counts and PFN lists that overrun the header")
    func gpaDirectRejects() {
        let bytes = GPADirectHeader(ranges: [GPARange(byteCount: 8192, byteOffset: 0, pfns: [1, 2])]).bytes
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: bytes, from: 0, to: bytes.count - 8) }
        var hugeCount = bytes
        hugeCount[4] = 0xFF
        hugeCount[7] = 0xFF
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: hugeCount, from: 0, to: hugeCount.count) }
        var hugeLength = bytes
        hugeLength[11] = 0xFF  // byte_count ≈ 4 GiB → a million PFNs
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: hugeLength, from: 0, to: hugeLength.count) }
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: bytes, from: 0, to: bytes.count + 1) }
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: bytes, from: 9, to: 8) }
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: bytes, from: -1, to: 8) }
        #expect(throws: PacketError.self) { try GPADirectHeader(parsing: [], from: 0, to: 0) }
    }

    @Test("Transfer-page header round-trips: pageset_id, sender_owns, ranges")
    func transferPageRoundTrip() throws {
        let header = TransferPageHeader(
            pageSetID: 0xCAFE, senderOwns: true,
            ranges: [
                TransferPageRange(byteCount: 1514, byteOffset: 0), TransferPageRange(byteCount: 60, byteOffset: 4096),
            ])
        let bytes = header.bytes
        #expect(bytes.count == 8 + 16)
        #expect(le(bytes, 0, as: UInt16.self) == 0xCAFE)
        #expect(bytes[2] == 1 && bytes[3] == 0)
        #expect(le(bytes, 4, as: UInt32.self) == 2)
        #expect(le(bytes, 8, as: UInt32.self) == 1514)
        #expect(le(bytes, 20, as: UInt32.self) == 4096)
        #expect(try TransferPageHeader(parsing: bytes, from: 0, to: bytes.count) == header)
    }

    @Test("Transfer-page header rejects range counts beyond the header")
    func transferPageRejects() {
        var bytes = TransferPageHeader(pageSetID: 1, ranges: [TransferPageRange(byteCount: 1, byteOffset: 2)]).bytes
        #expect(throws: PacketError.self) { try TransferPageHeader(parsing: bytes, from: 0, to: 15) }
        bytes[4] = 2
        #expect(throws: PacketError.self) { try TransferPageHeader(parsing: bytes, from: 0, to: bytes.count) }
        #expect(throws: PacketError.self) { try TransferPageHeader(parsing: bytes, from: 0, to: 7) }
    }

    @Test("Random header bytes never trap either parser")
    func randomHeadersNeverTrap() {
        var generator = SeededGenerator(seed: 0xFEED)
        for _ in 0..<20_000 {
            let bytes = generator.bytes(Int.random(in: 0...96, using: &generator))
            let start = Int.random(in: -2...(bytes.count + 2), using: &generator)
            let end = Int.random(in: -2...(bytes.count + 2), using: &generator)
            _ = try? GPADirectHeader(parsing: bytes, from: start, to: end)
            _ = try? TransferPageHeader(parsing: bytes, from: start, to: end)
            _ = try? PacketDescriptor(parsing: bytes, at: start)
        }
    }
}
