import GuestMemory
import Testing

@Suite("Guest buffers as iovecs (GuestMemory.ioVectors)")
struct GuestIOVectorsTests {
    let memory: GuestMemory

    init() throws {
        memory = try GuestMemory.create(name: "iovec-test", size: 64 * 4096)
    }

    @Test("A GPA-direct range becomes per-page segments, merged where the pages are contiguous")
    func gpaDirectRange() throws {
        let vectors = try memory.ioVectors(byteOffset: 512, byteCount: 8192, pageNumbers: [5, 6, 9])
        #expect(vectors.byteCount == 8192)
        #expect(vectors.count == 2)
        #expect(vectors.ranges[0].address.rawValue == 5 * 4096 + 512 && vectors.ranges[0].length == 7680)
        #expect(vectors.ranges[1].address.rawValue == 9 * 4096 && vectors.ranges[1].length == 512)
        // O_DIRECT's test: every range's address and length a multiple of the alignment.
        #expect(vectors.isAligned(to: 512) && !vectors.isAligned(to: 4096))
        // The first pages of a longer list (a request shorter than its buffer).
        let prefix = try memory.ioVectors(byteOffset: 0, byteCount: 4096, pageNumbers: [12, 40, 41][..<1])
        #expect(prefix.count == 1 && prefix.ranges[0].address.rawValue == 12 * 4096 && prefix.isAligned(to: 4096))
        vectors.withUnsafeIOVectors { base, count in
            #expect(count == 2)
            #expect(base[0].iov_len == 7680 && base[1].iov_len == 512)
            let first = UInt(bitPattern: base[0].iov_base)
            let second = UInt(bitPattern: base[1].iov_base)
            let distance: UInt = 9 * 4096 - (5 * 4096 + 512)
            #expect(second - first == distance)
        }
    }

    @Test("Ranges outside RAM, wrong page counts, offsets past the page and too many ranges are refused")
    func refusals() {
        #expect(throws: GuestMemoryError.self) { try memory.ioVectors(byteOffset: 0, byteCount: 4096, pageNumbers: [64]) }
        #expect(throws: GuestMemoryError.self) { try memory.ioVectors(byteOffset: 0, byteCount: 4096, pageNumbers: [1, 2]) }
        #expect(throws: GuestMemoryError.self) { try memory.ioVectors(byteOffset: 4096, byteCount: 1, pageNumbers: [1, 2]) }
        #expect(throws: GuestMemoryError.self) {
            try memory.ioVectors([GuestMemorySegment(pageNumber: UInt64.max / 4096 + 1, offset: 0, length: 1)])
        }
        #expect(throws: GuestMemoryError.self) {
            try memory.ioVectors([GuestMemorySegment(pageNumber: UInt64.max / 4096, offset: 4095, length: 2)])
        }
        #expect(throws: GuestMemoryError.self) {
            try memory.ioVectors([GuestMemorySegment(pageNumber: 63, offset: 4000, length: 200)])
        }
        let scattered = (0..<1025).map { GuestMemorySegment(pageNumber: UInt64($0 % 32) * 2, offset: 0, length: 8) }
        #expect(throws: GuestMemoryError.self) { try memory.ioVectors(scattered) }
    }

    @Test("As many ranges as IOV_MAX are kept, each where it was validated; dropping a prefix leaves them")
    func fullCapacity() throws {
        let segments = (0..<GuestMemory.maximumIOVectors).map {
            GuestMemorySegment(pageNumber: UInt64($0 % 32) * 2, offset: UInt32($0 / 32) * 8, length: 8)
        }
        let vectors = try memory.ioVectors(segments)
        #expect(vectors.count == GuestMemory.maximumIOVectors && vectors.byteCount == 8 * GuestMemory.maximumIOVectors)
        let expected = segments.map { $0.pageNumber * 4096 + UInt64($0.offset) }
        let rest = try vectors.dropping(first: 12)
        #expect(rest.count == GuestMemory.maximumIOVectors - 1 && rest.ranges[0].address.rawValue == expected[1] + 4)
        #expect(vectors.ranges.map(\.address.rawValue) == expected)
        vectors.withUnsafeIOVectors { base, count in
            #expect(count == GuestMemory.maximumIOVectors)
            #expect((0..<count).allSatisfy { base[$0].iov_len == 8 })
        }
    }

    @Test("Bytes written through a buffer land in its pages and read back; dropping skips a prefix")
    func copyAndDrop() throws {
        let vectors = try memory.ioVectors(byteOffset: 100, byteCount: 6000, pageNumbers: [3, 7])
        let bytes = (0..<6000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        #expect(try memory.write(bytes, to: vectors) == 6000)
        #expect(try memory.read(at: GuestPhysicalAddress(7 * 4096), count: 4) == Array(bytes[3996..<4000]))
        #expect(try memory.read(from: vectors, count: 10_000) == bytes)
        let rest = try vectors.dropping(first: 4000)
        #expect(rest.byteCount == 2000 && rest.ranges[0].address.rawValue == 7 * 4096 + 4)
        #expect(try memory.read(from: rest, count: 2000) == Array(bytes[4000...]))
        #expect(try vectors.dropping(first: 7000).byteCount == 0)
    }
}
