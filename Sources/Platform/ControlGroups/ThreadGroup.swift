import Glibc

/// One group of threads in a root instance: a partition's virtual processors, or the parent's
/// threads. Threads are attached by their kernel thread ids.
public struct ThreadGroup: Sendable {
    public let instance: ControlGroupInstance
    public let name: String

    init(instance: ControlGroupInstance, name: String) {
        self.instance = instance
        self.name = name
    }

    private var hierarchy: ControlGroupHierarchy { instance.hierarchy }

    func directory(in tree: Tree) -> String { joinPath(instance.directory(in: tree), name) }

    /// The group's directory in each hierarchy (cpu first), for messages and tests.
    public var directories: [String] { hierarchy.trees.map(directory(in:)) }

    /// The group's directory in the hierarchy that has `role` (`cpu`, `cpuacct`, `cpuset`; v2: `unified`).
    func directory(for role: Tree.Role) -> String? { hierarchy.tree(role).map(directory(in:)) }

    // MARK: Settings

    /// Writes the group's weight, cap and processors. Parts the instance cannot do are refused
    /// (`.unsupported`); `CPUGroupSettings.restricted(to:)` drops them beforehand.
    public func apply(_ settings: CPUGroupSettings) throws(ControlGroupError) {
        try settings.validate()
        let capabilities = instance.capabilities
        guard capabilities.weights else {
            throw .unsupported("\(hierarchy) has no cpu controller, so group \(name) cannot be weighted.")
        }
        if settings.bandwidth != nil && !capabilities.bandwidth {
            throw .unsupported("Group \(name) cannot be capped: the kernel has no CFS bandwidth control (CONFIG_CFS_BANDWIDTH).")
        }
        if settings.processors != nil && !capabilities.cpuset {
            throw .unsupported("Group \(name) cannot be pinned: \(hierarchy) has no writable cpuset controller.")
        }
        switch hierarchy.version {
        case .v1: try applyV1(settings)
        case .v2: try applyV2(settings)
        }
    }

    private func applyV1(_ settings: CPUGroupSettings) throws(ControlGroupError) {
        if let cpu = directory(for: .cpu) {
            try ControlFiles.write("\(settings.shares)", to: joinPath(cpu, "cpu.shares"))
            if instance.capabilities.bandwidth {
                // Lift any cap first: the kernel checks the quota against the period being written
                // (kernel/sched/core.c: tg_set_cfs_bandwidth).
                try ControlFiles.write("-1", to: joinPath(cpu, "cpu.cfs_quota_us"))
                if let bandwidth = settings.bandwidth {
                    try ControlFiles.write("\(bandwidth.periodMicroseconds)", to: joinPath(cpu, "cpu.cfs_period_us"))
                    try ControlFiles.write("\(bandwidth.quotaMicroseconds)", to: joinPath(cpu, "cpu.cfs_quota_us"))
                }
            }
        }
        if let cpusetTree = hierarchy.tree(.cpuset) {
            let path = directory(in: cpusetTree)
            var processors = ""
            if let pinned = settings.processors {
                processors = CPUList.format(pinned)
            } else {
                processors = try ControlFiles.read(joinPath(instance.directory(in: cpusetTree), "cpuset.cpus"))
            }
            try ControlFiles.write(processors, to: joinPath(path, "cpuset.cpus"))
        }
    }

    private func applyV2(_ settings: CPUGroupSettings) throws(ControlGroupError) {
        guard let path = directory(for: .unified) else { return }
        try ControlFiles.write("\(settings.weight)", to: joinPath(path, "cpu.weight"))
        if instance.capabilities.bandwidth {
            let value = settings.bandwidth.map { "\($0.quotaMicroseconds) \($0.periodMicroseconds)" } ?? "max"
            try ControlFiles.write(value, to: joinPath(path, "cpu.max"))
        }
        if instance.capabilities.cpuset {
            // An empty cpuset.cpus makes a v2 group use its parent's processors.
            try ControlFiles.write(settings.processors.map(CPUList.format) ?? "\n", to: joinPath(path, "cpuset.cpus"))
        }
    }

    // MARK: Threads

    /// Moves one thread of the calling process (or of a process already in the instance's v2
    /// threaded domain) into the group.
    public func attach(thread tid: Int32) throws(ControlGroupError) {
        guard tid > 0 else { throw .invalid("\(tid) is not a thread id.") }
        switch hierarchy.version {
        case .v1:
            for tree in hierarchy.trees { try ControlFiles.write("\(tid)", to: joinPath(directory(in: tree), "tasks")) }
        case .v2:
            guard let path = directory(for: .unified) else { return }
            try ControlFiles.write("\(tid)", to: joinPath(path, "cgroup.threads"))
        }
    }

