import Testing
import VMBusProtocol
import TestSupport

@Suite("Ring corruption from a hostile peer (Docs/hyperv-interface.md §8.7)")
struct RingCorruptionTests {
    /// A ring holding one committed 8-byte in-band packet at offset 0.
    func ringWithPacket(dataSize: Int = 256) throws -> FlatRingMemory {
        let memory = makeRing(dataSize: dataSize)
        var writer = try RingWriter(memory: memory)
        try writer.write(type: .inband, transactionID: 1, payload: [1, 2, 3, 4, 5, 6, 7, 8])
        _ = writer.commit()
        return memory
    }

    func expectCorrupt(_ memory: FlatRingMemory, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []
        #expect(sourceLocation: sourceLocation) {
            try reader.next(into: &buffer)
        } throws: { error in
            if case RingError.corrupt = error { return true }
            return false
        }
    }

    @Test("A descriptor offset8 below 2 is corrupt", arguments: [0, 1] as [UInt8])
    func offsetInsideDescriptor(offset8: UInt8) throws {
        let memory = try ringWithPacket()
        memory.data[2] = offset8
        try expectCorrupt(memory)
    }

    @Test("A descriptor len8 below offset8 is corrupt")
    func lengthBelowOffset() throws {
        let memory = try ringWithPacket()
        memory.data[2] = 3
        memory.data[4] = 2
        try expectCorrupt(memory)
    }

    @Test("A descriptor longer than the bytes available is corrupt", arguments: [4, 5, 0xFF] as [UInt8])
    func lengthBeyondAvailable(length8: UInt8) throws {
        let memory = try ringWithPacket()
        memory.data[4] = length8  // 32 bytes available: len8 3 + trailer fits, 4 does not
        memory.data[5] = length8 == 0xFF ? 0xFF : 0
        try expectCorrupt(memory)
    }

    @Test(
        "A write index that is misaligned or out of range is corrupt",
        arguments: [4, 33, 256, 1000, 0xFFFF_FFF8] as [UInt32])
    func badWriteIndex(write: UInt32) throws {
        let memory = try ringWithPacket()
        var reader = try RingReader(memory: memory)
        memory.control[RingControlWord.writeIndex.rawValue] = write
        var buffer: [UInt8] = []
        #expect(throws: RingError.corrupt("write index out of range or misaligned")) { try reader.next(into: &buffer) }
        #expect(!reader.isEmpty(), "a corrupt index must not look empty")
    }

    @Test("Fewer available bytes than a descriptor and trailer is corrupt")
    func tooFewBytes() throws {
        let memory = try ringWithPacket()
        memory.control[RingControlWord.writeIndex.rawValue] = 16
        try expectCorrupt(memory)
    }

    @Test("Attaching to a ring with bad indices or size fails")
    func attachValidation() throws {
        let misaligned = makeRing(dataSize: 256)
        misaligned.control[RingControlWord.readIndex.rawValue] = 12
        #expect(throws: RingError.self) { try RingReader(memory: misaligned) }
        #expect(throws: RingError.self) { try RingWriter(memory: misaligned) }

        let outOfRange = makeRing(dataSize: 256)
        outOfRange.control[RingControlWord.writeIndex.rawValue] = 256
        #expect(throws: RingError.self) { try RingReader(memory: outOfRange) }
        #expect(throws: RingError.self) { try RingWriter(memory: outOfRange) }

        #expect(throws: RingError.self) { try RingReader(memory: FlatRingMemory(dataSize: 0)) }
        #expect(throws: RingError.self) { try RingWriter(memory: FlatRingMemory(dataSize: 100)) }
    }

    @Test("A writer refuses to write when the reader's index is corrupt")
    func writerSeesCorruptReadIndex() throws {
        let memory = makeRing(dataSize: 256)
        var writer = try RingWriter(memory: memory)
        memory.control[RingControlWord.readIndex.rawValue] = 3
        #expect(throws: RingError.corrupt("read index out of range or misaligned")) {
            try writer.write(type: .inband, transactionID: 0, payload: [1])
        }
        #expect(writer.availableToWrite() == 0)
    }

    @Test("Random garbage in the control page and data area never traps the reader")
    func randomGarbageReader() throws {
        var generator = SeededGenerator(seed: 0xBAD_C0DE)
        var packets = 0
        var corruptions = 0
        for _ in 0..<400 {
            let dataSize = Int.random(in: 1...64, using: &generator) * 8
            let memory = FlatRingMemory(dataSize: dataSize)
            memory.data = generator.bytes(dataSize)
            let start = UInt32(Int.random(in: 0..<(dataSize / 8), using: &generator) * 8)
            memory.control[RingControlWord.readIndex.rawValue] = start
            memory.control[RingControlWord.writeIndex.rawValue] = start
            guard var reader = try? RingReader(memory: memory), var writer = try? RingWriter(memory: memory)
            else { continue }
            var buffer: [UInt8] = []
            for _ in 0..<25 {
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    // An honest packet, so valid descriptors get mixed with the garbage.
                    let payload = generator.bytes(Int.random(in: 0...24, using: &generator))
                    _ = try? writer.write(type: .inband, transactionID: 0, payload: payload)
                    _ = writer.commit()
                case 1:
                    // The hostile producer moves its index somewhere plausible...
                    memory.control[RingControlWord.writeIndex.rawValue] =
                        UInt32(Int.random(in: 0..<(dataSize / 8), using: &generator) * 8)
                case 2:
                    // ...or anywhere at all.
                    memory.control[RingControlWord.writeIndex.rawValue] = UInt32.random(
                        in: 0...UInt32.max, using: &generator)
                default:
                    let offset = Int.random(in: 0..<dataSize, using: &generator)
                    memory.data[offset] = UInt8.random(in: 0...255, using: &generator)
                }
                memory.control[RingControlWord.pendingSendSize.rawValue] = UInt32.random(
                    in: 0...UInt32.max, using: &generator)
                do {
                    if let descriptor = try reader.next(into: &buffer) {
                        packets += 1
                        #expect(descriptor.totalLength + 8 <= dataSize)
                        #expect(buffer.count >= descriptor.totalLength)
                    }
                } catch {
                    corruptions += 1
                }
                _ = reader.commit()
                _ = reader.endPolling()
            }
        }
        #expect(packets > 0)
        #expect(corruptions > 0)
    }

    @Test("Random garbage read indices never trap the writer")
    func randomGarbageWriter() throws {
        var generator = SeededGenerator(seed: 0x0DDBA11)
        for _ in 0..<300 {
            let dataSize = Int.random(in: 1...64, using: &generator) * 8
            let memory = makeRing(dataSize: dataSize)
            guard var writer = try? RingWriter(memory: memory) else { continue }
            for _ in 0..<20 {
                memory.control[RingControlWord.readIndex.rawValue] =
                    Bool.random(using: &generator)
                    ? UInt32(Int.random(in: 0..<(dataSize / 8), using: &generator) * 8)
                    : UInt32.random(in: 0...UInt32.max, using: &generator)
                memory.control[RingControlWord.interruptMask.rawValue] = UInt32.random(in: 0...1, using: &generator)
                let payload = generator.bytes(Int.random(in: 0...80, using: &generator))
                _ = try? writer.write(type: .inband, transactionID: 0, payload: payload)
                _ = writer.commit()
                _ = writer.availableToWrite()
            }
        }
    }
}
