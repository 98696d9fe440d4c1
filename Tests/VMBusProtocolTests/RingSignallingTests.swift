import Testing
import VMBusProtocol

@Suite("Ring signalling (Docs/hyperv-interface.md §8.4-§8.6)")
struct RingSignallingTests {
    static let packet: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]  // 32 ring bytes each

    @Test("commit signals on the empty → non-empty transition when interrupt_mask is 0")
    func signalOnEmptyToNonEmpty() throws {
        let memory = makeRing(dataSize: 1024)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []

        #expect(writer.commit() == false, "nothing staged, nothing to signal")
        try writer.write(type: .inband, transactionID: 1, payload: Self.packet)
        try writer.write(type: .inband, transactionID: 2, payload: Self.packet)
        #expect(writer.commit() == true, "one signal for the whole batch")

        try writer.write(type: .inband, transactionID: 3, payload: Self.packet)
        #expect(writer.commit() == false, "the reader has not caught up: ring was not empty")

        _ = try reader.next(into: &buffer)
        _ = reader.commit()
        try writer.write(type: .inband, transactionID: 4, payload: Self.packet)
        #expect(writer.commit() == false, "partially drained ring is still non-empty")

        while try reader.next(into: &buffer) != nil {}
        _ = reader.commit()
        try writer.write(type: .inband, transactionID: 5, payload: Self.packet)
        #expect(writer.commit() == true, "drained ring went empty → non-empty again")
    }

    @Test("A set interrupt_mask suppresses the signal")
    func interruptMaskSuppresses() throws {
        let memory = makeRing(dataSize: 1024)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        reader.beginPolling()
        #expect(memory.control[RingControlWord.interruptMask.rawValue] == 1)
        try writer.write(type: .inband, transactionID: 1, payload: Self.packet)
        #expect(writer.commit() == false)
    }

    @Test("endPolling clears the mask and reports data that arrived while polling")
    func endPollingRecheck() throws {
        let memory = makeRing(dataSize: 1024)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []

        reader.beginPolling()
        try writer.write(type: .inband, transactionID: 1, payload: Self.packet)
        _ = writer.commit()
        while try reader.next(into: &buffer) != nil {}
        _ = reader.commit()
        // The producer slips a packet in after the drain but before the mask is cleared.
        try writer.write(type: .inband, transactionID: 2, payload: Self.packet)
        #expect(writer.commit() == false, "masked: no signal")
        #expect(reader.endPolling() == true, "the re-check must catch it")
        #expect(memory.control[RingControlWord.interruptMask.rawValue] == 0)

        while try reader.next(into: &buffer) != nil {}
        _ = reader.commit()
        #expect(reader.endPolling() == false)
    }

    @Test("The reader signals a blocked writer once free space crosses pending_send_sz")
    func pendingSendSizeCrossing() throws {
        let memory = makeRing(dataSize: 128)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []
        for id in 0..<3 { try writer.write(type: .inband, transactionID: UInt64(id), payload: Self.packet) }
        _ = writer.commit()
        var needed = 0
        do {
            try writer.write(type: .inband, transactionID: 9, payload: [UInt8](repeating: 0, count: 24))
        } catch {
            if case .full(let bytes) = error { needed = bytes }
        }
        #expect(needed == 48)
        writer.requestSpaceNotification(bytes: needed)
        #expect(memory.control[RingControlWord.pendingSendSize.rawValue] == 48)

        // Free is 32: consuming one packet makes it 64 > 48, crossing the threshold.
        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == true)
        try writer.write(type: .inband, transactionID: 9, payload: [UInt8](repeating: 0, count: 24))
        writer.clearSpaceNotification()
        #expect(memory.control[RingControlWord.pendingSendSize.rawValue] == 0)
        _ = writer.commit()
    }

    @Test("No signal when pending_send_sz is 0, not yet crossed, or already exceeded")
    func pendingSendSizeNoSignal() throws {
        let memory = makeRing(dataSize: 256)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []
        for id in 0..<7 { try writer.write(type: .inband, transactionID: UInt64(id), payload: Self.packet) }
        _ = writer.commit()  // 224 used, 32 free

        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == false, "pending_send_sz is 0")

        writer.requestSpaceNotification(bytes: 100)  // free is 64
        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == false, "free 96 has not crossed 100")
        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == true, "free 128 crossed 100")
        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == false, "already above: signal only once")
    }

    @Test("Free space exactly equal to pending_send_sz does not signal (the writer would still be full)")
    func pendingSendSizeBoundary() throws {
        let memory = makeRing(dataSize: 128)
        var writer = try RingWriter(memory: memory)
        var reader = try RingReader(memory: memory)
        var buffer: [UInt8] = []
        for id in 0..<3 { try writer.write(type: .inband, transactionID: UInt64(id), payload: Self.packet) }
        _ = writer.commit()  // free 32
        writer.requestSpaceNotification(bytes: 64)
        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == false, "free == 64 is still full for a 64-byte packet")
        #expect(throws: RingError.full(needed: 64)) {
            try writer.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 0, count: 40))
        }
        _ = try reader.next(into: &buffer)
        #expect(reader.commit() == true, "free 96 > 64")
    }
}
