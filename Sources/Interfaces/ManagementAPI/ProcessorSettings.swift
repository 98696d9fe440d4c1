/// A partition's processor controls as the API carries them: the `cpu` object of a partition
/// configuration, and the body of `PATCH /v1/partitions/{name}/cpu` (Docs/scheduling.md).
///
///     "cpu": { "reserve": 25, "limit": 50, "weight": 200, "affinity": [1] }
///
/// Every field is optional. In a configuration an absent field takes its default (reserve 0,
/// limit 100, weight 100, no pinning); in a change it keeps the partition's current value, and
/// `"affinity": []` removes the pinning. The root checks the values and whether every
/// partition's reserve can still be met, and refuses with a sentence when not.
public struct ProcessorSettings: Codable, Sendable, Equatable {
    /// Percent of the partition's processors guaranteed under contention, 0-100.
    public var reserve: Int?
    /// Percent of the partition's processors it may use at most, 1-100.
    public var limit: Int?
    /// Relative weight, 1-10000 (100 by default).
    public var weight: Int?
    /// Host processors the partition's virtual processors may run on (an empty list: any).
    public var affinity: [Int]?

    public init(reserve: Int? = nil, limit: Int? = nil, weight: Int? = nil, affinity: [Int]? = nil) {
        self.reserve = reserve
        self.limit = limit
        self.weight = weight
        self.affinity = affinity
    }

    /// Whether the change names nothing.
    public var isEmpty: Bool { reserve == nil && limit == nil && weight == nil && affinity == nil }

    /// These settings with `change`'s fields laid over them (an empty affinity removes the pinning).
    public func applying(_ change: ProcessorSettings) -> ProcessorSettings {
        var result = self
        if let reserve = change.reserve { result.reserve = reserve }
        if let limit = change.limit { result.limit = limit }
        if let weight = change.weight { result.weight = weight }
        if let affinity = change.affinity { result.affinity = affinity.isEmpty ? nil : affinity }
        return result
    }
}

/// A partition's processor controls as the root applies them: every value resolved, and
/// whether the host enforces them.
public struct ProcessorControlsInfo: Codable, Sendable, Equatable {
    public var reserve: Int
    public var limit: Int
    public var weight: Int
    /// Host processors its virtual processors are pinned to; nil when unpinned.
    public var affinity: [Int]?
    /// Whether control groups enforce them (false where the host has no writable hierarchy).
    public var enforced: Bool

    public init(reserve: Int, limit: Int, weight: Int, affinity: [Int]?, enforced: Bool) {
        self.reserve = reserve
        self.limit = limit
        self.weight = weight
        self.affinity = affinity
        self.enforced = enforced
    }
}
