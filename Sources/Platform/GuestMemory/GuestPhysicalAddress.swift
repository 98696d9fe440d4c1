/// A guest physical address: a strong type so host virtual addresses, offsets and guest
/// addresses cannot be mixed up.
public struct GuestPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }

    /// The 4 KiB page size of x86 and of every Hyper-V structure.
    public static let pageSize: UInt64 = 4096

    /// The address of guest page frame `number`.
    public init(pageNumber number: UInt64) { rawValue = number &* Self.pageSize }

    public var pageNumber: UInt64 { rawValue / Self.pageSize }
    public var pageOffset: UInt64 { rawValue % Self.pageSize }

    /// This address plus `offset`, or `nil` on overflow.
    public func advanced(by offset: UInt64) -> GuestPhysicalAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : GuestPhysicalAddress(sum)
    }

    public static func < (a: GuestPhysicalAddress, b: GuestPhysicalAddress) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        "0x" + String(rawValue, radix: 16)
    }
}

/// Guest memory accesses that cannot be honoured.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    /// `length` bytes at `address` are not all guest RAM.
    case outOfBounds(address: GuestPhysicalAddress, length: Int)
    /// An atomic access at `address` is not naturally aligned.
    case misaligned(address: GuestPhysicalAddress, alignment: Int)
    /// A scatter list that cannot describe a buffer (page count, offset or size); the string
    /// says which.
    case invalidBuffer(String)

    public var description: String {
        switch self {
        case .outOfBounds(let address, let length):
            "guest range \(address)+\(length) is outside guest RAM"
        case .misaligned(let address, let alignment):
            "guest address \(address) is not \(alignment)-byte aligned"
        case .invalidBuffer(let reason):
            "invalid guest buffer: \(reason)"
        }
    }
}
