@testable import ControlGroups
import Glibc
import LinuxSupport
import Subprocess
import Testing

/// The hierarchies of this host the tests can make groups in.
enum Host {
    static let discovery = ControlGroupHierarchy.discover()

    /// The hierarchy the root would use (cgroup v1 here, where cpu is bound to v1).
    static let hierarchy: ControlGroupHierarchy? = {
        if case .available(let hierarchy) = discovery { return hierarchy }
        return nil
    }()

    /// A writable cgroup v2 hierarchy without the cpu controller, when the root would not use
    /// v2: its groups still hold threads, so the threaded-subtree mechanics are tested on it.
    static let threadsOnlyUnified: ControlGroupHierarchy? = {
        guard hierarchy?.version != .v2,
              let mounts = try? ControlFiles.read("/proc/self/mountinfo"),
              let groups = try? ControlFiles.read("/proc/self/cgroup"),
              case .success(let unified) = ControlGroupHierarchy.unified(
                  mounts: MountTable.parse(mounts), groups: ProcessGroups.parse(groups), requiringCPU: false)
        else { return nil }
        return unified
    }()

    static let all: [ControlGroupHierarchy] = [hierarchy, threadsOnlyUnified].compactMap { $0 }

    static func uniqueName(_ prefix: String = "test") -> String {
        "\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// The line of /proc/<pid>/task/<tid>/cgroup for `tree`'s hierarchy.
    static func cgroupLine(thread tid: Int32, in tree: Tree) throws -> String {
        let lines = try ControlFiles.read("/proc/self/task/\(tid)/cgroup").split(separator: "\n").map(String.init)
        let wanted = tree.roles.contains(.unified) ? nil : tree.roles.first?.rawValue
        let line = lines.first { line in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { return false }
            if let wanted { return fields[1].split(separator: ",").contains(Substring(wanted)) }
            return fields[0] == "0"
        }
        return try #require(line)
    }

    static func read(_ path: String) throws -> String {
        try ControlFiles.read(path).trimmingWhitespace
    }
}

@Suite("Control groups on this host", .serialized,
       .enabled(if: !Host.all.isEmpty, "this host has no writable cgroup hierarchy (v1 cpu or v2)"))
struct HostHierarchyTests {
    @Test func discoveryNamesWhatTheHierarchyLacks() throws {
        switch Host.discovery {
        case .available(let hierarchy):
            // Every missing capability comes with its sentence, and only those.
            let capabilities = hierarchy.capabilities
            let missingCount = [capabilities.bandwidth, capabilities.cpuset, capabilities.usage].filter { !$0 }.count
            #expect(capabilities.weights)
            #expect(capabilities.missing.count == missingCount)
            #expect(try !hierarchy.availableProcessors().isEmpty)
        case .unavailable(let reason):
            #expect(reason.hasPrefix("Processor controls are off, and partitions run uncontrolled: "))
        }
    }

