// Big-endian field access for SCSI structures (CDBs, parameter data and sense data are
// big-endian, SPC-4 §3.5.1), next to the little-endian accessors of `HyperV/WireBytes.swift`
// that the VMBus and vstor layers use.
//
// Reads are total (a field that does not fit yields `nil`); writes are for buffers the writer
// sized itself.

extension Array where Element == UInt8 {
    /// Reads a big-endian integer at `offset`, or `nil` if it does not fit.
    @inlinable
    public func bigEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let size = T.bitWidth / 8
        guard offset >= 0, size <= count, offset <= count - size else { return nil }
        var value: T = 0
        for index in 0..<size {
            value = (value << 8) | T(truncatingIfNeeded: self[offset + index])
        }
        return value
    }

    /// Stores `value` big-endian at `offset`; the array must already be large enough.
    @inlinable
    public mutating func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        let size = T.bitWidth / 8
        precondition(offset >= 0 && offset + size <= count, "field outside a host-built buffer")
        var remaining = value
        var index = size
        while index > 0 {
            index -= 1
            self[offset + index] = UInt8(truncatingIfNeeded: remaining)
            remaining = remaining >> 8
        }
    }

    /// Appends `value` big-endian.
    @inlinable
    public mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        let size = T.bitWidth / 8
        var shift = T.bitWidth
        for _ in 0..<size {
            shift -= 8
            append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    /// The first `length` bytes (fewer if the array is shorter): what an initiator receives
    /// when its allocation length cuts a response short (SPC-4 §4.2.5.6).
    @inlinable
    public func truncated(to length: Int) -> [UInt8] {
        length >= count ? self : Array(self[0..<Swift.max(length, 0)])
    }
}
