import GuestKit
import VMBusClient

/// A buffer in the guest's own RAM that it shares with the host through a GPADL (a netvsc's
/// receive and send buffers): contiguous pages from `PageAllocator`, identity-mapped.
public struct LocalSharedBuffer: SharedBuffer {
    public let physicalAddress: UInt64
    public let size: Int
    let base: UnsafeMutableRawPointer

    /// `pages` pages at `address` (allocated for this buffer alone).
    public init(address: UInt64, pages: Int) {
        physicalAddress = address
        size = pages * 4096
        base = physical(address)
    }

    // SAFETY (the accessors below): the guest identity-maps its RAM and the buffer's pages were
    // allocated for it alone (`PageAllocator`), so `base` points at `size` live, writable bytes
    // for the program's life. `SharedBuffer` callers keep every range inside `0..<size`, which
    // the preconditions check; the host may change the bytes at any time, so each value is
    // read once and checked by the caller.
    public func read(at offset: Int, count: Int, into buffer: inout [UInt8], bufferOffset: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= size && bufferOffset + count <= buffer.count)
        buffer.withUnsafeMutableBytes { bytes in
            guard let destination = bytes.baseAddress else { return }
            (destination + bufferOffset).copyMemory(from: base + offset, byteCount: count)
        }
    }

    public func write(_ bytes: [UInt8], from: Int, count: Int, at offset: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= size && from + count <= bytes.count)
        bytes.withUnsafeBytes { source in
            guard let start = source.baseAddress else { return }
            (base + offset).copyMemory(from: start + from, byteCount: count)
        }
    }

    public func load32(at offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset + 4 <= size)
        return (base + offset).loadUnaligned(as: UInt32.self)
    }
}
