/// The outcome of looking for a usable hierarchy.
public enum ControlGroupDiscovery: Sendable {
    case available(ControlGroupHierarchy)
    /// No writable hierarchy with the cpu controller; the sentence says why, once, for the log.
    case unavailable(reason: String)
}

extension ControlGroupHierarchy {
    /// Finds the hierarchy to use from /proc/self/mountinfo and /proc/self/cgroup: cgroup v2
    /// where the process's cgroup offers the cpu controller and is writable (a delegated
    /// subtree), else cgroup v1's `cpu` hierarchy (with `cpuacct` and `cpuset` where mounted).
    public static func discover() -> ControlGroupDiscovery {
        let mountInfo: String
        let groups: String
        do {
            mountInfo = try ControlFiles.read("/proc/self/mountinfo")
            groups = try ControlFiles.read("/proc/self/cgroup")
        } catch {
            return .unavailable(reason: "Processor controls are off: \(error).")
        }
        return discover(mounts: MountTable.parse(mountInfo), groups: ProcessGroups.parse(groups))
    }

    static func discover(mounts: [MountEntry], groups: [ProcessGroupEntry]) -> ControlGroupDiscovery {
        var reasons: [String] = []
        switch unified(mounts: mounts, groups: groups, requiringCPU: true) {
        case .success(let hierarchy): return .available(hierarchy)
        case .failure(let reason): reasons.append(reason.sentence)
        }
        switch legacy(mounts: mounts, groups: groups) {
        case .success(let hierarchy): return .available(hierarchy)
        case .failure(let reason): reasons.append(reason.sentence)
        }
        return .unavailable(reason: "Processor controls are off, and partitions run uncontrolled: "
            + reasons.joined(separator: "; ") + ".")
    }

    struct Unusable: Error {
        var sentence: String
    }

    /// The v2 hierarchy, if mounted writable with the calling process's cgroup visible in it.
    /// `requiringCPU: false` accepts one without the cpu controller, whose groups then only
    /// hold threads (the tests use it for the threaded-subtree mechanics on hosts whose cpu
    /// controller is bound to v1).
    static func unified(mounts: [MountEntry], groups: [ProcessGroupEntry], requiringCPU: Bool)
        -> Result<ControlGroupHierarchy, Unusable>
    {
        guard let entry = groups.first(where: { $0.hierarchyID == 0 }) else {
            return .failure(Unusable(sentence: "this process is in no cgroup v2 hierarchy"))
        }
        let candidates = mounts.filter { $0.fileSystemType == "cgroup2" }
        guard !candidates.isEmpty else { return .failure(Unusable(sentence: "cgroup v2 is not mounted")) }
        guard let mount = candidates.first(where: { !$0.isReadOnly && directory(of: entry.path, in: $0) != nil }),
              let base = directory(of: entry.path, in: mount)
        else {
            return .failure(Unusable(sentence: "cgroup v2 is mounted only read-only or without this process's cgroup"))
        }
        let controllers: [String]
        do {
            controllers = try ControlFiles.read(joinPath(base, "cgroup.controllers")).split(whereSeparator: \.isWhitespace)
                .map(String.init)
        } catch {
            return .failure(Unusable(sentence: "cgroup v2 at \(base) is unreadable (\(error))"))
        }
        let hasCPU = controllers.contains("cpu")
        if requiringCPU && !hasCPU {
            return .failure(Unusable(sentence: "cgroup v2 at \(base) does not offer the cpu controller "
                + "(it is bound to a v1 hierarchy, or not delegated)"))
        }
        guard ControlFiles.isWritable(base) else {
            return .failure(Unusable(sentence: "cgroup v2 at \(base) is not writable by this process"))
        }
        // The root cgroup has no cgroup.type; an unreadable one is left for group creation to report.
        let typePath = joinPath(base, "cgroup.type")
        if ControlFiles.exists(typePath), let type = try? ControlFiles.read(typePath),
           type.hasPrefix("threaded") || type.hasPrefix("domain invalid")
        {
            // The process already sits in someone else's threaded subtree: it cannot own one.
            return .failure(Unusable(sentence: "cgroup v2 group \(base) is \(type.split(separator: "\n").first ?? "")"
                + ", so no threaded domain can be made under it"))
        }
        var missing: [String] = []
        if !hasCPU { missing.append("cgroup v2 at \(base) has no cpu controller, so groups only hold threads.") }
        let hasCPUSet = controllers.contains("cpuset")
        if !hasCPUSet {
            missing.append("cgroup v2 at \(base) has no cpuset controller, so processors cannot be pinned.")
        }
        return .success(ControlGroupHierarchy(
            version: .v2,
            trees: [Tree(roles: [.unified], base: base)],
            capabilities: ControlGroupCapabilities(
                weights: hasCPU, bandwidth: hasCPU, cpuset: hasCPUSet,
                usage: ControlFiles.exists(joinPath(base, "cpu.stat")),
                missing: missing)))
    }

