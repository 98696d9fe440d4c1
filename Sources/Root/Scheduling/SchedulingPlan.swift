/// The control-group parameters of one group (a partition's virtual processors, or the parent).
///
/// Both weight scales are given so the mechanism can write whichever its hierarchy has.
public struct GroupParameters: Sendable, Hashable {
    /// cgroup v1 `cpu.shares` (2...262144; the kernel's default is 1024).
    public var shares: Int
    /// cgroup v2 `cpu.weight` (1...10000; the kernel's default is 100).
    public var weight: Int
    /// CFS bandwidth cap; nil for none.
    public var quota: CPUQuota?
    /// Host processors the group's threads are confined to (`cpuset.cpus`); nil for no pinning.
    public var processors: [Int]?
    /// The guaranteed part, in hundredths of a host processor (reserve% × virtual processors).
    public var reservedHundredths: Int

    public init(shares: Int, weight: Int, quota: CPUQuota? = nil, processors: [Int]? = nil, reservedHundredths: Int = 0) {
        self.shares = shares
        self.weight = weight
        self.quota = quota
        self.processors = processors
        self.reservedHundredths = reservedHundredths
    }
}

/// A CFS bandwidth cap: at most `quotaMicroseconds` of CPU time (summed over all the group's
/// threads) in every `periodMicroseconds` (v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, v2 `cpu.max`).
public struct CPUQuota: Sendable, Hashable {
    public var quotaMicroseconds: Int
    public var periodMicroseconds: Int

    public init(quotaMicroseconds: Int, periodMicroseconds: Int) {
        self.quotaMicroseconds = quotaMicroseconds
        self.periodMicroseconds = periodMicroseconds
    }
}

/// Every group's parameters for one set of partitions on one host.
public struct SchedulingPlan: Sendable, Hashable {
    /// Each partition's group, by partition name.
    public var partitions: [String: GroupParameters]
    /// The parent's group when it is kept apart from virtual processors; nil otherwise.
    public var parent: GroupParameters?

    public init(partitions: [String: GroupParameters] = [:], parent: GroupParameters? = nil) {
        self.partitions = partitions
        self.parent = parent
    }
}
