/// Guest RAM as a plain byte array (guest physical addresses 0..<size): for tests, fuzzing and
/// tools that drive the VSP without a partition. Same contract as the parent's `GuestMemory`:
/// every access is bounds-checked and fails as a whole.
public final class FlatGuestMemory: NetworkGuestMemory {
    public private(set) var bytes: [UInt8]

    public init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    private func check(_ address: UInt64, _ count: Int) throws(GuestAccessError) {
        guard count >= 0, address <= UInt64(bytes.count), UInt64(count) <= UInt64(bytes.count) - address else {
            throw GuestAccessError(address: address, length: count)
        }
    }

    public func read(at address: UInt64, into buffer: inout [UInt8], bufferOffset: Int, count: Int) throws(GuestAccessError) {
        try check(address, count)
        precondition(bufferOffset >= 0 && bufferOffset + count <= buffer.count, "host buffer too small")
        let start = Int(address)
        buffer.replaceSubrange(bufferOffset..<(bufferOffset + count), with: bytes[start..<(start + count)])
    }

    public func write(_ source: [UInt8], from offset: Int, count: Int, at address: UInt64) throws(GuestAccessError) {
        try check(address, count)
        precondition(offset >= 0 && offset + count <= source.count, "host buffer too small")
        let start = Int(address)
        bytes.replaceSubrange(start..<(start + count), with: source[offset..<(offset + count)])
    }

    /// Test convenience: copies `source` to `address` (must fit).
    public func store(_ source: [UInt8], at address: UInt64) {
        let start = Int(address)
        bytes.replaceSubrange(start..<(start + source.count), with: source)
    }

    /// Test convenience: `count` bytes at `address` (must fit).
    public func load(at address: UInt64, count: Int) -> [UInt8] {
        Array(bytes[Int(address)..<(Int(address) + count)])
    }
}
