import LinuxSupport
import Synchronization

/// Runs a target's cases in this process: session after session, counting progress in an
/// atomic a watchdog (or a supervising process) can read.
public enum FuzzRunner {
    /// What a run did.
    public struct Report: Sendable, CustomStringConvertible {
        public var target: String
        public var seed: UInt64
        public var firstCase: Int
        public var cases: Int
        public var nanoseconds: UInt64
        /// Broken promises, with run-wide case indices (at most the first 100).
        public var findings: [FuzzFinding]

        public var casesPerSecond: Double { nanoseconds == 0 ? 0 : Double(cases) / Double(nanoseconds) * 1e9 }

        public var description: String {
            let rate = casesPerSecond >= 1000 ? "\(Int(casesPerSecond / 1000)).\(Int(casesPerSecond) % 1000 / 100)k"
                                              : "\(Int(casesPerSecond))"
            return "\(target): \(cases) cases from seed \(seed) in \(Double(nanoseconds / 10_000_000) / 100) s "
                + "(\(rate) cases/s), \(findings.count) findings"
        }
    }

    /// Cases finished so far, for a watchdog on another thread.
    public final class Progress: Sendable {
        public let completed = Atomic<Int>(0)
        public init() {}
    }

    /// Runs `cases` cases of `target` from run-wide case `first` (rounded down to its session's
    /// start), adding each finished case to `progress`.
    public static func run(_ target: any FuzzTarget.Type, seed: UInt64, cases: Int, first: Int = 0,
                           progress: Progress? = nil) -> Report {
        let length = max(1, target.sessionLength)
        let start = (max(0, first) / length) * length
        let end = max(0, first) + max(0, cases)
        var findings: [FuzzFinding] = []
        var done = 0
        let began = MonotonicClock.nanoseconds()
        var session = start / length
        var base = start
        while base < end {
            let count = min(length, end - base)
            var reported = 0
            let sessionFindings = target.runSession(seed: FuzzRandom.derive(seed, UInt64(session)), cases: count) { done in
                let step = max(0, min(done, count) - reported)
                reported += step
                progress?.completed.wrappingAdd(step, ordering: .relaxed)
            }
            if reported < count { progress?.completed.wrappingAdd(count - reported, ordering: .relaxed) }
            for finding in sessionFindings where findings.count < 100 {
                findings.append(FuzzFinding(caseIndex: base + finding.caseIndex, message: finding.message))
            }
            done += count
            base += count
            session += 1
        }
        return Report(target: target.name, seed: seed, firstCase: start, cases: done,
                      nanoseconds: MonotonicClock.nanoseconds() - began, findings: findings)
    }
}