    /// Moves every thread of process `pid` (such as the parent partition) into the group. On v2
    /// the process first joins the instance's threaded domain, then each thread moves; threads
    /// it starts meanwhile are caught by going over its threads until all are in.
    public func attach(process pid: Int32) throws(ControlGroupError) {
        guard pid > 0 else { throw .invalid("\(pid) is not a process id.") }
        switch hierarchy.version {
        case .v1:
            for tree in hierarchy.trees {
                try ControlFiles.write("\(pid)", to: joinPath(directory(in: tree), "cgroup.procs"))
            }
        case .v2:
            guard let tree = hierarchy.tree(.unified) else { return }
            try ControlFiles.write("\(pid)", to: joinPath(instance.directory(in: tree), "cgroup.procs"))
            let threadsFile = joinPath(directory(in: tree), "cgroup.threads")
            for _ in 0..<8 {
                let inGroup = Set(try ControlGroupInstance.ids(in: threadsFile))
                let outside = try Self.threads(ofProcess: pid).filter { !inGroup.contains($0) }
                if outside.isEmpty { return }
                for tid in outside { try ControlGroupInstance.writeIgnoringExited("\(tid)", to: threadsFile) }
            }
            throw .unsupported("Process \(pid) kept starting threads while they were moved into group \(name).")
        }
    }

    /// Moves a thread out of the group, back to where the instance's threads live (v1: the
    /// root's own cgroup; v2: the instance's threaded domain). A thread that has exited is fine.
    public func detach(thread tid: Int32) throws(ControlGroupError) {
        switch hierarchy.version {
        case .v1:
            for tree in hierarchy.trees {
                try ControlGroupInstance.writeIgnoringExited("\(tid)", to: joinPath(tree.base, "tasks"))
            }
        case .v2:
            guard let tree = hierarchy.tree(.unified) else { return }
            try ControlGroupInstance.writeIgnoringExited("\(tid)", to: joinPath(instance.directory(in: tree), "cgroup.threads"))
        }
    }

    /// The kernel thread ids in the group (v1: in its cpu group), sorted.
    public func threads() throws(ControlGroupError) -> [Int32] {
        switch hierarchy.version {
        case .v1:
            guard let path = directory(for: .cpu) else { return [] }
            return try ControlGroupInstance.ids(in: joinPath(path, "tasks")).sorted()
        case .v2:
            guard let path = directory(for: .unified) else { return [] }
            return try ControlGroupInstance.ids(in: joinPath(path, "cgroup.threads")).sorted()
        }
    }

    /// CPU time the group's threads have used, in nanoseconds (v1 `cpuacct.usage`, v2 `cpu.stat`
    /// usage_usec), including threads that have since left or exited.
    public func usageNanoseconds() throws(ControlGroupError) -> UInt64 {
        switch hierarchy.version {
        case .v1:
            guard let path = directory(for: .cpuacct) else {
                throw .unsupported("Group \(name) has no usage: the cgroup v1 cpuacct controller is not mounted.")
            }
            let file = joinPath(path, "cpuacct.usage")
            let text = try ControlFiles.read(file)
            guard let value = UInt64(text.trimmingWhitespace) else { throw .malformed(path: file, content: text) }
            return value
        case .v2:
            guard let path = directory(for: .unified) else { return 0 }
            let file = joinPath(path, "cpu.stat")
            let text = try ControlFiles.read(file)
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 2, fields[0] == "usage_usec" {
                    guard let value = UInt64(fields[1]) else { throw .malformed(path: file, content: String(line)) }
                    return value.multipliedReportingOverflow(by: 1000).overflow ? UInt64.max : value * 1000
                }
            }
            throw .malformed(path: file, content: text)
        }
    }

    /// Moves every thread back (as `detach`) and removes the group from each hierarchy.
    ///
    /// A thread that was just joined may still count as the group's for a moment: its exit
    /// clears the tid that `pthread_join` waits for (`mm_release`) before it leaves its control
    /// groups (`cgroup_exit`). So a busy group is tried again, after a pause from the fourth
    /// attempt on, for at most about half a second.
    public func delete() throws(ControlGroupError) {
        let attempts = 50
        for attempt in 0..<attempts {
            do {
                for tree in hierarchy.trees {
                    let path = directory(in: tree)
                    guard ControlFiles.isDirectory(path) else { continue }
                    switch hierarchy.version {
                    case .v1:
                        try ControlGroupInstance.moveTasks(from: path, to: tree.base)
                    case .v2:
                        let destination = joinPath(instance.directory(in: tree), "cgroup.threads")
                        for tid in try ControlGroupInstance.ids(in: joinPath(path, "cgroup.threads")) {
                            try ControlGroupInstance.writeIgnoringExited("\(tid)", to: destination)
                        }
                    }
                    try ControlGroupInstance.removeIgnoringAbsence(path)
                }
                return
            } catch where error.errno == .resourceBusy && attempt < attempts - 1 {
                // A thread of the group started another meanwhile (move it too), or one is
                // still exiting.
                if attempt >= 3 { usleep(10_000) }
                continue
            }
        }
    }

    /// The thread ids of process `pid` (/proc/<pid>/task).
    static func threads(ofProcess pid: Int32) throws(ControlGroupError) -> [Int32] {
        try ControlFiles.subdirectories(of: "/proc/\(pid)/task").compactMap { Int32($0) }
    }
}

extension String {
    var trimmingWhitespace: String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
