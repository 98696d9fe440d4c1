@testable import ControlGroups
import Foundation
import LinuxSupport
import Logging
import ManagementAPI
@testable import RootScheduler
import Synchronization
import Testing

/// This host's hierarchy, if the root could use one (cgroup v1 on the development machines).
enum Host {
    static let hierarchy: ControlGroupHierarchy? = {
        if case .available(let hierarchy) = ControlGroupHierarchy.discover() { return hierarchy }
        return nil
    }()

    static var reason: String {
        if case .unavailable(let reason) = ControlGroupHierarchy.discover() { return reason }
        return "no writable cgroup hierarchy"
    }

    static let quiet: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()

    /// A controller with an instance of its own, so tests never meet another root's groups.
    static func control(parentProcessors: [Int]? = nil, logger: Logger = quiet) throws -> ProcessorControl {
        try ProcessorControl(options: ProcessorControlOptions(parentProcessors: parentProcessors), logger: logger,
                             instanceName: "test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    static func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The directory of `directories` in the hierarchy mounted as `<controller>` (alone or with
    /// others, as `cpu,cpuacct`).
    static func directory(_ directories: [String], _ controller: String) throws -> String {
        try #require(directories.first { directory in
            directory.split(separator: "/").contains { $0.split(separator: ",").contains(Substring(controller)) }
        }, "no \(controller) directory in \(directories)")
    }

    static func ids(_ path: String) throws -> [Int32] {
        try read(path).split(separator: "\n").compactMap { Int32($0) }
    }
}

/// Threads that sleep until stopped, standing in for virtual processors.
final class Sleepers: Sendable {
    private final class Flag: Sendable {
        let stopping = Atomic<Bool>(false)
    }

    private let flag = Flag()
    private let threads: [OSThread]

    init(count: Int) throws {
        let flag = flag
        var threads: [OSThread] = []
        for index in 0..<count {
            threads.append(try OSThread.spawn(name: "sleeper\(index)") {
                while !flag.stopping.load(ordering: .relaxed) { usleep(1000) }
            })
        }
        self.threads = threads
    }

    func ids() throws -> [Int32] {
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        return try threads.map { thread in
            while thread.kernelThreadID == nil && MonotonicClock.nanoseconds() < deadline { usleep(1000) }
            return try #require(thread.kernelThreadID)
        }
    }

    func stop() {
        flag.stopping.store(true, ordering: .relaxed)
        for thread in threads { thread.join() }
    }
}

@Suite("The root's processor controls in real control groups", .serialized,
       .enabled(if: Host.hierarchy != nil, "this host has no writable cgroup hierarchy with the cpu controller"))