    @Test(arguments: Host.all)
    func anInstanceGroupIsNamedAfterTheInstanceAndItsOwner(hierarchy: ControlGroupHierarchy) throws {
        let name = Host.uniqueName()
        let instance = try ControlGroupInstance.create(in: hierarchy, name: name)
        defer { try? instance.remove() }
        let me = try ProcessIdentity.current()
        let group = try instance.makeGroup(named: "alpha")
        for tree in hierarchy.trees {
            let directory = instance.directory(in: tree)
            #expect(directory == tree.base.trimmingSlash + "/hv/\(name).\(me.pid).\(me.startTime)")
            #expect(ControlFiles.isDirectory(directory))
            #expect(ControlFiles.isDirectory(group.directory(in: tree)))
            if hierarchy.version == .v1 && tree.roles.contains(.cpuset) {
                // A v1 cpuset group takes no thread until it has processors and memory nodes.
                #expect(try !Host.read(joinPath(group.directory(in: tree), "cpuset.cpus")).isEmpty)
                #expect(try !Host.read(joinPath(group.directory(in: tree), "cpuset.mems")).isEmpty)
            }
            if hierarchy.version == .v2 {
                #expect(try Host.read(joinPath(group.directory(in: tree), "cgroup.type")) == "threaded")
                #expect(try Host.read(joinPath(directory, "cgroup.type")) == "domain threaded")
            }
        }
        #expect(try instance.groupNames() == ["alpha"])
        #expect(instance.group(named: "alpha") != nil && instance.group(named: "beta") == nil)
        try instance.remove()
        for tree in hierarchy.trees { #expect(!ControlFiles.exists(instance.directory(in: tree))) }
    }

    @Test(arguments: Host.all)
    func weightCapAndProcessorsAreWrittenToTheGroupsFiles(hierarchy: ControlGroupHierarchy) throws {
        let instance = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName())
        defer { try? instance.remove() }
        let group = try instance.makeGroup(named: "alpha")
        let capabilities = instance.capabilities
        let processors = try hierarchy.availableProcessors()
        let settings = CPUGroupSettings(
            shares: 512, weight: 50,
            bandwidth: capabilities.bandwidth ? CPUBandwidth(quotaMicroseconds: 30_000, periodMicroseconds: 50_000) : nil,
            processors: capabilities.cpuset ? [try #require(processors.last)] : nil)
        guard capabilities.weights else {
            #expect(throws: ControlGroupError.unsupported(
                "\(hierarchy) has no cpu controller, so group alpha cannot be weighted.")) { try group.apply(settings) }
            return
        }
        try group.apply(settings)
        switch hierarchy.version {
        case .v1:
            let cpu = try #require(group.directory(for: .cpu))
            #expect(try Host.read(joinPath(cpu, "cpu.shares")) == "512")
            if capabilities.bandwidth {
                #expect(try Host.read(joinPath(cpu, "cpu.cfs_quota_us")) == "30000")
                #expect(try Host.read(joinPath(cpu, "cpu.cfs_period_us")) == "50000")
            }
            if let cpuset = group.directory(for: .cpuset) {
                #expect(try Host.read(joinPath(cpuset, "cpuset.cpus")) == "\(processors.last ?? -1)")
            }
        case .v2:
            let directory = try #require(group.directory(for: .unified))
            #expect(try Host.read(joinPath(directory, "cpu.weight")) == "50")
            if capabilities.bandwidth { #expect(try Host.read(joinPath(directory, "cpu.max")) == "30000 50000") }
        }
        // No cap and no pinning put the defaults back.
        try group.apply(CPUGroupSettings(shares: 1024, weight: 100))
        if hierarchy.version == .v1, capabilities.bandwidth, let cpu = group.directory(for: .cpu) {
            #expect(try Host.read(joinPath(cpu, "cpu.cfs_quota_us")) == "-1")
        }
        if hierarchy.version == .v1, let cpusetTree = hierarchy.tree(.cpuset) {
            #expect(try Host.read(joinPath(group.directory(in: cpusetTree), "cpuset.cpus"))
                == Host.read(joinPath(instance.directory(in: cpusetTree), "cpuset.cpus")))
        }
    }

    @Test(arguments: Host.all)
    func theInstancesWeightIsWrittenToHvAndTheInstanceGroup(hierarchy: ControlGroupHierarchy) throws {
        let instance = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName())
        defer { try? instance.remove() }
        guard instance.capabilities.weights else {
            #expect(throws: ControlGroupError.self) { try instance.setWeight(shares: 4096, weight: 400) }
            return
        }
        let tree = try #require(hierarchy.tree(hierarchy.version == .v1 ? .cpu : .unified))
        let file = hierarchy.version == .v1 ? "cpu.shares" : "cpu.weight"
        let value = hierarchy.version == .v1 ? "4096" : "400"
        // `hv/` is shared: a root that other tests start meanwhile sets its own weight there (the
        // last one set wins), so the value must be read back after one of a few settings.
        var shared: [String] = []
        for _ in 0..<5 where shared.last != value {
            try instance.setWeight(shares: 4096, weight: 400)
            shared.append(try Host.read(joinPath(tree.base, "hv", file)))
        }
        #expect(shared.last == value, "hv/\(file) read \(shared) after each setting")
        #expect(try Host.read(joinPath(instance.directory(in: tree), file)) == value)
    }

