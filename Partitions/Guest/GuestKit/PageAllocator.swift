/// Hands out zeroed, page-aligned, physically contiguous memory from the RAM above the image
/// (rings, GPADL buffers, monitor pages). Guest addresses are identity-mapped, so a pointer is
/// also its guest physical address.
public enum PageAllocator {
    nonisolated(unsafe) static var next: UInt64 = 0
    nonisolated(unsafe) static var end: UInt64 = 0

    /// Starts allocating at `start` (page-aligned up) below `limit`.
    public static func configure(start: UInt64, limit: UInt64) {
        next = (start + 4095) & ~4095
        end = limit & ~4095
    }

    /// `count` contiguous zeroed pages, or `nil` when RAM runs out.
    public static func allocate(pages count: Int) -> UInt64? {
        let bytes = UInt64(count) * 4096
        guard count > 0, next + bytes <= end else { return nil }
        let address = next
        next += bytes
        let pointer = physical(address)
        for offset in stride(from: 0, to: Int(bytes), by: 8) { pointer.storeBytes(of: UInt64(0), toByteOffset: offset, as: UInt64.self) }
        return address
    }
}
