/// The memory behind one VMBus ring buffer: a 4 KiB control page followed by the data area
/// (Docs/hyperv-interface.md §8.1).
///
/// Use it only as a generic constraint (`RingWriter<Memory>`, `RingReader<Memory>`), never as an
/// existential, so Embedded Swift builds can specialize it. Implementations over shared guest
/// memory perform real atomic accesses with the requested ordering; the ring code never assumes
/// the other side is honest and validates every value it loads.
public protocol RingMemory {
    /// Bytes in the data area: the ring size minus the 4 KiB control page.
    var dataSize: Int { get }

    /// Loads a control word with `ordering`.
    func loadControl(_ word: RingControlWord, ordering: RingOrdering) -> UInt32

    /// Stores a control word with `ordering`.
    func storeControl(_ word: RingControlWord, _ value: UInt32, ordering: RingOrdering)

    /// Copies `count` bytes from data-area offset `offset` into `buffer[bufferOffset...]`.
    /// The ring code guarantees `offset + count <= dataSize` (it splits copies at the wrap point)
    /// and that `buffer` has room.
    func readData(at offset: Int, into buffer: inout [UInt8], bufferOffset: Int, count: Int)

    /// Copies `count` bytes from `buffer[bufferOffset...]` to data-area offset `offset`, under the
    /// same guarantees as `readData`.
    func writeData(at offset: Int, from buffer: [UInt8], bufferOffset: Int, count: Int)

    /// A full (sequentially consistent) memory fence.
    func fullBarrier()
}

extension RingMemory {
    /// Copies `count` bytes starting at data offset `offset` (< dataSize), continuing at offset 0
    /// past the end of the data area.
    @inlinable
    func readWrapping(at offset: Int, into buffer: inout [UInt8], bufferOffset: Int, count: Int) {
        let first = min(count, dataSize - offset)
        readData(at: offset, into: &buffer, bufferOffset: bufferOffset, count: first)
        if first < count {
            readData(at: 0, into: &buffer, bufferOffset: bufferOffset + first, count: count - first)
        }
    }

    /// Copies `count` bytes to data offset `offset` (< dataSize), continuing at offset 0 past
    /// the end of the data area.
    @inlinable
    func writeWrapping(at offset: Int, from buffer: [UInt8], bufferOffset: Int, count: Int) {
        let first = min(count, dataSize - offset)
        writeData(at: offset, from: buffer, bufferOffset: bufferOffset, count: first)
        if first < count {
            writeData(at: 0, from: buffer, bufferOffset: bufferOffset + first, count: count - first)
        }
    }

    /// `offset + count` reduced modulo the data size; both are already below `dataSize`.
    @inlinable
    func advance(_ offset: Int, by count: Int) -> Int {
        let next = offset + count
        return next >= dataSize ? next - dataSize : next
    }
}
