import HyperV

// Extra descriptor headers that follow the 16-byte descriptor of GPA-direct and transfer-page
// packets (Docs/hyperv-interface.md §9.3). Both parsers are total: counts and
// lengths from the peer are checked against the bytes present before anything is allocated.

/// One range of a GPA-direct packet: a buffer of `byteCount` bytes starting `byteOffset` bytes
/// into the first of `pfns` (⌈(byteOffset + byteCount) / 4096⌉ pages).
public struct GPARange: Hashable, Sendable {
    /// Length of the buffer in bytes.
    public var byteCount: UInt32
    /// Offset of the buffer into its first page.
    public var byteOffset: UInt32
    /// The guest page frame numbers the buffer spans.
    public var pfns: [UInt64]

    /// Creates a range; `pfns.count` should equal `VMBusConstants.pageCount(byteOffset:byteCount:)`.
    public init(byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64]) {
        self.byteCount = byteCount
        self.byteOffset = byteOffset
        self.pfns = pfns
    }
}

/// The extra header of a GPA-direct packet (type 9): {u32 reserved, u32 rangecount}, then each
/// range as {u32 byte_count, u32 byte_offset, u64 pfn[⌈(offset + count) / 4096⌉]}
/// (Docs/hyperv-interface.md §9.3).
public struct GPADirectHeader: Hashable, Sendable {
    /// The ranges, in order.
    public var ranges: [GPARange]

    /// Creates a header from its ranges.
    public init(ranges: [GPARange]) { self.ranges = ranges }

    /// Parses the header in `bytes[start..<end]`; trailing bytes after the last range are ignored.
    /// - Throws: `PacketError.truncated` if a range or its PFNs run past `end`, `.invalid` if the
    ///   bounds are not inside `bytes`.
    public init(parsing bytes: [UInt8], from start: Int, to end: Int) throws(PacketError) {
        guard start >= 0, start <= end, end <= bytes.count else { throw .invalid("header bounds outside the packet") }
        guard let rangeCount = bytes.littleEndian(UInt32.self, at: start + 4), end - start >= 8 else {
            throw .truncated(needed: 8, available: end - start)
        }
        var position = start + 8
        // Each range takes at least 8 bytes, so the count is bounded by the bytes present.
        guard UInt64(rangeCount) <= UInt64((end - position) / 8) else {
            throw .invalid("range count exceeds the header")
        }
        var ranges: [GPARange] = []
        ranges.reserveCapacity(Int(rangeCount))
        for _ in 0..<Int(rangeCount) {
            guard end - position >= 8,
                let byteCount = bytes.littleEndian(UInt32.self, at: position),
                let byteOffset = bytes.littleEndian(UInt32.self, at: position + 4)
            else { throw .truncated(needed: position + 8 - start, available: end - start) }
            position += 8
            let pfnCount = VMBusConstants.pageCount(byteOffset: byteOffset, byteCount: byteCount)
            guard pfnCount <= (end - position) / 8 else {
                throw .truncated(needed: position - start + pfnCount * 8, available: end - start)
            }
            var pfns: [UInt64] = []
            pfns.reserveCapacity(pfnCount)
            for _ in 0..<pfnCount {
                guard let pfn = bytes.littleEndian(UInt64.self, at: position) else {
                    throw .truncated(needed: position + 8 - start, available: end - start)
                }
                pfns.append(pfn)
                position += 8
            }
            ranges.append(GPARange(byteCount: byteCount, byteOffset: byteOffset, pfns: pfns))
        }
        self.ranges = ranges
    }

    /// Parses the extra header of a packet copied out by `RingReader`: the bytes between the
    /// descriptor and the payload.
    public init(packet: [UInt8], descriptor: PacketDescriptor) throws(PacketError) {
        try self.init(parsing: packet, from: PacketDescriptor.size, to: min(descriptor.payloadOffset, packet.count))
    }

