import HyperV

/// One section of the receive buffer as the host carves it (`struct nvsp_1_receive_buffer_section`,
/// 16 bytes): offset u32 @0, sub_alloc_size u32 @4, num_sub_allocs u32 @8, end_offset u32 @12.
/// Linux accepts exactly one section, at offset 0 (`netvsc_init_buf`).
public struct ReceiveBufferSection: Hashable, Sendable {
    /// Size on the wire.
    public static let size = 16

    /// Offset of the section in the receive buffer.
    public var offset: UInt32
    /// Size of each sub-allocation; Linux bounds every receive range by it.
    public var subAllocationSize: UInt32
    /// Number of sub-allocations.
    public var subAllocationCount: UInt32
    /// offset + size × count.
    public var endOffset: UInt32

    /// Creates a section.
    public init(offset: UInt32, subAllocationSize: UInt32, subAllocationCount: UInt32, endOffset: UInt32) {
        self.offset = offset
        self.subAllocationSize = subAllocationSize
        self.subAllocationCount = subAllocationCount
        self.endOffset = endOffset
    }

    /// Reads a section at `offset` of `bytes`, or `nil` if 16 bytes are not there.
    public init?(bytes: [UInt8], at offset: Int) {
        guard let start = bytes.littleEndian(UInt32.self, at: offset),
            let size = bytes.littleEndian(UInt32.self, at: offset &+ 4),
            let count = bytes.littleEndian(UInt32.self, at: offset &+ 8),
            let end = bytes.littleEndian(UInt32.self, at: offset &+ 12)
        else { return nil }
        self.init(offset: start, subAllocationSize: size, subAllocationCount: count, endOffset: end)
    }

    /// Stores the section at `offset` of a buffer with room for it.
    public func store(into buffer: inout [UInt8], at offset: Int) {
        buffer.storeLittleEndian(self.offset, at: offset)
        buffer.storeLittleEndian(subAllocationSize, at: offset + 4)
        buffer.storeLittleEndian(subAllocationCount, at: offset + 8)
        buffer.storeLittleEndian(endOffset, at: offset + 12)
    }
}
