/// The root's current set of partition demands and the plan for them, recomputed whenever a
/// partition is added, changed or removed, or the host changes.
///
/// A change that cannot be scheduled is refused and leaves the table as it was. Every accepted
/// change reports only the groups whose parameters differ, so the caller rewrites just those
/// (a new reserve usually changes every weight in its component).
public struct SchedulingTable: Sendable {
    public private(set) var host: HostProcessors
    /// Partition demands by name.
    public private(set) var partitions: [String: PartitionDemand]
    public private(set) var plan: SchedulingPlan

    public init(host: HostProcessors) throws(SchedulingRefusal) {
        self.host = host
        partitions = [:]
        plan = try SchedulingPolicy.plan(for: [], on: host)
    }

    /// Adds a partition or replaces its demand.
    @discardableResult
    public mutating func set(_ demand: PartitionDemand) throws(SchedulingRefusal) -> PlanUpdate {
        var next = partitions
        next[demand.name] = demand
        return try adopt(partitions: next, host: host)
    }

    /// Removes a partition; freeing its share can never make the others unschedulable.
    @discardableResult
    public mutating func remove(partition name: String) -> PlanUpdate {
        var next = partitions
        next[name] = nil
        do {
            return try adopt(partitions: next, host: host)
        } catch {
            // Unreachable: a subset of a schedulable set is schedulable (fewer reserves on the same
            // processors, pins already validated). Keep the old plan rather than trap.
            return PlanUpdate()
        }
    }

    /// Changes the host's processors or the parent's.
    @discardableResult
    public mutating func setHost(_ host: HostProcessors) throws(SchedulingRefusal) -> PlanUpdate {
        try adopt(partitions: partitions, host: host)
    }

    private mutating func adopt(partitions next: [String: PartitionDemand], host nextHost: HostProcessors)
        throws(SchedulingRefusal) -> PlanUpdate
    {
        let ordered = next.keys.sorted().compactMap { next[$0] }
        let nextPlan = try SchedulingPolicy.plan(for: ordered, on: nextHost)
        let update = PlanUpdate(from: plan, to: nextPlan)
        host = nextHost
        partitions = next
        plan = nextPlan
        return update
    }
}

/// What changed between two plans.
public struct PlanUpdate: Sendable, Hashable {
    /// Partitions whose group is new or has new parameters.
    public var changed: [String: GroupParameters]
    /// Partitions whose group is gone.
    public var removed: [String]
    public var parent: ParentGroupChange

    public init(changed: [String: GroupParameters] = [:], removed: [String] = [], parent: ParentGroupChange = .unchanged) {
        self.changed = changed
        self.removed = removed
        self.parent = parent
    }

    init(from old: SchedulingPlan, to new: SchedulingPlan) {
        changed = new.partitions.filter { old.partitions[$0.key] != $0.value }
        removed = old.partitions.keys.filter { new.partitions[$0] == nil }.sorted()
        switch (old.parent, new.parent) {
        case (let before, let after) where before == after: parent = .unchanged
        case (_, .some(let after)): parent = .set(after)
        case (_, .none): parent = .removed
        }
    }

    /// Whether nothing changed.
    public var isEmpty: Bool { changed.isEmpty && removed.isEmpty && parent == .unchanged }
}

/// How the parent's group changed.
public enum ParentGroupChange: Sendable, Hashable {
    case unchanged
    /// The parent is (now) kept apart with these parameters.
    case set(GroupParameters)
    /// The parent is no longer kept apart.
    case removed
}
