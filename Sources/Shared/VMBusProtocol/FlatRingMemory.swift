import HyperV

/// An in-process `RingMemory`: the control page as 1024 u32 words and the data area as a byte
/// array (Docs/hyperv-interface.md §8.2). For tests and host-only use.
///
/// Not thread-safe: orderings and barriers are no-ops, so a writer and a reader sharing one
/// instance must run on the same thread. Feature bit 0 (pending_send_sz) starts set, as Linux
/// sets it. The words and bytes are public so tests can corrupt them at will.
public final class FlatRingMemory: RingMemory {
    /// The control page, one element per u32 word.
    public var control: [UInt32]
    /// The data area.
    public var data: [UInt8]

    /// A zeroed ring with `dataSize` bytes of data area (the ring itself is 4 KiB larger).
    public init(dataSize: Int) {
        precondition(dataSize >= 0, "negative ring data size")
        control = [UInt32](repeating: 0, count: RingLayout.controlWordCount)
        data = .zeros(dataSize)
        control[RingControlWord.featureBits.rawValue] = RingLayout.featurePendingSendSize
    }

    /// The size of `data`.
    public var dataSize: Int { data.count }

    /// Reads `control[word]`; the ordering is irrelevant on one thread.
    public func loadControl(_ word: RingControlWord, ordering: RingOrdering) -> UInt32 {
        control[word.rawValue]
    }

    /// Writes `control[word]`; the ordering is irrelevant on one thread.
    public func storeControl(_ word: RingControlWord, _ value: UInt32, ordering: RingOrdering) {
        control[word.rawValue] = value
    }

    /// Copies out of `data`.
    public func readData(at offset: Int, into buffer: inout [UInt8], bufferOffset: Int, count: Int) {
        for index in 0..<count { buffer[bufferOffset + index] = data[offset + index] }
    }

    /// Copies into `data`.
    public func writeData(at offset: Int, from buffer: [UInt8], bufferOffset: Int, count: Int) {
        for index in 0..<count { data[offset + index] = buffer[bufferOffset + index] }
    }

    /// Nothing to order on one thread.
    public func fullBarrier() {}
}