struct ProcessorControlGroupTests {
    @Test func aPartitionsGroupCarriesItsControlsAndItsThreadsAndGoesWithIt() throws {
        let control = try Host.control()
        defer { control.shutdown() }
        #expect(control.isEnforced)
        try control.admit(name: "alpha", processorCount: 2, settings: ProcessorSettings(limit: 50, weight: 200))
        let directories = try #require(control.group(of: "alpha")).directories
        for directory in directories { #expect(FileManager.default.fileExists(atPath: directory)) }
        let info = try #require(control.controls(of: "alpha"))
        #expect(info == ProcessorControlsInfo(reserve: 0, limit: 50, weight: 200, affinity: nil, enforced: true))
        if Host.hierarchy?.version == .v1 {
            let cpu = try Host.directory(directories, "cpu")
            #expect(try Host.read(cpu + "/cpu.shares") == "2048")
            // 50 % of 2 processors: one processor's worth per 100 ms period.
            #expect(try Host.read(cpu + "/cpu.cfs_quota_us") == "100000")
            #expect(try Host.read(cpu + "/cpu.cfs_period_us") == "100000")
        } else {
            #expect(try Host.read(directories[0] + "/cpu.weight") == "200")
            #expect(try Host.read(directories[0] + "/cpu.max") == "100000 100000")
        }

        let threads = try Sleepers(count: 2)
        defer { threads.stop() }
        let tids = try threads.ids()
        for tid in tids { control.attach(thread: tid, to: "alpha") }
        let tasks = Host.hierarchy?.version == .v1 ? "/tasks" : "/cgroup.threads"
        for directory in directories { #expect(try Set(Host.ids(directory + tasks)) == Set(tids)) }

        control.release(name: "alpha")
        for directory in directories { #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) is left") }
        #expect(control.group(of: "alpha") == nil && control.controls(of: "alpha") == nil)
        // The threads are back where the root's threads live, and still run.
        if Host.hierarchy?.version == .v1 {
            let home = try Host.read("/proc/self/task/\(tids[0])/cgroup")
            #expect(!home.contains("/hv/"), "\(home)")
        }
    }

    /// A partition whose group cannot be made would run outside every control while the table
    /// counted its reserve: it is refused. On cgroup v1 a partition named `tasks` is one (the
    /// group's directory would be the hierarchy's own `tasks` file).
    @Test func aPartitionWhoseGroupCannotBeMadeIsRefused() throws {
        let control = try Host.control()
        defer { control.shutdown() }
        guard Host.hierarchy?.version == .v1 else { return }
        for _ in 0..<2 {
            do {
                try control.admit(name: "tasks", processorCount: 1, settings: ProcessorSettings(reserve: 50))
                Issue.record("admitted without a group")
            } catch {
                // Not `nameTaken` the second time: the first left nothing in the table.
                guard case .conflict(let sentence) = error else { Issue.record("\(error)"); continue }
                #expect(sentence.contains("control group could not be made"))
            }
        }
        #expect(control.controls(of: "tasks") == nil)
    }

    @Test func controlsChangedAtRunTimeAreWrittenAndReweighTheOthers() throws {
        let control = try Host.control()
        defer { control.shutdown() }
        try control.admit(name: "alpha", processorCount: 1, settings: nil)
        try control.admit(name: "beta", processorCount: 1, settings: ProcessorSettings(weight: 300))
        let alpha = try #require(control.group(of: "alpha")).directories
        let beta = try #require(control.group(of: "beta")).directories
        guard Host.hierarchy?.version == .v1 else { return }
        let alphaCPU = try Host.directory(alpha, "cpu")
        let betaCPU = try Host.directory(beta, "cpu")
        #expect(try Host.read(alphaCPU + "/cpu.shares") == "1024")
        #expect(try Host.read(betaCPU + "/cpu.shares") == "3072")
        #expect(try Host.read(alphaCPU + "/cpu.cfs_quota_us") == "-1")

        try control.change(name: "alpha", to: ProcessorSettings(limit: 30, affinity: [0]))
        #expect(try Host.read(alphaCPU + "/cpu.cfs_quota_us") == "30000")
        #expect(try Host.read(Host.directory(alpha, "cpuset") + "/cpuset.cpus") == "0")
        #expect(control.controls(of: "alpha") == ProcessorControlsInfo(reserve: 0, limit: 30, weight: 100,
                                                                              affinity: [0], enforced: true))
        // A reserve changes every weight of the partitions it competes with: alpha's 50 % of one of
        // two processors is a quarter of the capacity, so its share must be at least a quarter.
        try control.change(name: "alpha", to: ProcessorSettings(reserve: 30, affinity: []))
        let alphaShares = try #require(Int(Host.read(alphaCPU + "/cpu.shares")))
        let betaShares = try #require(Int(Host.read(betaCPU + "/cpu.shares")))
        #expect(Double(alphaShares) / Double(alphaShares + betaShares) >= 0.15)
        #expect(betaShares != 3072)
        #expect(try Host.read(Host.directory(alpha, "cpuset") + "/cpuset.cpus")
            == Host.read(Host.directory(alpha, "cpuset") + "/../cpuset.cpus"))
        // Lifting the limit lifts the cap.
        try control.change(name: "alpha", to: ProcessorSettings(limit: 100))
        #expect(try Host.read(alphaCPU + "/cpu.cfs_quota_us") == "-1")
    }

