import HyperV

/// Time from the TSC, and partition reference time from the reference TSC page.
public struct Clock {
    public let tscFrequencyHz: UInt64

    public init(tscFrequencyHz: UInt64) {
        self.tscFrequencyHz = tscFrequencyHz
    }

    /// Nanoseconds between two TSC readings.
    public func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64 {
        let ticks = end &- start
        let (high, low) = ticks.multipliedFullWidth(by: 1_000_000_000)
        return tscFrequencyHz.dividingFullWidth((high: high, low: low)).quotient
    }

    /// TSC ticks in `nanoseconds`.
    public func ticks(nanoseconds: UInt64) -> UInt64 {
        let (high, low) = nanoseconds.multipliedFullWidth(by: tscFrequencyHz)
        return UInt64(1_000_000_000).dividingFullWidth((high: high, low: low)).quotient
    }

    /// Halts until at least `nanoseconds` have passed, however many interrupts wake the
    /// processor meanwhile (`CPU.sleep` returns at the first).
    public func sleep(nanoseconds: UInt64) {
        let start = CPU.timestamp()
        while true {
            let elapsed = self.nanoseconds(from: start, to: CPU.timestamp())
            guard elapsed < nanoseconds else { return }
            CPU.sleep(nanoseconds: nanoseconds - elapsed)
        }
    }

    /// Reads the reference TSC page (Docs/hyperv-interface.md §5.1): `nil` while its sequence is 0,
    /// otherwise (reference time, sequence, scale, offset). Retries while the sequence changes.
    public static func referenceTimeFromPage() -> (time: UInt64, sequence: UInt32, scale: UInt64, offset: Int64)? {
        let page = physical(_referenceTSCPage())
        while true {
            let sequence = page.load(fromByteOffset: ReferenceTSCPage.sequenceOffset, as: UInt32.self)
            if sequence == 0 { return nil }
            let scale = page.load(fromByteOffset: ReferenceTSCPage.scaleOffset, as: UInt64.self)
            let offset = page.load(fromByteOffset: ReferenceTSCPage.offsetOffset, as: Int64.self)
            let tsc = CPU.timestamp()
            if page.load(fromByteOffset: ReferenceTSCPage.sequenceOffset, as: UInt32.self) == sequence {
                return (ReferenceTSCPage.referenceTime(tsc: tsc, scale: scale, offset: offset), sequence, scale, offset)
            }
        }
    }

    /// TIME_REF_COUNT, read at CPL0 through the guest's #UD service (a user-space exit in the root).
    public static func referenceTimeFromMSR() -> UInt64 { _referenceTimeMSR() }
}
