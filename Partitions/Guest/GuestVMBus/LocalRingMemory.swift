import GuestKit
import Synchronization
import VMBusProtocol

/// A ring in the guest's own memory: the control page followed by contiguous data pages
/// (the guest allocates its rings contiguously, so no page list is needed).
public struct LocalRingMemory: RingMemory {
    let control: UnsafeMutableRawPointer
    let data: UnsafeMutableRawPointer
    public let dataSize: Int

    /// A ring of `pages` pages (one control page, the rest data) at `address`.
    public init(address: UInt64, pages: Int) {
        control = physical(address)
        data = physical(address + UInt64(RingLayout.controlPageSize))
        dataSize = (pages - 1) * VMBusConstants.pageSize
    }

    // SAFETY (the accessors below): the guest identity-maps its RAM, and the ring's pages were
    // allocated for it alone (`PageAllocator`), so `control` and `data` point at live, writable
    // memory for the ring's lifetime. Control words are 4-byte aligned offsets in the control
    // page, shared with the host only through atomics. `RingReader`/`RingWriter` only ask for
    // `offset + count <= dataSize` (they wrap themselves) and for buffer ranges they sized.
    @inline(__always)
    func word(_ word: RingControlWord) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (control + word.byteOffset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    public func loadControl(_ word: RingControlWord, ordering: RingOrdering) -> UInt32 {
        switch ordering {
        case .relaxed: return self.word(word).pointee.load(ordering: .relaxed)
        case .acquiring, .releasing: return self.word(word).pointee.load(ordering: .acquiring)
        case .sequentiallyConsistent: return self.word(word).pointee.load(ordering: .sequentiallyConsistent)
        }
    }

    public func storeControl(_ word: RingControlWord, _ value: UInt32, ordering: RingOrdering) {
        switch ordering {
        case .relaxed: self.word(word).pointee.store(value, ordering: .relaxed)
        case .releasing, .acquiring: self.word(word).pointee.store(value, ordering: .releasing)
        case .sequentiallyConsistent: self.word(word).pointee.store(value, ordering: .sequentiallyConsistent)
        }
    }

    public func readData(at offset: Int, into buffer: inout [UInt8], bufferOffset: Int, count: Int) {
        precondition(offset + count <= dataSize && bufferOffset + count <= buffer.count)
        buffer.withUnsafeMutableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            (base + bufferOffset).copyMemory(from: data + offset, byteCount: count)
        }
    }

    public func writeData(at offset: Int, from buffer: [UInt8], bufferOffset: Int, count: Int) {
        precondition(offset + count <= dataSize && bufferOffset + count <= buffer.count)
        buffer.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            (data + offset).copyMemory(from: base + bufferOffset, byteCount: count)
        }
    }

    public func fullBarrier() { atomicMemoryFence(ordering: .sequentiallyConsistent) }
}
