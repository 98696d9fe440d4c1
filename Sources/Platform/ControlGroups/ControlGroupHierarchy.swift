/// A writable cgroup hierarchy with the cpu controller, where the root's groups go.
///
/// - cgroup v1: up to three hierarchies, each mounted separately or together: `cpu` (weights
///   and caps), `cpuacct` (usage) and `cpuset` (pinning). Any thread can be in any group.
/// - cgroup v2: one hierarchy. Threads of one process can be in different groups only inside
///   a threaded subtree, so the root's process lives in its instance group (the threaded
///   domain) and each partition's group below it is `threaded` (Documentation/admin-guide/
///   cgroup-v2.rst, "Threads").
///
/// Groups are created below the calling process's own cgroup in each hierarchy (its `base`),
/// which is what a delegating host hands over.
public struct ControlGroupHierarchy: Sendable, Hashable, CustomStringConvertible {
    public enum Version: Sendable, Hashable { case v1, v2 }

    public let version: Version
    /// The hierarchies and the calling process's cgroup directory in each.
    let trees: [Tree]
    /// What the hierarchy can do, as far as discovery can tell (v2's bandwidth control is only
    /// known once a group with the cpu controller exists; see `ControlGroupInstance.capabilities`).
    public let capabilities: ControlGroupCapabilities

    init(version: Version, trees: [Tree], capabilities: ControlGroupCapabilities) {
        self.version = version
        self.trees = trees
        self.capabilities = capabilities
    }

    /// The tree that holds `role`'s files.
    func tree(_ role: Tree.Role) -> Tree? { trees.first { $0.roles.contains(role) } }

    public var description: String {
        switch version {
        case .v1:
            let parts = trees.map { tree in
                tree.roles.map(\.rawValue).sorted().joined(separator: ",") + " at " + tree.base
            }
            return "cgroup v1 (" + parts.joined(separator: "; ") + ")"
        case .v2:
            return "cgroup v2 at " + (trees.first?.base ?? "?")
        }
    }

    /// The host processors the calling process may use: its cpuset's effective CPUs, or the
    /// online processors where there is no cpuset.
    public func availableProcessors() throws(ControlGroupError) -> [Int] {
        var candidates: [String] = []
        switch version {
        case .v1:
            if let cpuset = tree(.cpuset) {
                candidates += [joinPath(cpuset.base, "cpuset.effective_cpus"), joinPath(cpuset.base, "cpuset.cpus")]
            }
        case .v2:
            if let unified = tree(.unified) { candidates.append(joinPath(unified.base, "cpuset.cpus.effective")) }
        }
        candidates.append("/sys/devices/system/cpu/online")
        for path in candidates where ControlFiles.exists(path) {
            let processors = try CPUList.parse(try ControlFiles.read(path), path: path)
            if !processors.isEmpty { return processors }
        }
        throw .unsupported("No processor list is readable (tried \(candidates.joined(separator: ", "))).")
    }
}

/// One mounted hierarchy and the calling process's cgroup in it.
struct Tree: Sendable, Hashable {
    enum Role: String, Sendable, Hashable {
        case cpu, cpuacct, cpuset
        /// The v2 hierarchy, which has every controller it has in one tree.
        case unified
    }

    var roles: Set<Role>
    /// The calling process's cgroup directory; threads moved out of a group go back here.
    var base: String
}

/// What a hierarchy can do for processor controls.
public struct ControlGroupCapabilities: Sendable, Hashable {
    /// CFS weights: the cpu controller (v1 `cpu.shares`, v2 `cpu.weight`).
    public var weights: Bool
    /// CFS bandwidth caps, which the kernel has only with CONFIG_CFS_BANDWIDTH (v1
    /// `cpu.cfs_quota_us`, v2 `cpu.max`).
    public var bandwidth: Bool
    /// Pinning to host processors: the cpuset controller.
    public var cpuset: Bool
    /// A group's CPU usage (v1 `cpuacct.usage`, v2 `cpu.stat`).
    public var usage: Bool
    /// One sentence for each missing capability, saying what follows from its absence.
    public var missing: [String]

    public init(weights: Bool, bandwidth: Bool, cpuset: Bool, usage: Bool, missing: [String] = []) {
        self.weights = weights
        self.bandwidth = bandwidth
        self.cpuset = cpuset
        self.usage = usage
        self.missing = missing
    }
}
