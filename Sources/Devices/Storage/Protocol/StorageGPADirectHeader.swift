import HyperV
import VMBusProtocol

/// The extra header of a storage GPA-direct packet (type 9, `vmbus_packet_mpb_array` as
/// storvsc sends it): u32 reserved @16, u32 rangecount @20 (always 1), then one range
/// {u32 len @24, u32 offset @28 (< 4096), u64 pfn[⌈(offset + len) / 4096⌉] @32}. The
/// `vstor_packet` follows at offset8 × 8.
public struct StorageGPADirectHeader: Hashable, Sendable {
    /// The one buffer of the request.
    public var range: GPARange

    public init(range: GPARange) { self.range = range }

    /// The header for a buffer of `byteCount` bytes at `byteOffset` into the first of `pfns`.
    public init(byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64]) {
        range = GPARange(byteCount: byteCount, byteOffset: byteOffset, pfns: pfns)
    }

    /// Size of a header whose range spans `pageCount` pages.
    public static func size(pageCount: Int) -> Int { 16 + 8 * pageCount }

    /// Parses `bytes[start..<end]` (the bytes between the descriptor and the payload) and
    /// checks that it describes exactly one range whose offset is inside its first page and
    /// whose page count follows from offset and length and is at most `maximumPages`.
    public init(parsing bytes: [UInt8], from start: Int, to end: Int, maximumPages: Int) throws(StorageProtocolError) {
        guard start >= 0, start <= end, end <= bytes.count else { throw .truncated(needed: 16, available: 0) }
        guard end - start >= 16,
            let rangeCount = bytes.littleEndian(UInt32.self, at: start + 4),
            let byteCount = bytes.littleEndian(UInt32.self, at: start + 8),
            let byteOffset = bytes.littleEndian(UInt32.self, at: start + 12)
        else { throw .truncated(needed: 16, available: end - start) }
        guard rangeCount == 1 else { throw .rangeCount(rangeCount) }
        guard byteOffset < UInt32(VMBusConstants.pageSize) else { throw .rangeOffset(byteOffset) }
        let pageCount = VMBusConstants.pageCount(byteOffset: byteOffset, byteCount: byteCount)
        guard pageCount <= maximumPages else { throw .tooManyPages(needed: pageCount, limit: maximumPages) }
        let needed = Self.size(pageCount: pageCount)
        guard end - start >= needed else { throw .truncated(needed: needed, available: end - start) }
        var pfns: [UInt64] = []
        pfns.reserveCapacity(pageCount)
        for index in 0..<pageCount {
            guard let pfn = bytes.littleEndian(UInt64.self, at: start + 16 + index * 8) else {
                throw .truncated(needed: needed, available: end - start)
            }
            pfns.append(pfn)
        }
        range = GPARange(byteCount: byteCount, byteOffset: byteOffset, pfns: pfns)
    }

    /// The serialized header (a multiple of 8 bytes) for `RingWriter.write(header:)`.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt32(1))
        bytes.appendLittleEndian(range.byteCount)
        bytes.appendLittleEndian(range.byteOffset)
        for pfn in range.pfns { bytes.appendLittleEndian(pfn) }
        return bytes
    }
}