    @Test(arguments: Host.all)
    func spinningThreadsAreAttachedByThreadIDAndAccounted(hierarchy: ControlGroupHierarchy) throws {
        let instance = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName())
        defer { try? instance.remove() }
        let alpha = try instance.makeGroup(named: "alpha")
        let beta = try instance.makeGroup(named: "beta")
        let spinners = try Spinners(count: 3)
        defer { spinners.stop() }
        let tids = try spinners.threadIDs()
        try alpha.attach(thread: tids[0])
        try alpha.attach(thread: tids[1])
        try beta.attach(thread: tids[2])
        #expect(try alpha.threads() == tids[0...1].sorted())
        #expect(try beta.threads() == [tids[2]])
        for tree in hierarchy.trees {
            #expect(try Host.cgroupLine(thread: tids[0], in: tree).hasSuffix("/hv/\(instance.directoryName)/alpha"))
            #expect(try Host.cgroupLine(thread: tids[2], in: tree).hasSuffix("/hv/\(instance.directoryName)/beta"))
        }

        if instance.capabilities.usage {
            // Once each thread has run after joining, the group has used some CPU, and never
            // more than its threads have used in all.
            let start = try tids[0...1].map { try ThreadCPUTime.nanoseconds(thread: $0) }
            for (tid, before) in zip(tids[0...1], start) { try waitUntilThread(tid, hasRun: 2_000_000, since: before) }
            let usage = try alpha.usageNanoseconds()
            let total = try tids[0...1].reduce(UInt64(0)) { $0 + (try ThreadCPUTime.nanoseconds(thread: $1)) }
            #expect(usage > 0 && usage <= total)
        }