    /// The v1 hierarchies: `cpu` is required; `cpuacct` and `cpuset` are used where mounted.
    static func legacy(mounts: [MountEntry], groups: [ProcessGroupEntry]) -> Result<ControlGroupHierarchy, Unusable> {
        /// The calling process's cgroup directory in the writable v1 hierarchy that has `controller`.
        func base(of controller: String) -> Result<String, Unusable> {
            guard let entry = groups.first(where: { $0.hierarchyID > 0 && $0.controllers.contains(controller) }) else {
                return .failure(Unusable(sentence: "no cgroup v1 hierarchy has the \(controller) controller"))
            }
            let candidates = mounts.filter { $0.fileSystemType == "cgroup" && $0.superOptions.contains(controller) }
            guard let mount = candidates.first(where: { !$0.isReadOnly && directory(of: entry.path, in: $0) != nil }),
                  let base = directory(of: entry.path, in: mount)
            else {
                return .failure(Unusable(sentence: candidates.isEmpty
                    ? "the cgroup v1 \(controller) hierarchy is not mounted"
                    : "the cgroup v1 \(controller) hierarchy is mounted only read-only or without this process's cgroup"))
            }
            guard ControlFiles.isWritable(base) else {
                return .failure(Unusable(sentence: "the cgroup v1 \(controller) hierarchy at \(base) is not writable by this process"))
            }
            return .success(base)
        }

        let cpuBase: String
        switch base(of: "cpu") {
        case .success(let found): cpuBase = found
        case .failure(let reason): return .failure(reason)
        }
        guard ControlFiles.exists(joinPath(cpuBase, "cpu.shares")) else {
            return .failure(Unusable(sentence: "the cgroup v1 cpu hierarchy at \(cpuBase) has no cpu.shares"))
        }
        var trees = [Tree(roles: [.cpu], base: cpuBase)]
        var missing: [String] = []
        func add(_ role: Tree.Role, at directory: String) {
            if let index = trees.firstIndex(where: { $0.base == directory }) {
                trees[index].roles.insert(role)  // mounted together, as "cpu,cpuacct" often is
            } else {
                trees.append(Tree(roles: [role], base: directory))
            }
        }
        let bandwidth = ControlFiles.exists(joinPath(cpuBase, "cpu.cfs_quota_us"))
        if !bandwidth {
            missing.append("The kernel has no CFS bandwidth control (CONFIG_CFS_BANDWIDTH is off: "
                + "\(joinPath(cpuBase, "cpu.cfs_quota_us")) is absent), so processor limits cannot be enforced.")
        }
        var usage = false
        switch base(of: "cpuacct") {
        case .success(let directory) where ControlFiles.exists(joinPath(directory, "cpuacct.usage")):
            add(.cpuacct, at: directory)
            usage = true
        case .success(let directory):
            missing.append("The cgroup v1 cpuacct hierarchy at \(directory) has no cpuacct.usage, so group usage is unknown.")
        case .failure(let reason):
            missing.append("Group usage is unknown: \(reason.sentence).")
        }
        var cpuset = false
        switch base(of: "cpuset") {
        case .success(let directory) where ControlFiles.exists(joinPath(directory, "cpuset.cpus")):
            add(.cpuset, at: directory)
            cpuset = true
        case .success(let directory):
            missing.append("The cgroup v1 cpuset hierarchy at \(directory) has no cpuset.cpus, so processors cannot be pinned.")
        case .failure(let reason):
            missing.append("Processors cannot be pinned: \(reason.sentence).")
        }
        return .success(ControlGroupHierarchy(
            version: .v1, trees: trees,
            capabilities: ControlGroupCapabilities(
                weights: true, bandwidth: bandwidth, cpuset: cpuset, usage: usage, missing: missing)))
    }

    /// The directory of cgroup `path` under `mount`, or nil when the mount does not show it
    /// (a container that mounts only its own subtree shows paths below its root).
    static func directory(of path: String, in mount: MountEntry) -> String? {
        if mount.root == "/" { return joinPath(mount.mountPoint, path) }
        if path == mount.root { return mount.mountPoint }
        guard path.hasPrefix(mount.root + "/") else { return nil }
        return joinPath(mount.mountPoint, String(path.dropFirst(mount.root.count)))
    }
}
