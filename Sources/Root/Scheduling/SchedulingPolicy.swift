/// Computes every partition's control-group parameters from its `CPUControls` (pure logic).
///
/// - weight → the group's CFS weight (v1 `cpu.shares`, v2 `cpu.weight`), raised for partitions
///   with a reserve so that each reserve holds under full contention (`ShareAllocation`).
/// - limit → a CFS bandwidth cap: quota = limit% × VPs × period, so a 2-VP partition limited
///   to 50% may use one processor's worth of time per period, spread over its VPs as they need.
/// - reserve → refused unless every reserve can be met at once (`ReserveFeasibility`): the
///   reserves, in processors, must fit on the processors the partitions may use.
/// - pinning → `cpuset.cpus`; when the parent is kept apart, its processors are taken out of
///   every partition's set and given to the parent's group alone.
///
/// Groups confined to disjoint processor sets never compete, so weights are computed per set
/// of groups whose processors overlap (a component), against that component's processors.
public enum SchedulingPolicy {
    /// The CFS bandwidth period used for limits (the kernel's default, 100 ms).
    public static let periodMicroseconds = 100_000

    /// The plan for these partitions on this host, or the reason they cannot all be scheduled.
    public static func plan(for partitions: [PartitionDemand], on host: HostProcessors) throws(SchedulingRefusal)
        -> SchedulingPlan
    {
        let layout = try HostLayout(host)
        var names = Set<String>()
        var processorSets: [[Int]] = []
        for demand in partitions {
            guard !demand.name.isEmpty else { throw .partition(name: "\"\"", reason: "a partition needs a name.") }
            guard names.insert(demand.name).inserted else {
                throw .partition(name: demand.name, reason: "it is listed twice.")
            }
            processorSets.append(try layout.processors(for: demand))
        }

        let demands = zip(partitions, processorSets).map {
            ReserveFeasibility.Demand(reservedHundredths: $0.reservedHundredths, processors: $1)
        }
        if let shortfall = ReserveFeasibility.shortfall(demands) {
            throw .reservesExceedCapacity(
                partitions: shortfall.demands.map { partitions[$0].name },
                neededHundredths: shortfall.neededHundredths,
                processors: shortfall.processors)
        }

        var plan = SchedulingPlan()
        for component in components(processorSets) {
            let capacity = 100 * Set(component.flatMap { processorSets[$0] }).count
            let reserved = component.map { partitions[$0].reservedHundredths }
            let weights = component.map { partitions[$0].controls.weight }
            let shares = ShareAllocation.allocate(
                reserved: reserved, weights: weights, capacity: capacity, scale: ShareAllocation.v1Shares)
            let cpuWeights = ShareAllocation.allocate(
                reserved: reserved, weights: weights, capacity: capacity, scale: ShareAllocation.v2Weight)
            for (position, index) in component.enumerated() {
                let demand = partitions[index]
                plan.partitions[demand.name] = GroupParameters(
                    shares: shares[position],
                    weight: cpuWeights[position],
                    quota: quota(for: demand),
                    processors: layout.isPinning || demand.pinnedProcessors != nil ? processorSets[index] : nil,
                    reservedHundredths: demand.reservedHundredths)
            }
        }
        if let parent = layout.parent {
            plan.parent = GroupParameters(
                shares: ShareAllocation.v1Shares.plain(CPUControls.default.weight),
                weight: ShareAllocation.v2Weight.plain(CPUControls.default.weight),
                processors: parent)
        }
        return plan
    }

    /// limit% × VPs × period of CPU time per period; nil at 100% (no cap).
    static func quota(for demand: PartitionDemand) -> CPUQuota? {
        guard demand.controls.isLimited else { return nil }
        return CPUQuota(
            quotaMicroseconds: demand.controls.limit * demand.processorCount * periodMicroseconds / 100,
            periodMicroseconds: periodMicroseconds)
    }

    /// Sets of partitions (indices) whose processor sets overlap, directly or through others.
    static func components(_ processorSets: [[Int]]) -> [[Int]] {
        var leader = Array(processorSets.indices)
        func find(_ index: Int) -> Int {
            var index = index
            while leader[index] != index {
                leader[index] = leader[leader[index]]
                index = leader[index]
            }
            return index
        }
        var owner: [Int: Int] = [:]
        for (index, processors) in processorSets.enumerated() {
            for processor in processors {
                if let other = owner[processor] {
                    leader[find(index)] = find(other)
                } else {
                    owner[processor] = index
                }
            }
        }
        var groups: [Int: [Int]] = [:]
        for index in processorSets.indices { groups[find(index), default: []].append(index) }
        return groups.values.sorted { $0[0] < $1[0] }
    }
}

/// The host's processors split between the parent (when kept apart) and virtual processors.
struct HostLayout {
    let processors: [Int]
    let parent: [Int]?
    /// Where an unpinned partition's virtual processors may run.
    let virtualProcessors: [Int]

    /// Whether groups are confined to processor sets at all (they are once the parent is kept apart).
    var isPinning: Bool { parent != nil }

    init(_ host: HostProcessors) throws(SchedulingRefusal) {
        let processors = Array(Set(host.processors)).sorted()
        guard !processors.isEmpty else { throw .host("The host has no processors the root may use.") }
        if let bad = processors.first(where: { !(0..<HostProcessors.processorNumberLimit).contains($0) }) {
            throw .host("Host processor \(bad) is not a valid processor number.")
        }
        self.processors = processors
        guard let requested = host.parentProcessors else {
            parent = nil
            virtualProcessors = processors
            return
        }
        let parent = Array(Set(requested)).sorted()
        guard !parent.isEmpty else {
            throw .host("The parent partition cannot be kept apart on an empty set of processors.")
        }
        let outside = parent.filter { !processors.contains($0) }
        guard outside.isEmpty else {
            throw .host("The parent partition cannot be kept on processors \(ProcessorList.format(outside)): "
                + "the root may use only \(ProcessorList.format(processors)).")
        }
        let rest = processors.filter { !parent.contains($0) }
        guard !rest.isEmpty else {
            throw .host("Keeping the parent partition on processors \(ProcessorList.format(parent)) leaves no "
                + "processor for virtual processors.")
        }
        self.parent = parent
        virtualProcessors = rest
    }

    /// The processors a partition's virtual processors may run on, or why its pinning is refused.
    func processors(for demand: PartitionDemand) throws(SchedulingRefusal) -> [Int] {
        guard (1...PartitionDemand.maximumProcessorCount).contains(demand.processorCount) else {
            throw .partition(name: demand.name, reason: "it must have between 1 and "
                + "\(PartitionDemand.maximumProcessorCount) virtual processors, not \(demand.processorCount).")
        }
        guard let requested = demand.pinnedProcessors else { return virtualProcessors }
        let pinned = Array(Set(requested)).sorted()
        guard !pinned.isEmpty else {
            throw .partition(name: demand.name, reason: "it is pinned to an empty set of processors.")
        }
        let outside = pinned.filter { !processors.contains($0) }
        guard outside.isEmpty else {
            throw .partition(name: demand.name, reason: "it is pinned to processors \(ProcessorList.format(outside)), "
                + "which the root may not use (it may use \(ProcessorList.format(processors))).")
        }
        if let parent {
            let kept = pinned.filter { parent.contains($0) }
            guard kept.isEmpty else {
                throw .partition(name: demand.name, reason: "it is pinned to processors \(ProcessorList.format(kept)), "
                    + "which are kept for the parent partition.")
            }
        }
        return pinned
    }
}
