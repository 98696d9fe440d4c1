/// Guest memory a VSC shares with the host beside its rings, through a GPADL: a netvsc's receive
/// and send buffers. Physically contiguous, so an offset maps to one guest physical address.
///
/// The guest implements it over its own identity-mapped pages; host tests over a `GuestMemory`
/// region the parent maps too. The host may write the memory at any time (the receive buffer)
/// or read it (the send buffer): a VSC reads each value it acts on once, and checks it.
public protocol SharedBuffer {
    /// The guest physical address of byte 0 (page-aligned).
    var physicalAddress: UInt64 { get }
    /// Its size in bytes (whole pages).
    var size: Int { get }
    /// Copies `count` bytes at `offset` to `buffer[bufferOffset...]`; both ranges are inside.
    func read(at offset: Int, count: Int, into buffer: inout [UInt8], bufferOffset: Int)
    /// Copies `bytes[from..<from+count]` to `offset`; both ranges are inside.
    func write(_ bytes: [UInt8], from: Int, count: Int, at offset: Int)
    /// The little-endian u32 at `offset` (inside, 4-byte aligned or not).
    func load32(at offset: Int) -> UInt32
}

extension SharedBuffer {
    /// The page frame numbers of `count` bytes at `offset`.
    public func pageNumbers(at offset: Int, count: Int) -> [UInt64] {
        let first = (physicalAddress + UInt64(offset)) / 4096
        let last = (physicalAddress + UInt64(offset + max(count, 1) - 1)) / 4096
        var pages: [UInt64] = []
        var page = first
        while page <= last {
            pages.append(page)
            page += 1
        }
        return pages
    }
}