    /// The serialized header, a multiple of 8 bytes, for `RingWriter.write(header:)`.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt32(truncatingIfNeeded: ranges.count))
        for range in ranges {
            bytes.appendLittleEndian(range.byteCount)
            bytes.appendLittleEndian(range.byteOffset)
            for pfn in range.pfns { bytes.appendLittleEndian(pfn) }
        }
        return bytes
    }
}

/// One range of a transfer-page packet: `byteCount` bytes at `byteOffset` within the page set.
public struct TransferPageRange: Hashable, Sendable {
    /// Length in bytes.
    public var byteCount: UInt32
    /// Offset in bytes from the start of the transfer page set.
    public var byteOffset: UInt32

    /// Creates a range.
    public init(byteCount: UInt32, byteOffset: UInt32) {
        self.byteCount = byteCount
        self.byteOffset = byteOffset
    }
}

/// The extra header of a transfer-page packet (type 7): {u16 pageset_id, u8 sender_owns,
/// u8 reserved, u32 range_cnt}, then ranges {u32 byte_count, u32 byte_offset}
/// (Docs/hyperv-interface.md §9.3).
public struct TransferPageHeader: Hashable, Sendable {
    /// The transfer page set the ranges refer to.
    public var pageSetID: UInt16
    /// Whether the sender keeps ownership of the pages (u8, non-zero is true).
    public var senderOwns: Bool
    /// The ranges, in order.
    public var ranges: [TransferPageRange]

    /// Creates a header.
    public init(pageSetID: UInt16, senderOwns: Bool = false, ranges: [TransferPageRange]) {
        self.pageSetID = pageSetID
        self.senderOwns = senderOwns
        self.ranges = ranges
    }

    /// Parses the header in `bytes[start..<end]`; trailing bytes after the last range are ignored.
    /// - Throws: `PacketError.truncated` if the ranges run past `end`, `.invalid` if the bounds
    ///   are not inside `bytes`.
    public init(parsing bytes: [UInt8], from start: Int, to end: Int) throws(PacketError) {
        guard start >= 0, start <= end, end <= bytes.count else { throw .invalid("header bounds outside the packet") }
        guard end - start >= 8,
            let pageSetID = bytes.littleEndian(UInt16.self, at: start),
            let senderOwns = bytes.littleEndian(UInt8.self, at: start + 2),
            let rangeCount = bytes.littleEndian(UInt32.self, at: start + 4)
        else { throw .truncated(needed: 8, available: end - start) }
        guard UInt64(rangeCount) <= UInt64((end - start - 8) / 8) else {
            throw .invalid("range count exceeds the header")
        }
        var ranges: [TransferPageRange] = []
        ranges.reserveCapacity(Int(rangeCount))
        var position = start + 8
        for _ in 0..<Int(rangeCount) {
            guard let byteCount = bytes.littleEndian(UInt32.self, at: position),
                let byteOffset = bytes.littleEndian(UInt32.self, at: position + 4)
            else { throw .truncated(needed: position + 8 - start, available: end - start) }
            ranges.append(TransferPageRange(byteCount: byteCount, byteOffset: byteOffset))
            position += 8
        }
        self.pageSetID = pageSetID
        self.senderOwns = senderOwns != 0
        self.ranges = ranges
    }

    /// Parses the extra header of a packet copied out by `RingReader`: the bytes between the
    /// descriptor and the payload.
    public init(packet: [UInt8], descriptor: PacketDescriptor) throws(PacketError) {
        try self.init(parsing: packet, from: PacketDescriptor.size, to: min(descriptor.payloadOffset, packet.count))
    }

    /// The serialized header, a multiple of 8 bytes, for `RingWriter.write(header:)`.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(pageSetID)
        bytes.append(senderOwns ? 1 : 0)
        bytes.append(0)
        bytes.appendLittleEndian(UInt32(truncatingIfNeeded: ranges.count))
        for range in ranges {
            bytes.appendLittleEndian(range.byteCount)
            bytes.appendLittleEndian(range.byteOffset)
        }
        return bytes
    }
}
