/// The reference TSC page (TLFS "Partition Reference TSC Mechanism";
/// Docs/hyperv-interface.md §5.1).
///
/// Reference time, in 100 ns units, is `((tsc * scale) >> 64) + offset`. A sequence of 0
/// means the page is invalid and the guest must fall back to TIME_REF_COUNT.
public enum ReferenceTSCPage {
    /// tsc_sequence u32 @0.
    public static let sequenceOffset = 0
    /// tsc_scale u64 @8.
    public static let scaleOffset = 8
    /// tsc_offset s64 @16.
    public static let offsetOffset = 16

    /// Reference ticks per second (100 ns units).
    public static let ticksPerSecond: UInt64 = 10_000_000

    /// The 64.64 fixed-point scale that turns TSC ticks at `tscHz` into 100 ns units:
    /// `(10^7 << 64) / tscHz`.
    public static func scale(tscFrequencyHz tscHz: UInt64) -> UInt64 {
        precondition(tscHz > ticksPerSecond / 2, "TSC frequency below 5 MHz is not plausible")
        // (10^7 << 64) / hz, computed as a 128-by-64 division in two halves.
        let (quotient, _) = tscHz.dividingFullWidth((high: ticksPerSecond, low: 0))
        return quotient
    }

    /// Reference time for `tsc` given the page's scale and offset.
    @inlinable
    public static func referenceTime(tsc: UInt64, scale: UInt64, offset: Int64) -> UInt64 {
        let product = tsc.multipliedFullWidth(by: scale)
        return product.high &+ UInt64(bitPattern: offset)
    }
}
