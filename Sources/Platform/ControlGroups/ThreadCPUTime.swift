import Glibc

/// How much processor time one thread has used.
public enum ThreadCPUTime {
    /// Nanoseconds thread `tid` of process `pid` (this process by default) has run: the first
    /// field of /proc/<pid>/task/<tid>/schedstat (the scheduler's sum_exec_runtime), or, where that
    /// file is absent (no CONFIG_SCHED_INFO), utime + stime from its stat in clock ticks.
    public static func nanoseconds(thread tid: Int32, process pid: Int32 = getpid()) throws(ControlGroupError) -> UInt64 {
        let directory = "/proc/\(pid)/task/\(tid)"
        let schedstat = directory + "/schedstat"
        if ControlFiles.exists(schedstat) {
            let text = try ControlFiles.read(schedstat)
            guard let first = text.split(separator: " ").first, let value = UInt64(first) else {
                throw .malformed(path: schedstat, content: text)
            }
            return value
        }
        let statPath = directory + "/stat"
        let fields = try ProcStat.fields(try ControlFiles.read(statPath), path: statPath)
        guard let user = UInt64(fields[ProcStat.userTime]), let system = UInt64(fields[ProcStat.systemTime]) else {
            throw .malformed(path: statPath, content: fields.joined(separator: " "))
        }
        let ticksPerSecond = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        let (product, overflow) = (user &+ system).multipliedReportingOverflow(by: 1_000_000_000 / ticksPerSecond)
        return overflow ? UInt64.max : product
    }
}
