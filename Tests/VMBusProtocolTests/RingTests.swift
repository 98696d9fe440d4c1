import Testing
import VMBusProtocol
import TestSupport

@Suite("Packet descriptor (Docs/hyperv-interface.md §9.1)")
struct PacketDescriptorTests {
    @Test("Descriptor is 16 bytes: type @0, offset8 @2, len8 @4, flags @6, trans_id @8")
    func layout() throws {
        let descriptor = PacketDescriptor(
            type: .completion, dataOffset8: 2, length8: 5, flags: .completionRequested,
            transactionID: 0x0102_0304_0506_0708)
        let bytes = descriptor.bytes
        #expect(hex(bytes) == "0b00" + "0200" + "0500" + "0100" + "0807060504030201")
        #expect(try PacketDescriptor(parsing: bytes) == descriptor)
        #expect(descriptor.payloadOffset == 16)
        #expect(descriptor.totalLength == 40)
    }

    @Test("Descriptor parsing rejects offset8 < 2, len8 < offset8 and short input")
    func rejects() {
        #expect(throws: PacketError.self) {
            try PacketDescriptor(
                parsing: PacketDescriptor(type: .inband, dataOffset8: 1, length8: 4, flags: [], transactionID: 0).bytes)
        }
        #expect(throws: PacketError.self) {
            try PacketDescriptor(
                parsing: PacketDescriptor(type: .inband, dataOffset8: 3, length8: 2, flags: [], transactionID: 0).bytes)
        }
        #expect(throws: PacketError.truncated(needed: 16, available: 15)) {
            try PacketDescriptor(parsing: [UInt8](repeating: 0, count: 15))
        }
        #expect(throws: PacketError.self) { try PacketDescriptor(parsing: [UInt8](repeating: 2, count: 32), at: -1) }
        #expect(throws: PacketError.self) { try PacketDescriptor(parsing: [UInt8](repeating: 2, count: 32), at: .max) }
    }
}

@Suite("Ring buffer data path (Docs/hyperv-interface.md §8, §9.1)")
struct RingDataPathTests {
    @Test("A written packet reads back with descriptor, payload, zero padding and trailer")
    func roundTrip() throws {
        let memory = makeRing(dataSize: 4096)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        try writer.write(type: .inband, flags: .completionRequested, transactionID: 42, payload: payload)
        #expect(reader.isEmpty(), "nothing is visible before commit")
        _ = writer.commit()
        #expect(!reader.isEmpty())

        var buffer: [UInt8] = []
        let descriptor = try #require(try reader.next(into: &buffer))
        #expect(descriptor.type == .inband)
        #expect(descriptor.flags == .completionRequested)
        #expect(descriptor.transactionID == 42)
        #expect(descriptor.dataOffset8 == 2)
        #expect(descriptor.length8 == 3)
        #expect(Array(buffer[16..<21]) == payload)
        #expect(Array(buffer[21..<24]) == [0, 0, 0])
        #expect(le(memory.data, 24, as: UInt64.self) == 0, "trailer holds the packet's start (0) << 32")
        #expect(try reader.next(into: &buffer) == nil)
        _ = reader.commit()
        #expect(memory.control[RingControlWord.readIndex.rawValue] == 32)
        #expect(memory.control[RingControlWord.writeIndex.rawValue] == 32)
    }

