/// The processor parameters of one group, in the kernel's units. Both weight scales are
/// carried; the hierarchy writes the one it has.
public struct CPUGroupSettings: Sendable, Hashable {
    /// cgroup v1 `cpu.shares`, 2...262144 (kernel/sched/sched.h: MIN_SHARES, MAX_SHARES).
    public var shares: Int
    /// cgroup v2 `cpu.weight`, 1...10000 (kernel/sched/core.c: CGROUP_WEIGHT_MIN, _MAX).
    public var weight: Int
    /// A CFS bandwidth cap; nil removes any cap.
    public var bandwidth: CPUBandwidth?
    /// Host processors the group's threads may run on; nil gives them all of the instance's.
    public var processors: [Int]?

    public static let sharesRange = 2...262_144
    public static let weightRange = 1...10_000

    /// The kernel defaults: 1024 shares, weight 100, no cap, no pinning.
    public static let `default` = CPUGroupSettings(shares: 1024, weight: 100)

    public init(shares: Int, weight: Int, bandwidth: CPUBandwidth? = nil, processors: [Int]? = nil) {
        self.shares = shares
        self.weight = weight
        self.bandwidth = bandwidth
        self.processors = processors
    }

    /// These settings less what `capabilities` cannot do, with a sentence for each part left out
    /// (for the caller to log once and carry on, as with no hierarchy at all).
    public func restricted(to capabilities: ControlGroupCapabilities) -> (settings: CPUGroupSettings, dropped: [String]) {
        var settings = self
        var dropped: [String] = []
        if bandwidth != nil && !capabilities.bandwidth {
            settings.bandwidth = nil
            dropped.append("The processor limit is not enforced: this kernel has no CFS bandwidth control.")
        }
        if processors != nil && !capabilities.cpuset {
            settings.processors = nil
            dropped.append("Processors are not pinned: there is no writable cpuset controller.")
        }
        return (settings, dropped)
    }

    func validate() throws(ControlGroupError) {
        guard Self.sharesRange.contains(shares) else {
            throw .invalid("cpu.shares must be between 2 and 262144, not \(shares).")
        }
        guard Self.weightRange.contains(weight) else {
            throw .invalid("cpu.weight must be between 1 and 10000, not \(weight).")
        }
        try bandwidth?.validate()
        if let processors {
            guard !processors.isEmpty else { throw .invalid("A group cannot be pinned to no processor.") }
            guard processors.allSatisfy({ (0...CPUList.largestProcessor).contains($0) }) else {
                throw .invalid("Processor numbers must be between 0 and \(CPUList.largestProcessor).")
            }
        }
    }
}

/// A CFS bandwidth cap: `quotaMicroseconds` of CPU time per `periodMicroseconds`, over all of
/// the group's threads (Documentation/scheduler/sched-bwc.rst).
public struct CPUBandwidth: Sendable, Hashable {
    public var quotaMicroseconds: Int
    public var periodMicroseconds: Int

    /// 1 ms to 1 s, as the kernel accepts (kernel/sched/core.c: min_cfs_quota_period, max_cfs_quota_period).
    public static let periodRange = 1_000...1_000_000
    /// At least 1 ms; at most 8192 processors' worth of a longest period.
    public static let quotaRange = 1_000...(1_000_000 * 8192)

    public init(quotaMicroseconds: Int, periodMicroseconds: Int) {
        self.quotaMicroseconds = quotaMicroseconds
        self.periodMicroseconds = periodMicroseconds
    }

    func validate() throws(ControlGroupError) {
        guard Self.periodRange.contains(periodMicroseconds) else {
            throw .invalid("A CFS period must be between 1000 and 1000000 µs, not \(periodMicroseconds).")
        }
        guard Self.quotaRange.contains(quotaMicroseconds) else {
            throw .invalid("A CFS quota must be at least 1000 µs, not \(quotaMicroseconds).")
        }
    }
}
