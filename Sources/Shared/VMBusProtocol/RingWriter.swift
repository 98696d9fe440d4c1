import HyperV

/// The producer side of one VMBus ring (Docs/hyperv-interface.md §8).
///
/// `write` stages packets behind a local cursor; `commit` publishes them all at once with a
/// single release store of write_index and says whether the consumer needs a signal. The
/// consumer's read_index is treated as hostile: it is validated on every load.
///
/// Not thread-safe: one producer owns a ring's writer.
public struct RingWriter<Memory: RingMemory> {
    /// The ring's memory.
    public let memory: Memory
    /// Data size, cached at creation.
    @usableFromInline let dataSize: Int
    /// Where the next staged packet starts.
    @usableFromInline var cursor: Int
    /// The write_index value last published.
    @usableFromInline var published: Int
    /// Room for a descriptor, or for padding plus trailer; reused so writes do not allocate.
    @usableFromInline var scratch: [UInt8]

    /// Attaches to a ring, taking the current write_index as the cursor.
    /// - Throws: `RingError.corrupt` if the data size is not a positive multiple of 8 or either
    ///   index is out of range or misaligned.
    public init(memory: Memory) throws(RingError) {
        let dataSize = memory.dataSize
        guard RingLayout.isValidDataSize(dataSize) else {
            throw .corrupt("ring data size is not a positive multiple of 8")
        }
        guard let write = RingLayout.index(memory.loadControl(.writeIndex, ordering: .acquiring), dataSize: dataSize)
        else { throw .corrupt("write index out of range or misaligned") }
        guard RingLayout.index(memory.loadControl(.readIndex, ordering: .acquiring), dataSize: dataSize) != nil
        else { throw .corrupt("read index out of range or misaligned") }
        self.memory = memory
        self.dataSize = dataSize
        cursor = write
        published = write
        scratch = .zeros(PacketDescriptor.size)
    }

    /// Stages one packet after those already staged: the 16-byte descriptor, `header`, the
    /// payload padded to 8 bytes, and the trailer (this packet's start offset << 32). Copies are
    /// split at the end of the data area. Nothing is visible to the consumer until `commit()`.
    ///
    /// The ring is never filled completely: if the free space is not strictly greater than the
    /// packet's ring bytes, it counts as full, so equal indices always mean empty.
    /// - Parameters:
    ///   - header: extra descriptor bytes for GPA-direct or transfer-page packets (a multiple of 8);
    ///     the payload starts after it.
    /// - Throws: `RingError.full(needed:)` with nothing staged; `.packetTooLarge` or
    ///   `.invalidPacket` for packets that can never be written; `.corrupt` for a bad read_index.
    @inlinable
    public mutating func write(
        type: PacketType, flags: PacketFlags = [], transactionID: UInt64, header: [UInt8] = [], payload: [UInt8]
    ) throws(RingError) {
        guard header.count % RingLayout.alignment == 0 else {
            throw .invalidPacket("extra descriptor header is not a multiple of 8 bytes")
        }
        guard let needed = RingLayout.packetRingBytes(headerBytes: header.count, payloadBytes: payload.count) else {
            throw .packetTooLarge(needed: PacketDescriptor.size + header.count + payload.count + RingLayout.trailerSize)
        }
        guard needed < dataSize else { throw .packetTooLarge(needed: needed) }
        let read = try loadReadIndex()
        guard RingLayout.bytesFree(write: cursor, read: read, dataSize: dataSize) > needed else {
            throw .full(needed: needed)
        }

        // One copy of the memory for the whole write (see `RingReader.next`).
        let memory = self.memory
        let start = cursor
        let length = needed - RingLayout.trailerSize
        let descriptor = PacketDescriptor(
            type: type, dataOffset8: UInt16((PacketDescriptor.size + header.count) / 8),
            length8: UInt16(length / 8), flags: flags, transactionID: transactionID)
        descriptor.store(into: &scratch, at: 0)
        var position = start
        memory.writeWrapping(at: position, from: scratch, bufferOffset: 0, count: PacketDescriptor.size)
        position = memory.advance(position, by: PacketDescriptor.size)
        if !header.isEmpty {
            memory.writeWrapping(at: position, from: header, bufferOffset: 0, count: header.count)
            position = memory.advance(position, by: header.count)
        }
        if !payload.isEmpty {
            memory.writeWrapping(at: position, from: payload, bufferOffset: 0, count: payload.count)
            position = memory.advance(position, by: payload.count)
        }
        // Padding (0...7 zero bytes) and the trailer go out in one copy from the scratch buffer.
        let padding = length - PacketDescriptor.size - header.count - payload.count
        for index in 0..<padding { scratch[index] = 0 }
        scratch.storeLittleEndian(UInt64(start) << 32, at: padding)
        memory.writeWrapping(at: position, from: scratch, bufferOffset: 0, count: padding + RingLayout.trailerSize)
        cursor = memory.advance(start, by: needed)
    }

    /// Publishes every staged packet by storing write_index with release ordering, then issues a
    /// full barrier and decides whether to signal the consumer.
    /// - Returns: `true` only if the consumer's interrupt_mask is 0 and the consumer had read
    ///   everything published before this batch (its read_index equals the previous write_index),
    ///   i.e. the ring went from empty to non-empty (Linux's rule,
    ///   `drivers/hv/ring_buffer.c: hv_signal_on_write`; Docs/hyperv-interface.md §8.4).
    @inlinable
    public mutating func commit() -> Bool {
        guard cursor != published else { return false }
        let previous = published
        memory.storeControl(.writeIndex, UInt32(truncatingIfNeeded: cursor), ordering: .releasing)
        published = cursor
        memory.fullBarrier()
        guard memory.loadControl(.interruptMask, ordering: .acquiring) == 0 else { return false }
        return memory.loadControl(.readIndex, ordering: .acquiring) == UInt32(truncatingIfNeeded: previous)
    }

    /// Bytes free behind the local cursor (staged packets count as used). A packet fits if its ring
    /// bytes are strictly less than this. Returns 0 if the consumer's read_index is corrupt.
    @inlinable
    public func availableToWrite() -> Int {
        guard let read = try? loadReadIndex() else { return 0 }
        return RingLayout.bytesFree(write: cursor, read: read, dataSize: dataSize)
    }

    /// Asks the consumer to signal once more than `bytes` are free, by setting pending_send_sz
    /// in this ring's control page (Docs/hyperv-interface.md §8.6). Pass the `needed` value of
    /// `RingError.full`. Check `availableToWrite()` again afterwards: space may have been freed
    /// before the consumer saw the request.
    @inlinable
    public mutating func requestSpaceNotification(bytes: Int) {
        memory.storeControl(.pendingSendSize, UInt32(clamping: max(bytes, 0)), ordering: .relaxed)
        memory.fullBarrier()
    }

    /// Clears pending_send_sz once the producer no longer waits for space.
    @inlinable
    public mutating func clearSpaceNotification() {
        memory.storeControl(.pendingSendSize, 0, ordering: .releasing)
    }

    /// Loads and validates the consumer's read_index (acquire).
    @inlinable
    func loadReadIndex() throws(RingError) -> Int {
        guard let read = RingLayout.index(memory.loadControl(.readIndex, ordering: .acquiring), dataSize: dataSize)
        else { throw .corrupt("read index out of range or misaligned") }
        return read
    }
}

extension RingWriter: Sendable where Memory: Sendable {}
