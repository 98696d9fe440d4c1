/// Bytes a loader copies into guest RAM at one guest physical address.
///
/// The bytes are a range of `source` rather than a copy, so a multi-megabyte kernel or initrd
/// is never duplicated: write them with `memory.write(source, from: sourceRange.lowerBound,
/// count: count, at: address)`.
public struct LoadRegion: Sendable {
    /// What the bytes are.
    public enum Contents: Hashable, Sendable {
        case zeroPage
        case commandLine
        case acpiTables
        case kernel
        case initrd
    }

    /// What the bytes are.
    public let contents: Contents
    /// Guest physical address of the first byte.
    public let address: UInt64
    /// The array holding the bytes.
    public let source: [UInt8]
    /// Where the bytes are in `source`.
    public let sourceRange: Range<Int>

    /// A region of `source[sourceRange]`; the range must lie inside `source` and the region must
    /// not wrap the address space (both are the builder's invariants, not input checks).
    public init(_ contents: Contents, address: UInt64, source: [UInt8], sourceRange: Range<Int>) {
        precondition(sourceRange.lowerBound >= 0 && sourceRange.upperBound <= source.count, "range outside its source")
        precondition(!address.addingReportingOverflow(UInt64(sourceRange.count)).overflow, "region wraps the address space")
        self.contents = contents
        self.address = address
        self.source = source
        self.sourceRange = sourceRange
    }

    /// A region holding all of `bytes`.
    public init(_ contents: Contents, address: UInt64, bytes: [UInt8]) {
        self.init(contents, address: address, source: bytes, sourceRange: bytes.indices)
    }

    /// The bytes to copy.
    public var bytes: ArraySlice<UInt8> { source[sourceRange] }
    /// The number of bytes to copy.
    public var count: Int { sourceRange.count }
    /// The guest physical addresses the bytes occupy.
    public var guestRange: Range<UInt64> { address..<(address + UInt64(count)) }
}
