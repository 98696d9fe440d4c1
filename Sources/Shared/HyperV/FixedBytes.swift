/// A fixed number of bytes stored inline (no heap allocation), for the small fixed-size parts
/// of wire messages that hot paths build and parse once per request: a `vstor_packet`'s
/// union, a request block's CDB and sense bytes. Its fields are read and written as
/// `WireBytes`, like a byte array's.
public struct FixedBytes<let size: Int>: Hashable, Sendable, WireBytes {
    @usableFromInline
    var storage: InlineArray<size, UInt8>

    /// `size` zero bytes.
    @inlinable
    public init() {
        storage = InlineArray(repeating: 0)
    }

    /// The first `min(count, size)` bytes of `bytes[start...]` (as many as are there), zero
    /// after them.
    @inlinable
    public init(copying bytes: [UInt8], from start: Int = 0, count: Int = size) {
        self.init()
        guard start >= 0, start <= bytes.count else { return }
        let copied = min(count, size, bytes.count - start)
        var index = 0
        while index < copied {
            storage[index] = bytes[start + index]
            index += 1
        }
    }

    /// `size`.
    @inlinable
    public var count: Int { size }

    /// The byte at `index` (0..<size).
    @inlinable
    public subscript(index: Int) -> UInt8 {
        get { storage[index] }
        set { storage[index] = newValue }
    }

    /// The first `count` bytes as an array (`count` is clamped to 0...size).
    @inlinable
    public func prefix(_ count: Int) -> [UInt8] {
        let count = min(max(count, 0), size)
        var bytes = [UInt8](repeating: 0, count: count)
        for index in 0..<count { bytes[index] = storage[index] }
        return bytes
    }

    /// Copies all `size` bytes to `out[offset...]`, which must have room for them.
    @inlinable
    public func store(into out: inout MutableSpan<UInt8>, at offset: Int) {
        precondition(offset >= 0 && offset + size <= out.count, "bytes outside a host-built buffer")
        let bytes = storage.span
        for index in 0..<size { out[offset + index] = bytes[index] }
    }

    /// `size` bytes of `source` from `start` (which must leave room for them).
    @inlinable
    public init<let sourceSize: Int>(copying source: FixedBytes<sourceSize>, from start: Int) {
        precondition(start >= 0 && start <= sourceSize - size, "bytes outside a fixed buffer")
        let bytes = source.storage.span
        storage = InlineArray { index in bytes[start + index] }
    }

    /// Copies all of `source` to this buffer's bytes from `offset`, which must have room for it.
    @inlinable
    public mutating func store<let sourceSize: Int>(_ source: FixedBytes<sourceSize>, at offset: Int) {
        precondition(offset >= 0 && offset <= size - sourceSize, "bytes outside a fixed buffer")
        let bytes = source.storage.span
        var out = storage.mutableSpan
        for index in 0..<sourceSize { out[offset + index] = bytes[index] }
    }

    // `WireBytes`' field access, as one load or store instead of a byte at a time: request
    // blocks and packet unions are read and written field by field for every request.

    /// Reads a little-endian integer at `offset`, or `nil` if it does not fit.
    @inlinable
    public func littleEndian<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type, at offset: Int) -> T? {
        storage.span.bytes.littleEndian(T.self, at: offset)
    }

    /// Stores `value` little-endian at `offset`, which must leave room for it.
    @inlinable
    public mutating func storeLittleEndian<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        var span = storage.mutableSpan
        var bytes = span.mutableBytes
        bytes.storeLittleEndian(value, at: offset)
    }

    @inlinable
    public static func == (lhs: Self, rhs: Self) -> Bool {
        for index in 0..<size where lhs.storage[index] != rhs.storage[index] { return false }
        return true
    }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        for index in 0..<size { hasher.combine(storage[index]) }
    }
}
