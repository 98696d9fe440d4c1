/// A partition's processor controls, as Hyper-V names them (Hyper-V Manager's "Processor"
/// page; `Set-VMProcessor -Reserve -Maximum -RelativeWeight`).
///
/// - `reserve`: percent of the partition's processors guaranteed to it when the host is
///   contended; 2 virtual processors at 50% reserve are guaranteed one host processor's worth.
/// - `limit`: percent of the partition's processors it may use at most, contended or not.
/// - `weight`: how the capacity nobody reserved is divided among contending partitions,
///   relative to the others' weights.
///
/// How these become cgroup parameters is `SchedulingPolicy`'s concern (Docs/scheduling.md).
public struct CPUControls: Sendable, Hashable {
    /// Percent of the partition's processors guaranteed under contention, 0...100.
    public let reserve: Int
    /// Percent of the partition's processors it may use at most, 1...100.
    public let limit: Int
    /// Relative weight, 1...10000 (100 is the default, as in Hyper-V).
    public let weight: Int

    public static let reserveRange = 0...100
    public static let limitRange = 1...100
    public static let weightRange = 1...10_000

    /// No reserve, no limit, the default weight.
    public static let `default` = CPUControls(checkedReserve: 0, limit: 100, weight: 100)

    /// Validates the three values together; a reserve above the limit is refused, since a
    /// partition cannot be guaranteed more than it is allowed to use.
    public init(reserve: Int = 0, limit: Int = 100, weight: Int = 100) throws(CPUControlsError) {
        guard Self.reserveRange.contains(reserve) else { throw .reserveOutOfRange(reserve) }
        guard Self.limitRange.contains(limit) else { throw .limitOutOfRange(limit) }
        guard Self.weightRange.contains(weight) else { throw .weightOutOfRange(weight) }
        guard reserve <= limit else { throw .reserveAboveLimit(reserve: reserve, limit: limit) }
        self.init(checkedReserve: reserve, limit: limit, weight: weight)
    }

    private init(checkedReserve reserve: Int, limit: Int, weight: Int) {
        self.reserve = reserve
        self.limit = limit
        self.weight = weight
    }

    /// Whether the limit caps anything (a limit of 100% does not).
    public var isLimited: Bool { limit < 100 }
}

/// Why a set of processor controls was refused, as a sentence for the user.
public enum CPUControlsError: Error, Hashable, CustomStringConvertible {
    case reserveOutOfRange(Int)
    case limitOutOfRange(Int)
    case weightOutOfRange(Int)
    case reserveAboveLimit(reserve: Int, limit: Int)

    public var description: String {
        switch self {
        case .reserveOutOfRange(let value):
            "The processor reserve must be between 0% and 100%, not \(value)%."
        case .limitOutOfRange(let value):
            "The processor limit must be between 1% and 100%, not \(value)%."
        case .weightOutOfRange(let value):
            "The processor weight must be between 1 and 10000, not \(value)."
        case .reserveAboveLimit(let reserve, let limit):
            "The processor reserve (\(reserve)%) is above the limit (\(limit)%): a partition cannot be "
                + "guaranteed more than it may use."
        }
    }
}