        // Threads that exit leave the group: the kernel takes an exiting thread out of its group
        // a moment after pthread_join returns (the join wakes on the thread's tid being cleared,
        // earlier in its exit), so this waits for it, up to five seconds.
        spinners.stop()
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while MonotonicClock.nanoseconds() < deadline, try !(alpha.threads().isEmpty && beta.threads().isEmpty) {
            MonotonicClock.sleep(.milliseconds(5))
        }
        #expect(try alpha.threads() == [] && beta.threads() == [])
    }

    @Test(arguments: Host.all)
    func detachingAndDeletingMoveThreadsBackAndLeaveNoGroup(hierarchy: ControlGroupHierarchy) throws {
        let instance = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName())
        defer { try? instance.remove() }
        let alpha = try instance.makeGroup(named: "alpha")
        let spinners = try Spinners(count: 2)
        defer { spinners.stop() }
        let tids = try spinners.threadIDs()
        for tid in tids { try alpha.attach(thread: tid) }
        try alpha.detach(thread: tids[0])
        #expect(try alpha.threads() == [tids[1]])
        #expect(try home(of: instance).allSatisfy { try ControlGroupInstance.ids(in: $0).contains(tids[0]) })

        try alpha.delete()
        for directory in alpha.directories { #expect(!ControlFiles.exists(directory)) }
        #expect(try home(of: instance).allSatisfy { try ControlGroupInstance.ids(in: $0).contains(tids[1]) })
        #expect(try instance.groupNames() == [])
        // Detaching a thread that has exited is not an error.
        try alpha.detach(thread: tids[0])
    }

    @Test(arguments: Host.all)
    func removingTheInstanceMovesEveryThreadBackAndLeavesNothing(hierarchy: ControlGroupHierarchy) throws {
        let instance = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName())
        let spinners = try Spinners(count: 2)
        defer { spinners.stop() }
        let tids = try spinners.threadIDs()
        for (index, name) in ["alpha", "beta"].enumerated() {
            let group = try instance.makeGroup(named: name)
            if instance.capabilities.weights {
                try group.apply(CPUGroupSettings(shares: 300, weight: 30).restricted(to: instance.capabilities).settings)
            }
            try group.attach(thread: tids[index])
        }
        try instance.remove()
        for tree in hierarchy.trees {
            #expect(!ControlFiles.exists(instance.directory(in: tree)))
            let file = joinPath(tree.base, hierarchy.version == .v1 ? "tasks" : "cgroup.threads")
            let home = try ControlGroupInstance.ids(in: file)
            #expect(tids.allSatisfy(home.contains))
        }
        if hierarchy.version == .v2 {
            // The process is back in its own cgroup.
            #expect(try Host.cgroupLine(thread: getpid(), in: hierarchy.trees[0]).hasSuffix(":/"))
        }
    }

    @Test(arguments: Host.all)
    func groupsOfARootThatDiedAreSwept(hierarchy: ControlGroupHierarchy) async throws {
        let live = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName("live"))
        defer { try? live.remove() }
        _ = try live.makeGroup(named: "alpha")
        let staleName = Host.uniqueName("crashed")
        // A stand-in root: a real process that owns groups, has its thread in one, and is killed.
        let result = try await Subprocess.run(
            .path("/bin/sleep"), arguments: ["600"], input: .none, output: .discarded, error: .discarded
        ) { execution in
            let pid = execution.processIdentifier.value
            let owner = try ProcessIdentity.of(pid: pid)
            let stale = try ControlGroupInstance.create(in: hierarchy, name: staleName, owner: owner)
            let group = try stale.makeGroup(named: "alpha")
            try group.attach(process: pid)
            #expect(try group.threads() == [pid])
            // While it lives, its groups are not stale.
            #expect(!ControlGroupInstance.sweepStale(in: hierarchy).removed.contains(stale.directoryName))
            kill(pid, SIGKILL)
            return stale.directoryName
        }
        let staleDirectory = result.closureResult
        // A root that another test starts meanwhile sweeps too and may get there first (so the
        // directory may not be in this sweep's list): what counts is that the dead root's groups
        // are gone after it and the live one's are kept.
        let sweep = ControlGroupInstance.sweepStale(in: hierarchy)
        #expect(sweep.failures.isEmpty, "\(sweep.failures)")
        for tree in hierarchy.trees {
            #expect(!ControlFiles.exists(joinPath(tree.base, "hv", staleDirectory)))
            #expect(ControlFiles.isDirectory(live.directory(in: tree)))
        }
        #expect(try live.groupNames() == ["alpha"])
    }

    @Test(arguments: Host.all)
    func failuresNameTheOperationThePathAndTheErrno(hierarchy: ControlGroupHierarchy) throws {
        let instance = try ControlGroupInstance.create(in: hierarchy, name: Host.uniqueName())
        defer { try? instance.remove() }
        let group = try instance.makeGroup(named: "alpha")
        do {
            try group.attach(thread: Int32.max)
            Issue.record("a thread that does not exist was attached")
        } catch {
            #expect(error.errno == .noSuchProcess)
            guard case .system(let operation, let path, _) = error else { return }
            #expect(operation == "write \"2147483647\" to")
            #expect(path.hasPrefix(group.directories[0]))
            #expect(error.description.hasPrefix("write \"2147483647\" to \(path) failed: "))
        }
        #expect(throws: ControlGroupError.invalid(
            "\"../escape\" cannot name a group: use 1 to 64 letters, digits, '_' or '-'.")) {
            try instance.makeGroup(named: "../escape")
        }
        #expect(throws: ControlGroupError.invalid("cpu.shares must be between 2 and 262144, not 1.")) {
            try group.apply(CPUGroupSettings(shares: 1, weight: 100))
        }
        if hierarchy.version == .v1 {
            // `tasks` is a control file of the instance group, not a group.
            #expect(throws: ControlGroupError.self) { try instance.makeGroup(named: "tasks") }
        }
    }

    @Test func aProcessIdentityOutlivesNoProcess() async throws {
        let me = try ProcessIdentity.current()
        #expect(me.isAlive)
        #expect(!ProcessIdentity(pid: me.pid, startTime: me.startTime + 1).isAlive)
        let result = try await Subprocess.run(
            .path("/bin/true"), input: .none, output: .discarded, error: .discarded
        ) { execution in
            try ProcessIdentity.of(pid: execution.processIdentifier.value)
        }
        #expect(!result.closureResult.isAlive)
    }

    /// The files a thread detached from `instance`'s groups goes back to.
    private func home(of instance: ControlGroupInstance) -> [String] {
        instance.hierarchy.trees.map { tree in
            instance.hierarchy.version == .v1
                ? joinPath(tree.base, "tasks") : joinPath(instance.directory(in: tree), "cgroup.threads")
        }
    }
}

extension String {
    var trimmingSlash: String { self == "/" || !hasSuffix("/") ? self : String(dropLast()) }
}
