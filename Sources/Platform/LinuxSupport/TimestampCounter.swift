import CLinux

/// The host time-stamp counter.
public enum TimestampCounter {
    /// RDTSC.
    @inlinable
    public static func read() -> UInt64 { clinux_rdtsc() }
}
