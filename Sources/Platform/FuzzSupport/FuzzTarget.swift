/// A guest- or user-facing surface fuzzed by `hv fuzz` and, briefly, by `swift test`.
///
/// A run is a sequence of sessions; each starts from fresh state with its own seed (derived from
/// the run's seed and the session's index) and runs `sessionLength` cases (fewer in the last), so
/// any case replays by running its session again (`hv fuzz TARGET --seed S --first CASE`). What
/// a case is belongs to the target: one message to a state machine, one packet to a device, one
/// port access, one request body.
public protocol FuzzTarget: Sendable {
    /// Its name on the command line: `vmbus-server`, `ic`, `hypervisor`…
    static var name: String { get }
    /// One line for `hv fuzz --list`.
    static var summary: String { get }
    /// Cases per session.
    static var sessionLength: Int { get }
    /// Runs one session of `cases` cases seeded `seed`, calling `progress` with the number of
    /// cases done now and then (at least at the end). Traps are bugs; a broken promise the
    /// target checks is returned as a finding.
    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding]
}

/// A broken promise: the case (its index within the session) and what was wrong.
public struct FuzzFinding: Sendable, Hashable, CustomStringConvertible {
    public var caseIndex: Int
    public var message: String

    public init(caseIndex: Int, message: String) {
        self.caseIndex = caseIndex
        self.message = message
    }

    public var description: String { "case \(caseIndex): \(message)" }
}