    @Test func reservesThatCannotAllBeMetAreRefusedAndChangeNothing() throws {
        let control = try Host.control()
        defer { control.shutdown() }
        let processors = try #require(Host.hierarchy).availableProcessors().count
        try control.admit(name: "alpha", processorCount: processors, settings: ProcessorSettings(reserve: 100))
        do {
            try control.admit(name: "beta", processorCount: 1, settings: ProcessorSettings(reserve: 10))
            Issue.record("a reserve beyond the host's processors was accepted")
        } catch {
            let needed = processors * 100 + 10
            #expect(error == .conflict(
                "The processor reserves of partitions alpha and beta need \(needed / 100).1 host processors, but they may "
                    + "run only on host \(processors == 1 ? "processor 0" : "processors 0-\(processors - 1)") (\(processors) in all), "
                    + "so not every reserve could be met under contention."))
            #expect(error.status == 409)
        }
        #expect(control.group(of: "beta") == nil && control.controls(of: "beta") == nil)
        // Out-of-range values and a reserve above the limit are refused as bad requests.
        #expect(throws: RootError.invalidRequest("Partition gamma: The processor weight must be between 1 and 10000, not 0.")) {
            try control.admit(name: "gamma", processorCount: 1, settings: ProcessorSettings(weight: 0))
        }
        #expect(throws: RootError.self) {
            try control.change(name: "alpha", to: ProcessorSettings(reserve: 80, limit: 50))
        }
        #expect(control.controls(of: "alpha")?.reserve == 100)
        // Freeing alpha's reserve makes room.
        try control.change(name: "alpha", to: ProcessorSettings(reserve: 50))
        try control.admit(name: "beta", processorCount: 1, settings: ProcessorSettings(reserve: 10))
        #expect(control.group(of: "beta") != nil)
    }

    @Test func theParentsThreadsJoinTheirGroupKeptApartWhenAsked() throws {
        let processors = try #require(Host.hierarchy).availableProcessors()
        guard processors.count >= 2, Host.hierarchy?.capabilities.cpuset == true else { return }
        let control = try Host.control(parentProcessors: [processors[0]])
        defer { control.shutdown() }
        let parent = Process()
        parent.executableURL = URL(fileURLWithPath: "/bin/sleep")
        parent.arguments = ["60"]
        try parent.run()
        defer {
            kill(parent.processIdentifier, SIGKILL)
            ChildExit.wait(for: parent.processIdentifier, timeoutNanoseconds: 10_000_000_000)
        }
        control.parentConnected(processID: parent.processIdentifier)
        let instance = try #require(control.instance)
        let group = try #require(instance.group(named: ProcessorControl.parentGroupName))
        let cpuset = try Host.directory(group.directories, "cpuset")
        #expect(try Host.ids(cpuset + "/tasks") == [parent.processIdentifier])
        #expect(try Host.read(cpuset + "/cpuset.cpus") == "\(processors[0])")
        // Partitions get the other processors.
        try control.admit(name: "alpha", processorCount: 1, settings: nil)
        let alpha = try Host.directory(#require(control.group(of: "alpha")).directories, "cpuset")
        #expect(try Host.read(alpha + "/cpuset.cpus") == ProcessorListText.format(Array(processors.dropFirst())))
        // ... and may not be pinned onto the parent's.
        #expect(throws: RootError.self) {
            try control.change(name: "alpha", to: ProcessorSettings(affinity: [processors[0]]))
        }
    }

    @Test func shuttingDownRemovesTheInstanceAndEveryGroupInIt() throws {
        let control = try Host.control()
        try control.admit(name: "alpha", processorCount: 1, settings: nil)
        try control.admit(name: "beta", processorCount: 1, settings: ProcessorSettings(limit: 10))
        let instance = try #require(control.instance)
        let directories = try #require(instance.group(named: "alpha")).directories
            .map { URL(fileURLWithPath: $0).deletingLastPathComponent().path }
        control.shutdown()
        for directory in directories { #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) is left") }
    }

    /// A control this host cannot enforce (a limit without CFS bandwidth control) is applied
    /// without it, and the partition's controls are shown as not enforced, while a partition
    /// that asks only for what the host can do shows them enforced. Before: both showed
    /// `"enforced": true`.
    @Test(.enabled(if: Host.hierarchy?.version == .v1, "a v1 instance's capabilities are its hierarchy's, which the test can reduce"))
    func controlsTheHostCannotEnforceAreShownAsNotEnforced() throws {
        let hierarchy = try #require(Host.hierarchy)
        var capabilities = hierarchy.capabilities
        capabilities.bandwidth = false
        let reduced = ControlGroupHierarchy(version: hierarchy.version, trees: hierarchy.trees, capabilities: capabilities)
        let control = try ProcessorControl(options: ProcessorControlOptions(), logger: Host.quiet,
                                           instanceName: "test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
                                           discovery: .available(reduced))
        defer { control.shutdown() }
        try control.admit(name: "limited", processorCount: 1, settings: ProcessorSettings(limit: 40))
        try control.admit(name: "weighted", processorCount: 1, settings: ProcessorSettings(weight: 300))
        #expect(control.controls(of: "limited")?.enforced == false)
        #expect(control.controls(of: "weighted")?.enforced == true)
        // Asking for no limit any more leaves nothing out: enforced again.
        try control.change(name: "limited", to: ProcessorSettings(limit: 100))
        #expect(control.controls(of: "limited")?.enforced == true)
        control.release(name: "limited")
        control.release(name: "weighted")
    }

    /// Controls the kernel did not take are not reported as in force: a change whose group cannot
    /// be written (its directories removed behind the root's back) is refused, keeps the previous
    /// controls and shows them as not enforced, and a later write that succeeds enforces them again.
    @Test func aChangeTheKernelDoesNotTakeIsRefusedAndShownAsNotEnforced() throws {
        let control = try Host.control()
        defer { control.shutdown() }
        try control.admit(name: "alpha", processorCount: 1, settings: ProcessorSettings(limit: 50))
        let directories = try #require(control.group(of: "alpha")).directories
        for directory in directories { #expect(rmdir(directory) == 0, "\(directory): errno \(errno)") }
        do {
            try control.change(name: "alpha", to: ProcessorSettings(limit: 30))
            Issue.record("a change written into no group was accepted")
        } catch {
            guard case .conflict(let sentence) = error else { Issue.record("\(error)"); return }
            #expect(sentence.contains("could not be changed") && sentence.contains("not enforced"), "\(sentence)")
        }
        #expect(control.controls(of: "alpha") == ProcessorControlsInfo(reserve: 0, limit: 50, weight: 100, affinity: nil,
                                                                         enforced: false))
        // The release of a group that is gone already is quiet and complete.
        control.release(name: "alpha")
        #expect(control.controls(of: "alpha") == nil)
        try control.admit(name: "alpha", processorCount: 1, settings: nil)
        #expect(control.controls(of: "alpha")?.enforced == true)
    }

    /// A processor thread that could not join its group runs outside the partition's controls,
    /// so they are no longer shown as enforced.
    @Test func aThreadThatCannotJoinItsGroupLeavesTheControlsNotEnforced() throws {
        let control = try Host.control()
        defer { control.shutdown() }
        try control.admit(name: "alpha", processorCount: 1, settings: ProcessorSettings(weight: 200))
        #expect(control.controls(of: "alpha")?.enforced == true)
        // No thread has this id (above the kernel's largest, 2^22).
        control.attach(thread: 0x7FFF_FFF0, to: "alpha")
        #expect(control.controls(of: "alpha")?.enforced == false)
        // Rewriting the group does not bring that thread in: still not enforced.
        try control.change(name: "alpha", to: ProcessorSettings(weight: 300))
        #expect(control.controls(of: "alpha") == ProcessorControlsInfo(reserve: 0, limit: 100, weight: 300, affinity: nil,
                                                                         enforced: false))
        // Nor does a write that fails meanwhile and one that succeeds after it.
        let directories = try #require(control.group(of: "alpha")).directories
        for directory in directories { #expect(rmdir(directory) == 0) }
        #expect(throws: RootError.self) { try control.change(name: "alpha", to: ProcessorSettings(weight: 400)) }
        for directory in directories { #expect(mkdir(directory, 0o755) == 0) }
        try control.change(name: "alpha", to: ProcessorSettings(weight: 500))
        #expect(control.controls(of: "alpha") == ProcessorControlsInfo(reserve: 0, limit: 100, weight: 500, affinity: nil,
                                                                         enforced: false))
    }
}

