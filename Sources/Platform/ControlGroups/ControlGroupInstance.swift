import Glibc
import SystemPackage

/// One root instance's group, `hv/<instance>.<pid>.<start>` below the root's own cgroup, which
/// holds a group per partition (and the parent's, when it is kept apart).
///
/// On cgroup v2 the instance group is the threaded domain: creating it moves the calling
/// process into it, and each group made in it is `threaded`, so single threads of the process
/// can be placed in them.
public final class ControlGroupInstance: Sendable {
    /// The directory below each base that holds every instance's group.
    public static let parentGroupName = "hv"

    public let hierarchy: ControlGroupHierarchy
    /// The root instance's name (letters, digits, '_' and '-').
    public let name: String
    /// The process the groups belong to; once it is gone they are stale.
    public let owner: ProcessIdentity
    /// What the groups can do (on v2, found once the instance group exists).
    public let capabilities: ControlGroupCapabilities
    let directoryName: String

    private init(hierarchy: ControlGroupHierarchy, name: String, owner: ProcessIdentity, capabilities: ControlGroupCapabilities) {
        self.hierarchy = hierarchy
        self.name = name
        self.owner = owner
        self.capabilities = capabilities
        directoryName = InstanceDirectoryName(instance: name, owner: owner).text
    }

    /// Creates (or adopts) the calling process's instance group named `name`.
    public static func create(in hierarchy: ControlGroupHierarchy, name: String) throws(ControlGroupError) -> ControlGroupInstance {
        try create(in: hierarchy, name: name, owner: try ProcessIdentity.current())
    }

    /// As `create(in:name:)` for groups recorded as `owner`'s; the calling process joins the
    /// v2 instance group only when it is the owner. (Tests make groups for a process they then kill.)
    static func create(in hierarchy: ControlGroupHierarchy, name: String, owner: ProcessIdentity) throws(ControlGroupError)
        -> ControlGroupInstance
    {
        guard ControlGroupNames.isValid(name) else {
            throw .invalid("\"\(name)\" cannot name a root instance's group: use 1 to 64 letters, digits, '_' or '-'.")
        }
        switch hierarchy.version {
        case .v1:
            let instance = ControlGroupInstance(
                hierarchy: hierarchy, name: name, owner: owner, capabilities: hierarchy.capabilities)
            for tree in hierarchy.trees {
                try instance.makeV1Directories(in: tree)
            }
            return instance
        case .v2:
            guard let tree = hierarchy.trees.first else { throw .unsupported("The cgroup v2 hierarchy has no directory.") }
            return try makeV2(in: tree, hierarchy: hierarchy, name: name, owner: owner)
        }
    }

    /// The instance's directory in `tree`.
    func directory(in tree: Tree) -> String {
        joinPath(tree.base, Self.parentGroupName, directoryName)
    }

    /// Makes (or adopts) a group for threads, e.g. one partition's virtual processors.
    public func makeGroup(named groupName: String) throws(ControlGroupError) -> ThreadGroup {
        guard ControlGroupNames.isValid(groupName) else {
            throw .invalid("\"\(groupName)\" cannot name a group: use 1 to 64 letters, digits, '_' or '-'.")
        }
        let group = ThreadGroup(instance: self, name: groupName)
        // Directories made here, removed again if a later step fails: a group that was never
        // handed out would otherwise stay until the root stops.
        var made: [String] = []
        do throws(ControlGroupError) {
            for tree in hierarchy.trees {
                let path = group.directory(in: tree)
                let created = try ControlFiles.makeDirectory(path)
                if created { made.append(path) }
                switch hierarchy.version {
                case .v1:
                    if tree.roles.contains(.cpuset) { try Self.inheritCPUSet(into: path, from: directory(in: tree)) }
                case .v2:
                    // A new child of a threaded domain is "domain invalid" until made threaded.
                    let type = created ? "" : try ControlFiles.read(joinPath(path, "cgroup.type"))
                    if created || type.hasPrefix("domain invalid") {
                        try ControlFiles.write("threaded", to: joinPath(path, "cgroup.type"))
                    }
                }
            }
        } catch {
            // Empty and just made: nothing can have joined them yet. A removal that fails
            // leaves the directory for the sweep at the next start, as before.
            for path in made.reversed() { try? ControlFiles.removeDirectory(path) }
            throw error
        }
        return group
    }

