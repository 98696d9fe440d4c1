/// Turns reserves and weights into CFS group weights for groups that compete for the same
/// processors.
///
/// The model (Docs/scheduling.md): sibling groups whose threads are all runnable divide the
/// processors in proportion to their weights, so group i receives s_i / Σ_j s_j of the
/// capacity. Capacity and reserves are counted in hundredths of a processor: the groups may
/// use D = 100 × P (P processors), and partition i reserves R_i = reserve_i% × VPs_i.
///
/// The intended division under full contention is Hyper-V's: every partition first gets its
/// reserve, and the capacity nobody reserved, D − ΣR, is divided by weight:
///
///     target_i / D = R_i / D + (1 − ΣR / D) × w_i / Σw
///
/// Giving group i the weight s_i = T × target_i / D (for some total T) makes s_i / Σs equal
/// that, and every term of the sum is at least R_i / D, so each reserve holds whatever the
/// other partitions' weights are. Weights are integers, so the allocation rounds in the
/// direction that keeps the guarantee: each reserved part is rounded up, ⌈R_i × T / D⌉, and the
/// unreserved pool, less one minimum weight per group (the kernel refuses 0), is shared out
/// rounded down. Then Σs ≤ T and s_i ≥ R_i × T / D, so s_i / Σs ≥ R_i / D exactly. Only when
/// the reserves fill the processors completely (no pool left for the minimum weights) can the
/// minimum weights of unreserved groups take up to n × minimum / T from the others.
///
/// With no reserves at all the weights pass straight through (v2 `cpu.weight` = Hyper-V weight,
/// both 1...10000 with 100 the default; v1 `cpu.shares` = weight × 1024 / 100, so the default
/// weight 100 is the kernel's default 1024 shares).
enum ShareAllocation {
    /// One kernel weight scale.
    struct Scale: Sendable {
        /// The sum T the weights are spread over when there are reserves.
        var total: Int
        var minimum: Int
        var maximum: Int
        /// The value a plain weight maps to when nobody reserves anything.
        var plain: @Sendable (Int) -> Int
    }

    /// cgroup v2 `cpu.weight`: 1...10000.
    static let v2Weight = Scale(total: 10_000, minimum: 1, maximum: 10_000, plain: { $0 })

    /// cgroup v1 `cpu.shares`: 2...262144 (kernel/sched/sched.h: MIN_SHARES, MAX_SHARES).
    static let v1Shares = Scale(total: 102_400, minimum: 2, maximum: 262_144, plain: { weight in
        max(2, (weight * 1024 + 50) / 100)
    })

    /// The kernel weight of each group, in the order given.
    /// - Parameters:
    ///   - reserved: R_i, hundredths of a processor, each ≥ 0, summing to at most `capacity`.
    ///   - weights: w_i, each ≥ 1.
    ///   - capacity: D = 100 × processors the groups share, > 0.
    static func allocate(reserved: [Int], weights: [Int], capacity: Int, scale: Scale) -> [Int] {
        precondition(reserved.count == weights.count && capacity > 0)
        guard reserved.contains(where: { $0 > 0 }) else {
            return weights.map { min(max(scale.plain($0), scale.minimum), scale.maximum) }
        }
        let total = scale.total
        let reservedParts = reserved.map { ($0 * total + capacity - 1) / capacity }
        let pool = max(0, total - reservedParts.reduce(0, +) - weights.count * scale.minimum)
        let weightSum = max(1, weights.reduce(0, +))
        return zip(reservedParts, weights).map { reservedPart, weight in
            let value = reservedPart + pool * weight / weightSum
            return min(max(value, scale.minimum), scale.maximum)
        }
    }
}
