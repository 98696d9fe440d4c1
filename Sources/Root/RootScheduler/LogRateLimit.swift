import LinuxSupport

/// How many of a partition's console lines reach the root's log: a token bucket, so a guest
/// that prints without pause cannot fill the host's disk through the root's log (the lines
/// themselves stay in the partition's bounded `ConsoleLog` for `hv partition console`). Lines
/// past the budget are counted, and the count is logged with the next line that passes.
struct LogRateLimit {
    /// Lines that may pass at once after a quiet spell.
    static let burst = 200.0
    /// Lines per second that may pass on average.
    static let rate = 50.0

    private var tokens = LogRateLimit.burst
    private var refilledAt: UInt64
    private(set) var suppressed = 0

    init(now: UInt64 = MonotonicClock.nanoseconds()) {
        refilledAt = now
    }

    /// The lines of `lines` to log now, preceded by a note of those held back since the last.
    mutating func admit(_ lines: [String], now: UInt64 = MonotonicClock.nanoseconds()) -> [String] {
        let elapsed = Double(now &- refilledAt) / 1e9
        refilledAt = now
        tokens = min(Self.burst, tokens + elapsed * Self.rate)
        var admitted: [String] = []
        for line in lines {
            guard tokens >= 1 else {
                suppressed += 1
                continue
            }
            tokens -= 1
            if suppressed > 0 {
                admitted.append("(\(suppressed) console lines not logged: the partition prints faster than the root logs; "
                                + "`hv partition console` has them)")
                suppressed = 0
            }
            admitted.append(line)
        }
        return admitted
    }
}