    @Test("The trailer is the packet's starting write index shifted left 32")
    func trailerValue() throws {
        let memory = makeRing(dataSize: 4096, start: 0x40)
        var writer = try RingWriter(memory: memory)
        try writer.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 9, count: 16))
        _ = writer.commit()
        #expect(le(memory.data, 0x40 + 32, as: UInt64.self) == 0x40 << 32)
    }

    @Test("An extra header sets offset8 past it (GPA-direct layout)")
    func extraHeaderOffset() throws {
        let memory = makeRing(dataSize: 4096)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        let header = GPADirectHeader(ranges: [GPARange(byteCount: 5000, byteOffset: 100, pfns: [0x10, 0x11])])
        try writer.write(type: .gpaDirect, transactionID: 7, header: header.bytes, payload: [0xAB, 0xCD])
        _ = writer.commit()
        var buffer: [UInt8] = []
        let descriptor = try #require(try reader.next(into: &buffer))
        #expect(descriptor.payloadOffset == 16 + 32)
        #expect(descriptor.totalLength == 16 + 32 + 8)
        #expect(try GPADirectHeader(packet: buffer, descriptor: descriptor) == header)
        #expect(buffer[48] == 0xAB && buffer[49] == 0xCD)
    }

    @Test("An extra header that is not a multiple of 8 is refused")
    func misalignedHeader() throws {
        var writer = try RingWriter(memory: makeRing(dataSize: 4096))
        #expect(throws: RingError.self) {
            try writer.write(type: .gpaDirect, transactionID: 0, header: [1, 2, 3], payload: [])
        }
    }

    /// (start offset, payload size) placing a split at the end of a 128-byte data area.
    @Test(
        "Packets split at the end of the data area read back intact",
        arguments: [
            (120, 8),  // descriptor straddles the end
            (88, 24),  // body ends exactly at the end; trailer wraps to offset 0
            (96, 40),  // payload straddles the end
            (112, 0),  // descriptor fills the last 16 bytes; trailer at offset 0
            (104, 30),  // descriptor straddles, payload with padding wraps
        ])
    func wrapCases(start: Int, payloadSize: Int) throws {
        let memory = makeRing(dataSize: 128, start: start)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        let payload = (0..<payloadSize).map { UInt8($0 &+ 0x80) }
        try writer.write(type: .inband, transactionID: UInt64(start), payload: payload)
        _ = writer.commit()
        let length = 16 + (payloadSize + 7) / 8 * 8
        let trailerOffset = (start + length) % 128
        #expect(le(memory.data, trailerOffset, as: UInt64.self) == UInt64(start) << 32)
        var buffer: [UInt8] = []
        let descriptor = try #require(try reader.next(into: &buffer))
        #expect(descriptor.transactionID == UInt64(start))
        #expect(descriptor.totalLength == length)
        #expect(Array(buffer[16..<(16 + payloadSize)]) == payload)
        #expect(try reader.next(into: &buffer) == nil)
        _ = reader.commit()
        #expect(Int(memory.control[RingControlWord.writeIndex.rawValue]) == (start + length + 8) % 128)
    }

    @Test("Many packets through a small ring wrap around intact (checksummed)")
    func wrapAroundStress() throws {
        var generator = SeededGenerator(seed: 0xA11CE)
        let dataSize = 256
        let memory = makeRing(dataSize: dataSize)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var expected: [(UInt64, [UInt8])] = []
        var buffer: [UInt8] = []
        var written = 0
        var read = 0
        var position = 0
        var descriptorSplits = 0
        var payloadSplits = 0
        var trailerAtZero = 0
        var nextID: UInt64 = 1

        while read < 5000 {
            // Produce a random burst until full.
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                let payload = generator.bytes(Int.random(in: 0...90, using: &generator))
                do {
                    try writer.write(type: .inband, transactionID: nextID, payload: payload)
                } catch {
                    guard case .full = error else { throw error }
                    break
                }
                let length = 16 + (payload.count + 7) / 8 * 8
                if position + 16 > dataSize && position < dataSize { descriptorSplits += 1 }
                if position + 16 < dataSize && position + length > dataSize { payloadSplits += 1 }
                if position + length == dataSize { trailerAtZero += 1 }
                position = (position + length + 8) % dataSize
                expected.append((nextID, payload))
                nextID += 1
                written += 1
            }
            _ = writer.commit()
            // Consume a random number of packets.
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                guard let descriptor = try reader.next(into: &buffer) else { break }
                let (id, payload) = expected.removeFirst()
                #expect(descriptor.transactionID == id)
                let body = Array(buffer[descriptor.payloadOffset..<(descriptor.payloadOffset + payload.count)])
                #expect(checksum(body) == checksum(payload))
                #expect(body == payload)
                read += 1
            }
            _ = reader.commit()
            let write = memory.control[RingControlWord.writeIndex.rawValue]
            let readIndex = memory.control[RingControlWord.readIndex.rawValue]
            #expect(write % 8 == 0 && write < UInt32(dataSize))
            #expect(readIndex % 8 == 0 && readIndex < UInt32(dataSize))
        }
        #expect(written >= read)
        #expect(descriptorSplits > 0)
        #expect(payloadSplits > 0)
        #expect(trailerAtZero > 0)
    }

    @Test("A reused buffer does not grow once it fits the largest packet")
    func bufferReuse() throws {
        let memory = makeRing(dataSize: 4096)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var buffer = [UInt8](repeating: 0xEE, count: 512)
        for size in [100, 3, 200] {
            try writer.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 1, count: size))
        }
        _ = writer.commit()
        while try reader.next(into: &buffer) != nil {}
        #expect(buffer.count == 512)
    }
}

