import Glibc

/// A process as the kernel knows it for as long as it lives: its pid and its start time (clock
/// ticks after boot, field 22 of /proc/<pid>/stat), so a reused pid is not mistaken for it.
public struct ProcessIdentity: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The calling process.
    public static func current() throws(ControlGroupError) -> ProcessIdentity {
        try of(pid: getpid())
    }

    /// The live process with this pid.
    public static func of(pid: Int32) throws(ControlGroupError) -> ProcessIdentity {
        let path = "/proc/\(pid)/stat"
        let fields = try ProcStat.fields(try ControlFiles.read(path), path: path)
        guard let start = UInt64(fields[ProcStat.startTime]) else {
            throw .malformed(path: path, content: fields[ProcStat.startTime])
        }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// Whether this very process (not merely its pid) is still alive.
    public var isAlive: Bool {
        do {
            return try ProcessIdentity.of(pid: pid) == self
        } catch {
            return false  // no /proc/<pid>/stat: the pid is free
        }
    }

    public var description: String { "process \(pid) (started at tick \(startTime))" }
}

/// /proc/<pid>/stat and /proc/<pid>/task/<tid>/stat (man 5 proc_pid_stat).
enum ProcStat {
    // Indices into the fields after the ")" that closes comm: field n of the man page is n - 3.
    static let userTime = 14 - 3
    static let systemTime = 15 - 3
    static let startTime = 22 - 3

    /// The space-separated fields after `(comm)`, which may itself hold spaces and parentheses.
    static func fields(_ text: String, path: String) throws(ControlGroupError) -> [String] {
        guard let close = text.lastIndex(of: ")") else { throw .malformed(path: path, content: text) }
        let fields = text[text.index(after: close)...].split(separator: " ").map(String.init)
        guard fields.count > startTime else { throw .malformed(path: path, content: text) }
        return fields
    }
}