    /// The groups made in this instance (by anyone), by name.
    public func groupNames() throws(ControlGroupError) -> [String] {
        guard let tree = hierarchy.trees.first else { return [] }
        return try ControlFiles.subdirectories(of: directory(in: tree)).filter(ControlGroupNames.isValid)
    }

    /// The group called `groupName`, if it exists.
    public func group(named groupName: String) -> ThreadGroup? {
        guard ControlGroupNames.isValid(groupName), let tree = hierarchy.trees.first else { return nil }
        let group = ThreadGroup(instance: self, name: groupName)
        return ControlFiles.isDirectory(group.directory(in: tree)) ? group : nil
    }

    /// Sets how the whole instance weighs against the host's other work: the weight of `hv/`
    /// and of the instance group (v1 `cpu.shares`, v2 `cpu.weight`). Partition reserves are
    /// guaranteed out of what the instance receives, and by default it weighs no more than one
    /// busy host thread. `hv/` is shared by every root instance on the host: the last one set wins.
    public func setWeight(shares: Int, weight: Int) throws(ControlGroupError) {
        try CPUGroupSettings(shares: shares, weight: weight).validate()
        guard capabilities.weights else {
            throw .unsupported("\(hierarchy) has no cpu controller, so the instance cannot be weighted.")
        }
        for tree in hierarchy.trees where tree.roles.contains(.cpu) || tree.roles.contains(.unified) {
            for directory in [joinPath(tree.base, Self.parentGroupName), self.directory(in: tree)] {
                switch hierarchy.version {
                case .v1: try ControlFiles.write("\(shares)", to: joinPath(directory, "cpu.shares"))
                case .v2: try ControlFiles.write("\(weight)", to: joinPath(directory, "cpu.weight"))
                }
            }
        }
    }

    /// Deletes every group (moving their threads back), then the instance group itself, and
    /// `hv/` when nothing else is in it. On cgroup v2 the processes in the instance group go back
    /// to the base first; where the base does not take them (a non-root base with controllers
    /// enabled refuses processes: the no-internal-process rule), the instance group stays, empty
    /// of partitions, until its owner exits and a later root sweeps it.
    public func remove() throws(ControlGroupError) {
        var names = Set<String>()
        for tree in hierarchy.trees where ControlFiles.isDirectory(directory(in: tree)) {
            names.formUnion(try ControlFiles.subdirectories(of: directory(in: tree)))
        }
        for groupName in names.sorted() {
            try ThreadGroup(instance: self, name: groupName).delete()
        }
        for tree in hierarchy.trees {
            let path = directory(in: tree)
            guard ControlFiles.isDirectory(path) else { continue }
            if hierarchy.version == .v2 {
                do {
                    try Self.moveProcesses(from: path, to: tree.base)
                } catch where error.errno == .resourceBusy && owner.isAlive {
                    continue
                }
            } else {
                try Self.moveTasks(from: path, to: tree.base)
            }
            try Self.removeIgnoringAbsence(path)
            Self.removeParentIfEmpty(in: tree)
        }
    }

    /// Removes the groups of every instance whose owner is no longer alive (a root that crashed
    /// or was killed), moving any threads still in them (a surviving parent's) back to the base.
    public static func sweepStale(in hierarchy: ControlGroupHierarchy) -> StaleGroupSweep {
        var sweep = StaleGroupSweep()
        for tree in hierarchy.trees {
            let parent = joinPath(tree.base, parentGroupName)
            guard ControlFiles.isDirectory(parent) else { continue }
            let entries: [String]
            do {
                entries = try ControlFiles.subdirectories(of: parent)
            } catch {
                sweep.failures.append(error)
                continue
            }
            for entry in entries {
                guard let parsed = InstanceDirectoryName(parsing: entry), !parsed.owner.isAlive else { continue }
                let path = joinPath(parent, entry)
                do {
                    if parsed.isStaging {
                        try moveProcesses(from: path, to: tree.base)
                        try removeIgnoringAbsence(path)
                    } else {
                        let stale = ControlGroupInstance(
                            hierarchy: hierarchy, name: parsed.instance, owner: parsed.owner,
                            capabilities: hierarchy.capabilities)
                        try stale.remove()
                    }
                    if !sweep.removed.contains(entry) { sweep.removed.append(entry) }
                } catch {
                    // Another sweeper (a root starting meanwhile) may have removed it first.
                    if ControlFiles.exists(path) { sweep.failures.append(error) }
                }
            }
            removeParentIfEmpty(in: tree)
        }
        return sweep
    }

