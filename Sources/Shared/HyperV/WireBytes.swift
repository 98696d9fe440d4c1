// Little-endian field access on byte buffers, shared by every wire format in this package.
//
// Reads are total: a field that does not fit in the buffer yields `nil`, never a trap, so
// parsers of guest-supplied bytes can turn short input into a protocol error. Writes are
// for buffers the host or guest built itself, whose size the writer chose.

/// Bytes addressed by index: a byte array, or `FixedBytes` for fixed-size parts of messages.
public protocol WireBytes {
    var count: Int { get }
    subscript(index: Int) -> UInt8 { get set }
}

extension WireBytes {
    /// Reads a little-endian integer at `offset`, or `nil` if it does not fit.
    @inlinable
    public func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let size = T.bitWidth / 8
        guard offset >= 0, size <= count, offset <= count - size else { return nil }
        var value: T = 0
        var index = size
        while index > 0 {
            index -= 1
            value = (value << 8) | T(truncatingIfNeeded: self[offset + index])
        }
        return value
    }

    /// Stores `value` little-endian at `offset`; the buffer must already be large enough.
    @inlinable
    public mutating func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        let size = T.bitWidth / 8
        precondition(offset >= 0 && offset + size <= count, "field outside a host-built buffer")
        var remaining = value
        for index in 0..<size {
            self[offset + index] = UInt8(truncatingIfNeeded: remaining)
            remaining = remaining >> 8
        }
    }
}

extension Array: WireBytes where Element == UInt8 {}

extension Array where Element == UInt8 {
    // `WireBytes`' field access for byte arrays (packets copied out of a ring, the pages of a
    // GPA-direct header), as one load or store instead of a byte at a time.

    /// Reads a little-endian integer at `offset`, or `nil` if it does not fit.
    @inlinable
    public func littleEndian<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type, at offset: Int) -> T? {
        span.bytes.littleEndian(T.self, at: offset)
    }

    /// Stores `value` little-endian at `offset`; the buffer must already be large enough.
    @inlinable
    public mutating func storeLittleEndian<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        var span = mutableSpan
        var bytes = span.mutableBytes
        bytes.storeLittleEndian(value, at: offset)
    }

    /// Appends `value` little-endian.
    @inlinable
    public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        var remaining = value
        for _ in 0..<(T.bitWidth / 8) {
            append(UInt8(truncatingIfNeeded: remaining))
            remaining = remaining >> 8
        }
    }

    /// A zero-filled buffer of `count` bytes.
    @inlinable
    public static func zeros(_ count: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: count)
    }
}

// The whole-field access behind byte arrays' and `FixedBytes`' own `littleEndian` and
// `storeLittleEndian`, with the same bounds as `WireBytes`' byte-at-a-time versions.

extension RawSpan {
    /// Reads a little-endian integer at `offset`, or `nil` if it does not fit.
    @inlinable
    public func littleEndian<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type, at offset: Int) -> T? {
        let width = T.bitWidth / 8
        // What the load moves; the same for every integer type (folded away when compiled).
        precondition(MemoryLayout<T>.size == width, "an integer type wider than its bits")
        guard offset >= 0, width <= byteCount, offset <= byteCount - width else { return nil }
        // The load is checked against the span's bounds again, and every bit pattern is a value
        // of an integer type, which is what makes the "unsafe" load sound here.
        return T(littleEndian: unsafeLoadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension MutableRawSpan {
    /// Stores `value` little-endian at `offset`, which must leave room for it.
    @inlinable
    public mutating func storeLittleEndian<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        let width = T.bitWidth / 8
        precondition(MemoryLayout<T>.size == width, "an integer type wider than its bits")
        precondition(offset >= 0 && width <= byteCount && offset <= byteCount - width, "field outside a host-built buffer")
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
