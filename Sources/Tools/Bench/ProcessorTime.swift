import Foundation

/// The host's processor time so far, from the "cpu" line of /proc/stat (proc(5), in USER_HZ
/// ticks): all of it, and the part the hypervisor beneath this machine gave to something else
/// ("steal"). On a virtual machine whose processors are shared, a run that keeps both cores busy
/// can lose time that a baseline using one core does not; the benchmarks report it per side.
public struct ProcessorTime: Sendable, Equatable {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is inside user).
    public var total: UInt64
    public var steal: UInt64

    public init(total: UInt64, steal: UInt64) {
        self.total = total
        self.steal = steal
    }

    /// The figures of a /proc/stat text, or nil without a well-formed "cpu" line.
    public init?(procStat text: String) {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let fields = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard fields.count == 8 else { return nil }
        self.init(total: fields.reduce(0, +), steal: fields[7])
    }

    /// No time.
    public static let zero = ProcessorTime(total: 0, steal: 0)

    /// Now, or nil where /proc/stat cannot be read or has no "cpu" line (the figure is then
    /// unknown rather than 0 %).
    public static func now() -> ProcessorTime? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return ProcessorTime(procStat: text)
    }

    /// `total` plus the time from `start` to now; nil once any reading is unknown.
    public static func accumulate(_ total: ProcessorTime?, since start: ProcessorTime?) -> ProcessorTime? {
        guard let total, let start, let end = now() else { return nil }
        return total + end.since(start)
    }

    /// A steal percentage for a report's text: "unknown" when it could not be read.
    public static func describe(_ percent: Double?) -> String {
        percent.map { String(format: "%.0f %%", $0) } ?? "unknown"
    }

    /// The time from `earlier` to this reading.
    public func since(_ earlier: ProcessorTime) -> ProcessorTime {
        ProcessorTime(total: total &- earlier.total, steal: steal &- earlier.steal)
    }

    /// Steal as a percentage of all processor time (0 when none passed).
    public var stealPercent: Double {
        total == 0 ? 0 : Double(steal) / Double(total) * 100
    }

    /// Both figures added up, to account several windows together.
    public static func + (lhs: ProcessorTime, rhs: ProcessorTime) -> ProcessorTime {
        ProcessorTime(total: lhs.total &+ rhs.total, steal: lhs.steal &+ rhs.steal)
    }
}