    // MARK: cgroup v1

    private func makeV1Directories(in tree: Tree) throws(ControlGroupError) {
        let parent = joinPath(tree.base, Self.parentGroupName)
        for attempt in 0..<3 {
            do {
                try ControlFiles.makeDirectory(parent)
                if tree.roles.contains(.cpuset) { try Self.inheritCPUSet(into: parent, from: tree.base) }
                let path = directory(in: tree)
                try ControlFiles.makeDirectory(path)
                if tree.roles.contains(.cpuset) { try Self.inheritCPUSet(into: path, from: parent) }
                return
            } catch where error.errno == .noSuchFileOrDirectory && attempt < 2 {
                continue  // another root's sweep removed an empty hv/ in between: make it again
            }
        }
    }

    /// A new v1 cpuset group starts with no processors and no memory nodes, and refuses threads
    /// until both are set (kernel/cgroup/cpuset.c: cpuset_can_attach, -ENOSPC); give it its
    /// parent's where still empty.
    static func inheritCPUSet(into path: String, from parent: String) throws(ControlGroupError) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = joinPath(path, file)
            guard try ControlFiles.read(own).allSatisfy(\.isWhitespace) else { continue }
            try ControlFiles.write(try ControlFiles.read(joinPath(parent, file)), to: own)
        }
    }

    // MARK: cgroup v2

    /// The controllers the instance's groups get: cpu and cpuset where the base offers them.
    static let threadedControllers = ["cpu", "cpuset"]

    /// Makes `hv/` and the instance group with the cpu (and cpuset) controller enabled down to
    /// it, then moves the owner (the calling process) into it.
    ///
    /// The kernel enables controllers in a group's `cgroup.subtree_control` only while the group
    /// holds no process of its own, unless it is the root (kernel/cgroup/cgroup.c:
    /// cgroup_vet_subtree_control_enable). A delegated base usually holds the process itself,
    /// so the process first steps into a `.staging` sibling of the instance group, the
    /// controllers are enabled top-down, and the process then moves into the instance group,
    /// which becomes the threaded domain when its first threaded child is made.
    private static func makeV2(in tree: Tree, hierarchy: ControlGroupHierarchy, name: String, owner: ProcessIdentity)
        throws(ControlGroupError) -> ControlGroupInstance
    {
        let base = tree.base
        let parent = joinPath(base, parentGroupName)
        let instanceName = InstanceDirectoryName(instance: name, owner: owner)
        let path = joinPath(parent, instanceName.text)
        try ControlFiles.makeDirectory(parent)
        try ControlFiles.makeDirectory(path)

        let offered = words(try ControlFiles.read(joinPath(base, "cgroup.controllers")))
        let wanted = threadedControllers.filter(offered.contains)
        let isOwner = owner.pid == getpid()
        let isRoot = !ControlFiles.exists(joinPath(base, "cgroup.type"))
        let needsEnabling = !Set(wanted).isSubset(of: words(try ControlFiles.read(joinPath(base, "cgroup.subtree_control"))))

        var staging: String?
        if isOwner && needsEnabling && !isRoot {
            let stagingPath = joinPath(parent, InstanceDirectoryName(instance: name, owner: owner, isStaging: true).text)
            try ControlFiles.makeDirectory(stagingPath)
            try ControlFiles.write("\(owner.pid)", to: joinPath(stagingPath, "cgroup.procs"))
            staging = stagingPath
        }
        do throws(ControlGroupError) {
            for directory in [base, parent, path] {
                do {
                    try enable(wanted, in: directory)
                } catch where error.errno == .resourceBusy {
                    throw .unsupported("cgroup v2 group \(directory) holds other processes, so the kernel will not "
                        + "enable the cpu controller below it (the no-internal-process rule); give the root a "
                        + "delegated group of its own.")
                }
            }
            if isOwner { try ControlFiles.write("\(owner.pid)", to: joinPath(path, "cgroup.procs")) }
        } catch {
            // Step back out of the staging group (the base took the process a moment ago).
            if let staging {
                try? moveProcesses(from: staging, to: base)
                try? removeIgnoringAbsence(staging)
            }
            throw error
        }
        if let staging { try removeIgnoringAbsence(staging) }

        let controllers = words(try ControlFiles.read(joinPath(path, "cgroup.controllers")))
        var capabilities = hierarchy.capabilities
        capabilities.weights = controllers.contains("cpu")
        capabilities.cpuset = controllers.contains("cpuset")
        capabilities.usage = ControlFiles.exists(joinPath(path, "cpu.stat"))
        capabilities.bandwidth = ControlFiles.exists(joinPath(path, "cpu.max"))
        if capabilities.weights && !capabilities.bandwidth {
            capabilities.missing.append("The kernel has no CFS bandwidth control (CONFIG_CFS_BANDWIDTH is off: "
                + "\(joinPath(path, "cpu.max")) is absent), so processor limits cannot be enforced.")
        }
        return ControlGroupInstance(hierarchy: hierarchy, name: name, owner: owner, capabilities: capabilities)
    }

    private static func enable(_ controllers: [String], in directory: String) throws(ControlGroupError) {
        let file = joinPath(directory, "cgroup.subtree_control")
        let enabled = words(try ControlFiles.read(file))
        let missing = controllers.filter { !enabled.contains($0) }
        guard !missing.isEmpty else { return }
        try ControlFiles.write(missing.map { "+" + $0 }.joined(separator: " "), to: file)
    }

    // MARK: Moving threads and processes

    /// v1: every task of `directory` into `destination`'s `tasks`. Threads that exit meanwhile
    /// are skipped.
    static func moveTasks(from directory: String, to destination: String) throws(ControlGroupError) {
        for tid in try ids(in: joinPath(directory, "tasks")) {
            try writeIgnoringExited("\(tid)", to: joinPath(destination, "tasks"))
        }
    }

    /// v2: every process of `directory` (a domain) into `destination`'s `cgroup.procs`.
    static func moveProcesses(from directory: String, to destination: String) throws(ControlGroupError) {
        for pid in try ids(in: joinPath(directory, "cgroup.procs")) {
            try writeIgnoringExited("\(pid)", to: joinPath(destination, "cgroup.procs"))
        }
    }

    /// Writes an id into a tasks/threads/procs file; ESRCH means the thread has just exited.
    static func writeIgnoringExited(_ id: String, to path: String) throws(ControlGroupError) {
        do {
            try ControlFiles.write(id, to: path)
        } catch where error.errno == .noSuchProcess {
        }
    }

    /// The ids, one per line, in a tasks, cgroup.threads or cgroup.procs file.
    static func ids(in path: String) throws(ControlGroupError) -> [Int32] {
        let text = try ControlFiles.read(path)
        var ids: [Int32] = []
        for line in text.split(separator: "\n") {
            guard let id = Int32(line), id > 0 else { throw .malformed(path: path, content: String(line)) }
            ids.append(id)
        }
        return ids
    }

    static func removeIgnoringAbsence(_ path: String) throws(ControlGroupError) {
        do {
            try ControlFiles.removeDirectory(path)
        } catch where error.errno == .noSuchFileOrDirectory {
        }
    }

    /// Removes `hv/` if no instance is left in it; another root may be using it, so any failure
    /// just leaves it.
    static func removeParentIfEmpty(in tree: Tree) {
        let parent = joinPath(tree.base, parentGroupName)
        guard let entries = try? ControlFiles.subdirectories(of: parent), entries.isEmpty else { return }
        _ = rmdir(parent)
    }

    static func words(_ text: String) -> [String] {
        text.split(whereSeparator: \.isWhitespace).map(String.init)
    }
}

/// What `ControlGroupInstance.sweepStale` did.
public struct StaleGroupSweep: Sendable {
    /// The stale instance groups removed (`<instance>.<pid>.<start>`).
    public var removed: [String] = []
    /// Groups that could not be removed, and why.
    public var failures: [ControlGroupError] = []
}