/// A simple rolling checksum of a packet body.
func checksum(_ bytes: [UInt8]) -> UInt32 {
    bytes.reduce(UInt32(17)) { sum, byte in sum &* 31 &+ UInt32(byte) }
}

@Suite("Ring buffer fullness (Docs/hyperv-interface.md §8.3)")
struct RingFullnessTests {
    @Test("An empty ring reads nil and reports empty")
    func empty() throws {
        let memory = makeRing(dataSize: 128, start: 64)
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []
        #expect(reader.isEmpty())
        #expect(try reader.next(into: &buffer) == nil)
        #expect(reader.commit() == false)
    }

    @Test("The writer never fills the ring completely: free == needed counts as full")
    func neverFillsCompletely() throws {
        let memory = makeRing(dataSize: 128)
        var writer = try RingWriter(memory: memory)
        // Each packet with an 8-byte payload needs 16 + 8 + 8 = 32 ring bytes.
        for _ in 0..<3 { try writer.write(type: .inband, transactionID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8]) }
        #expect(writer.availableToWrite() == 32)
        #expect(throws: RingError.full(needed: 32)) {
            try writer.write(type: .inband, transactionID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])
        }
        // 24 bytes fit in 32 free: 8 remain, so read != write.
        try writer.write(type: .inband, transactionID: 0, payload: [])
        #expect(writer.availableToWrite() == 8)
        #expect(throws: RingError.full(needed: 24)) { try writer.write(type: .inband, transactionID: 0, payload: []) }
        _ = writer.commit()
        #expect(memory.control[RingControlWord.writeIndex.rawValue] == 120)
        #expect(memory.control[RingControlWord.readIndex.rawValue] == 0)
    }

    @Test("A failed write stages nothing")
    func fullStagesNothing() throws {
        let memory = makeRing(dataSize: 64)
        var writer = try RingWriter(memory: memory)
        try writer.write(type: .inband, transactionID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])
        _ = writer.commit()
        let before = memory.data
        #expect(throws: RingError.full(needed: 40)) {
            try writer.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 1, count: 16))
        }
        #expect(memory.data == before)
        #expect(writer.commit() == false)
        #expect(memory.control[RingControlWord.writeIndex.rawValue] == 32)
    }

    @Test("Packets larger than the ring or a u16 length8 are refused as too large")
    func tooLarge() throws {
        var writer = try RingWriter(memory: makeRing(dataSize: 64))
        #expect(throws: RingError.packetTooLarge(needed: 64)) {
            try writer.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 0, count: 40))
        }
        var big = try RingWriter(memory: makeRing(dataSize: 1 << 20))
        #expect(throws: RingError.self) {
            try big.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 0, count: 65535 * 8))
        }
    }
}