@Suite("The root's processor controls without a hierarchy")
struct UncontrolledProcessorTests {
    /// A host with no writable hierarchy: the root says so once, keeps checking the controls,
    /// and reports them as not enforced.
    @Test func withoutAHierarchyControlsAreCheckedButNotEnforced() throws {
        let messages = LogCapture()
        var logger = Logger(label: "test") { _ in messages }
        logger.logLevel = .info
        let reason = "Processor controls are off, and partitions run uncontrolled: cgroup v2 is not mounted; "
            + "the cgroup v1 cpu hierarchy is not mounted."
        let control = try ProcessorControl(options: ProcessorControlOptions(), logger: logger,
                                           discovery: .unavailable(reason: reason))
        defer { control.shutdown() }
        #expect(!control.isEnforced)
        #expect(control.summary == reason)
        #expect(messages.lines.filter { $0 == reason }.count == 1)
        try control.admit(name: "alpha", processorCount: 1, settings: ProcessorSettings(reserve: 20, limit: 40, weight: 7))
        #expect(control.controls(of: "alpha") == ProcessorControlsInfo(reserve: 20, limit: 40, weight: 7, affinity: nil,
                                                                         enforced: false))
        #expect(control.group(of: "alpha") == nil)
        control.attach(thread: OSThread.currentKernelThreadID, to: "alpha")
        #expect(throws: RootError.self) {
            try control.admit(name: "beta", processorCount: 64, settings: ProcessorSettings(reserve: 100))
        }
        try control.change(name: "alpha", to: ProcessorSettings(weight: 9))
        #expect(control.controls(of: "alpha")?.weight == 9)
        control.release(name: "alpha")
        #expect(control.controls(of: "alpha") == nil)
        #expect(messages.lines.filter { $0 == reason }.count == 1, "said once: \(messages.lines)")
    }

    @Test func switchedOffTheRootTouchesNoGroup() throws {
        let control = try ProcessorControl(options: ProcessorControlOptions(enabled: false), logger: Host.quiet)
        #expect(!control.isEnforced && control.instance == nil)
        #expect(control.summary.contains("off"))
        try control.admit(name: "alpha", processorCount: 1, settings: nil)
        #expect(control.controls(of: "alpha")?.enforced == false)
    }

    /// An affinity list is kept and reported as the set it names: a request of a million zeros
    /// is one processor, not eight megabytes kept and listed in every answer.
    @Test func anAffinityIsKeptAsTheSetOfProcessorsItNames() throws {
        let control = try ProcessorControl(options: ProcessorControlOptions(enabled: false), logger: Host.quiet)
        try control.admit(name: "alpha", processorCount: 1,
                          settings: ProcessorSettings(affinity: [0] + [Int](repeating: 0, count: 100_000)))
        #expect(control.controls(of: "alpha")?.affinity == [0])
        try control.change(name: "alpha", to: ProcessorSettings(affinity: [0, 0, 0]))
        #expect(control.controls(of: "alpha")?.affinity == [0])
    }

    @Test func aParentKeptOnProcessorsTheRootCannotUseStopsTheRootWithASentence() {
        #expect(throws: RootError.self) {
            _ = try ProcessorControl(options: ProcessorControlOptions(parentProcessors: [8000], enabled: false),
                                     logger: Host.quiet)
        }
    }
}

/// The processor list format of the kernel, for expectations.
enum ProcessorListText {
    static func format(_ processors: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        let sorted = processors.sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}

/// Collects log messages.
final class LogCapture: LogHandler, Sendable {
    private let messages = Mutex<[String]>([])
    var lines: [String] { messages.withLock { $0 } }

    func log(event: LogEvent) {
        messages.withLock { $0.append(event.message.description) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { nil }
        set {}
    }

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
}
