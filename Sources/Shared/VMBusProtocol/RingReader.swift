/// The consumer side of one VMBus ring (Docs/hyperv-interface.md §8).
///
/// `next(into:)` copies packets out behind a local cursor; `commit` publishes the read
/// position with one release store and says whether a producer waiting for space needs a
/// signal. The producer's write_index and every descriptor are treated as hostile: a bad value
/// raises `RingError.corrupt`, after which the caller closes the channel.
///
/// Not thread-safe: one consumer owns a ring's reader.
public struct RingReader<Memory: RingMemory> {
    /// The ring's memory.
    public let memory: Memory
    /// Data size, cached at creation.
    @usableFromInline let dataSize: Int
    /// Where the next unread packet starts.
    @usableFromInline var cursor: Int
    /// The read_index value last published.
    @usableFromInline var published: Int

    /// Attaches to a ring, taking the current read_index as the cursor.
    /// - Throws: `RingError.corrupt` if the data size is not a positive multiple of 8 or either
    ///   index is out of range or misaligned.
    public init(memory: Memory) throws(RingError) {
        let dataSize = memory.dataSize
        guard RingLayout.isValidDataSize(dataSize) else {
            throw .corrupt("ring data size is not a positive multiple of 8")
        }
        guard let read = RingLayout.index(memory.loadControl(.readIndex, ordering: .acquiring), dataSize: dataSize)
        else { throw .corrupt("read index out of range or misaligned") }
        guard RingLayout.index(memory.loadControl(.writeIndex, ordering: .acquiring), dataSize: dataSize) != nil
        else { throw .corrupt("write index out of range or misaligned") }
        self.memory = memory
        self.dataSize = dataSize
        cursor = read
        published = read
    }

    /// Copies the next packet — descriptor, extra header, payload and padding, without the
    /// trailer — to the start of `buffer` and advances the local cursor past it.
    ///
    /// `buffer` grows only when it is smaller than the packet, so a caller that reuses it does
    /// not allocate in steady state; bytes past `descriptor.totalLength` are stale.
    /// - Returns: the validated descriptor, or `nil` if the ring is empty.
    /// - Throws: `RingError.corrupt` if write_index is out of range or misaligned, or the
    ///   descriptor is inconsistent (offset8 < 2, len8 < offset8) or claims more bytes than are
    ///   available.
    @inlinable
    public mutating func next(into buffer: inout [UInt8]) throws(RingError) -> PacketDescriptor? {
        let write = try loadWriteIndex()
        guard write != cursor else { return nil }
        // One copy of the memory for the rest of the call: reaching it through `self` around
        // each copy into `buffer` (also inout) makes the compiler retain what it holds each time.
        let memory = self.memory
        let available = RingLayout.bytesUsed(write: write, read: cursor, dataSize: dataSize)
        guard available >= PacketDescriptor.size + RingLayout.trailerSize else {
            throw .corrupt("fewer bytes available than a descriptor and trailer")
        }
        if buffer.count < PacketDescriptor.size { Self.grow(&buffer, to: PacketDescriptor.size) }
        memory.readWrapping(at: cursor, into: &buffer, bufferOffset: 0, count: PacketDescriptor.size)
        let descriptor: PacketDescriptor
        do throws(PacketError) {
            descriptor = try PacketDescriptor(parsing: buffer, at: 0)
        } catch {
            throw .corrupt("packet descriptor offset8 or len8 is invalid")
        }
        let length = descriptor.totalLength
        guard length <= available - RingLayout.trailerSize else {
            throw .corrupt("packet length exceeds the bytes available")
        }
        if buffer.count < length { Self.grow(&buffer, to: length) }
        memory.readWrapping(
            at: memory.advance(cursor, by: PacketDescriptor.size), into: &buffer,
            bufferOffset: PacketDescriptor.size, count: length - PacketDescriptor.size)
        cursor = memory.advance(cursor, by: length + RingLayout.trailerSize)
        return descriptor
    }

    /// Publishes the read position with release ordering, issues a full barrier, and decides
    /// whether the producer must be signalled (Docs/hyperv-interface.md §8.6).
    /// - Returns: `true` if pending_send_sz is non-zero and this commit moved the free space from
    ///   at most pending_send_sz to more than it — the point at which the producer's write of
    ///   pending_send_sz ring bytes stops counting as full.
    @inlinable
    public mutating func commit() -> Bool {
        guard cursor != published else { return false }
        let previous = published
        memory.storeControl(.readIndex, UInt32(truncatingIfNeeded: cursor), ordering: .releasing)
        published = cursor
        memory.fullBarrier()
        let pending = Int(memory.loadControl(.pendingSendSize, ordering: .acquiring))
        guard pending != 0, let write = try? loadWriteIndex() else { return false }
        let freeBefore = RingLayout.bytesFree(write: write, read: previous, dataSize: dataSize)
        let freeNow = RingLayout.bytesFree(write: write, read: cursor, dataSize: dataSize)
        return freeBefore <= pending && freeNow > pending
    }

    /// Sets this ring's interrupt_mask so the producer stops signalling while the consumer drains
    /// it by polling (`include/linux/hyperv.h: hv_begin_read`; Docs/hyperv-interface.md §8.4).
    @inlinable
    public mutating func beginPolling() {
        memory.storeControl(.interruptMask, 1, ordering: .relaxed)
        memory.fullBarrier()
    }

    /// Clears interrupt_mask, issues a full barrier and re-checks the ring, closing the
    /// lost-wakeup race (Docs/hyperv-interface.md §8.5). Commit before calling this.
    /// - Returns: `true` if data arrived after the last `next` returned `nil`: keep draining.
    @inlinable
    public mutating func endPolling() -> Bool {
        memory.storeControl(.interruptMask, 0, ordering: .relaxed)
        memory.fullBarrier()
        return !isEmpty()
    }

    /// Whether no packet is waiting behind the local cursor. A corrupt write_index reports
    /// non-empty so that `next` surfaces the corruption.
    @inlinable
    public func isEmpty() -> Bool {
        memory.loadControl(.writeIndex, ordering: .acquiring) == UInt32(truncatingIfNeeded: cursor)
    }

    /// Loads and validates the producer's write_index (acquire).
    @inlinable
    func loadWriteIndex() throws(RingError) -> Int {
        guard let write = RingLayout.index(memory.loadControl(.writeIndex, ordering: .acquiring), dataSize: dataSize)
        else { throw .corrupt("write index out of range or misaligned") }
        return write
    }

    @inlinable
    static func grow(_ buffer: inout [UInt8], to count: Int) {
        buffer.append(contentsOf: repeatElement(0, count: count - buffer.count))
    }
}

extension RingReader: Sendable where Memory: Sendable {}
