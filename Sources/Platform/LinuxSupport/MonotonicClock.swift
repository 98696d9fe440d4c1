import Glibc

/// CLOCK_MONOTONIC in nanoseconds, for latency and throughput measurement.
public enum MonotonicClock {
    @inlinable
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Wall-clock time as nanoseconds since the Unix epoch (CLOCK_REALTIME).
    public static func realtimeNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// `duration` in nanoseconds: 0 for a negative one, and at most about 11.6 days (10^15 ns),
    /// so a deadline `nanoseconds() + nanoseconds(in:)` never wraps.
    public static func nanoseconds(in duration: Duration) -> UInt64 {
        UInt64(min(max(duration / .nanoseconds(1), 0), 1e15))
    }

    /// Blocks the calling thread for at least `duration` (restarting after signals).
    public static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
