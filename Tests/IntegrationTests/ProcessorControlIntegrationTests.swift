import DeviceModel
import Foundation
import LinuxSupport
import KVM
import LocalDeployment
import ManagementAPI
import Testing

/// Reads a control-group file of a partition's group (trimmed).
private func groupFile(_ directories: [String], _ controller: String, _ file: String) throws -> String {
    let directory = try #require(directories.first { directory in
        directory.split(separator: "/").contains { $0.split(separator: ",").contains(Substring(controller)) }
    }, "no \(controller) group in \(directories)")
    return try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite("Processor controls and accounting with real child partitions",
       .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct ProcessorControlIntegrationTests {
    @Test func aPartitionsGroupFollowsItFromCreateThroughChangesToDelete() async throws {
        let test = try await TestDeployment.start("cgroups")
        defer { test.stop() }
        let root = try await test.rootInfo()
        try #require(root.processorControls?.hasPrefix("cgroup") == true,
                     "the root runs uncontrolled here: \(root.processorControls ?? "-")")
        // The files checked below are cgroup v1's, as the development machines have it.
        let usesVersion1 = root.processorControls?.hasPrefix("cgroup v1") == true
        let created = try await test.create("ctl", processors: 2, arguments: "mode=idle",
                                            cpu: ProcessorSettings(limit: 50, weight: 200))
        #expect(created.cpu == ProcessorControlsInfo(reserve: 0, limit: 50, weight: 200, affinity: nil, enforced: true))
        let groups = try await test.deployment.client.statistics("ctl").cpu.controlGroups
        #expect(!groups.isEmpty)
        for directory in groups {
            #expect(FileManager.default.fileExists(atPath: directory))
            #expect(directory.contains("/hv/root.\(root.processID)."), "\(directory)")
        }
        if usesVersion1 {
            #expect(try groupFile(groups, "cpu", "cpu.shares") == "2048")
            #expect(try groupFile(groups, "cpu", "cpu.cfs_quota_us") == "100000")
        }

        // Each processor thread joins the group as it starts.
        try await test.deployment.perform("start", on: "ctl")
        _ = try await test.deployment.waitForConsole("ctl", containing: "guest: idle")
        let running = try await test.deployment.client.statistics("ctl")
        let threads = running.cpu.processors.compactMap(\.threadID)
        #expect(threads.count == 2)
        if usesVersion1 {
            let tasks = Set(try groupFile(groups, "cpu", "tasks").split(separator: "\n").compactMap { Int32($0) })
            #expect(Set(threads).isSubset(of: tasks), "\(threads) in \(tasks)")
        }

        // Changed while it runs, through the API.
        let changed = try await test.deployment.client.setProcessorControls("ctl", ProcessorSettings(limit: 25, weight: 300))
        #expect(changed.cpu == ProcessorControlsInfo(reserve: 0, limit: 25, weight: 300, affinity: nil, enforced: true))
        if usesVersion1 {
            #expect(try groupFile(groups, "cpu", "cpu.shares") == "3072")
            #expect(try groupFile(groups, "cpu", "cpu.cfs_quota_us") == "50000")
        }
        #expect(await apiError {
            try await test.deployment.client.setProcessorControls("ctl", ProcessorSettings(limit: 0))
        }?.status == 400)
        #expect(await apiError {
            try await test.deployment.client.setProcessorControls("nobody", ProcessorSettings(weight: 5))
        }?.status == 404)

        try await test.deployment.delete("ctl")
        for directory in groups { #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) is left") }
    }

    @Test func aCrashedPartitionLeavesNoGroupBehind() async throws {
        let test = try await TestDeployment.start("cgroup-crash")
        defer { test.stop() }
        try await test.create("steady", arguments: "mode=idle", cpu: ProcessorSettings(weight: 50))
        try await test.create("crasher", arguments: "mode=crash", cpu: ProcessorSettings(reserve: 10))
        let steadyGroups = try await test.deployment.client.statistics("steady").cpu.controlGroups
        let crasherGroups = try await test.deployment.client.statistics("crasher").cpu.controlGroups
        #expect(!crasherGroups.isEmpty)
        try await test.deployment.perform("start", on: "steady")
        try await test.deployment.perform("start", on: "crasher")
        _ = try await test.deployment.waitForState("crasher", "crashed")
        // The group goes as soon as its threads have: no delete is needed. (The crashed state
        // shows a moment before the group is removed.)
        for _ in 0..<100 where crasherGroups.contains(where: { FileManager.default.fileExists(atPath: $0) }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        for directory in crasherGroups { #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) is left") }
        for directory in steadyGroups { #expect(FileManager.default.fileExists(atPath: directory)) }
        // Its processor time survives it.
        let crashed = try await test.deployment.client.statistics("crasher")
        #expect(crashed.state == "crashed" && crashed.cpu.controlGroups.isEmpty)
        #expect(crashed.exits["fatal"] == 1)
        #expect(crashed.channelsUnavailable != nil)
    }

    @Test func reservesThatCannotAllBeMetAreRefusedThroughTheAPI() async throws {
        let test = try await TestDeployment.start("reserves")
        defer { test.stop() }
        let processors = ProcessInfo.processInfo.activeProcessorCount
        // Together they would need more than every processor of the host.
        try await test.create("big", processors: processors, arguments: "mode=idle", cpu: ProcessorSettings(reserve: 95))
        let refusal = await apiError {
            try await test.create("small", arguments: "mode=idle", cpu: ProcessorSettings(reserve: 20))
        }
        #expect(refusal?.status == 409)
        #expect(refusal?.message.hasPrefix("The processor reserves of partitions big and small need ") == true, "\(String(describing: refusal))")
        #expect(await apiError { _ = try await test.deployment.info("small") }?.status == 404)
        // A change that would overcommit is refused too, and leaves the controls as they were.
        try await test.create("small", arguments: "mode=idle", cpu: ProcessorSettings(reserve: 5))
        #expect(await apiError {
            try await test.deployment.client.setProcessorControls("small", ProcessorSettings(reserve: 50))
        }?.status == 409)
        #expect(try await test.deployment.info("small").cpu?.reserve == 5)
        // Deleting the big one gives its reserve back.
        try await test.deployment.delete("big")
        let grown = try await test.deployment.client.setProcessorControls("small", ProcessorSettings(reserve: 100))
        #expect(grown.cpu?.reserve == 100)
    }

    @Test func statisticsCountProcessorTimeExitsSynICTrafficMemoryAndChannels() async throws {
        let test = try await TestDeployment.start("stats")
        defer { test.stop() }
        try await test.create("counted", processors: 1, arguments: "mode=vmbus",
                              devices: [DeviceConfiguration(kind: "heartbeat"), DeviceConfiguration(kind: "bench")])
        try await test.deployment.perform("start", on: "counted")
        _ = try await test.deployment.waitForConsole("counted", containing: "channels open at reference time")
        // The heartbeat service has answered at least once.
        var sample = try await test.deployment.client.statistics("counted")
        for _ in 0..<100 where (sample.channels.first { $0.device == "heartbeat" }?.guestToHost.packets ?? 0) < 2 {
            try await Task.sleep(for: .milliseconds(100))
            sample = try await test.deployment.client.statistics("counted")
        }
        #expect(sample.state == "running")
        #expect(sample.cpu.totalNanoseconds > 0 && sample.cpu.processors.count == 1)
        #expect(sample.cpu.processors[0].cpuNanoseconds > 0 && sample.cpu.processors[0].threadID != nil)
        // The guest's set-up writes synthetic MSRs, its VMBus client posts messages through the
        // hypercall page, and it prints on the debug port.
        #expect((sample.exits["msr-write"] ?? 0) > 0 && (sample.exits["hypercall"] ?? 0) > 0)
        #expect((sample.exits["debug-port"] ?? 0) > 0)
        #expect(sample.cpu.processors[0].exits == sample.exits)
        #expect(sample.synic.messagesPosted > 0 && sample.synic.messagesDelivered > 0)
        #expect(sample.synic.hypercalls >= sample.synic.messagesPosted)
        #expect(sample.memory.assignedBytes == 32 << 20)
        #expect(sample.memory.touchedBytes > 0 && sample.memory.touchedBytes < sample.memory.assignedBytes)
        #expect(sample.channelsUnavailable == nil)
        let heartbeat = try #require(sample.channels.first { $0.device == "heartbeat" })
        #expect(heartbeat.open && heartbeat.guestToHost.packets >= 2 && heartbeat.hostToGuest.packets >= 2)
        #expect(heartbeat.guestToHost.bytes >= 24 * heartbeat.guestToHost.packets)
        #expect(sample.channels.contains { $0.device == "bench" && $0.open })
        #expect(sample.createdAtNanoseconds < sample.sampledAtNanoseconds)

        // Counters only grow, and outlive the partition.
        try await test.deployment.perform("stop", on: "counted")
        let stopped = try await test.deployment.client.statistics("counted")
        #expect(stopped.state == "stopped")
        #expect(stopped.cpu.totalNanoseconds >= sample.cpu.totalNanoseconds)
        #expect(stopped.cpu.processors[0].threadID == nil && stopped.cpu.processors[0].cpuNanoseconds > 0)
        #expect(stopped.synic.messagesPosted >= sample.synic.messagesPosted)
        #expect((stopped.exits["msr-write"] ?? 0) >= (sample.exits["msr-write"] ?? 0))
        #expect(stopped.memory.touchedBytes == 0 && stopped.channels.isEmpty)
    }

    /// A host whose control-group mounts are all read-only: the root is started in a mount
    /// namespace of its own where they are remounted so.
    @Test(.enabled(if: ReadOnlyCgroups.wrapper != nil,
                   "cannot make a mount namespace with read-only cgroup mounts here (needs /usr/bin/unshare and CAP_SYS_ADMIN)"))
    func withoutAWritableHierarchyTheRootSaysSoOnceAndRunsUncontrolled() async throws {
        let test = try await TestDeployment.start("no-cgroups", rootWrapper: ReadOnlyCgroups.wrapper ?? [])
        defer { test.stop() }
        let root = try await test.rootInfo()
        let summary = try #require(root.processorControls)
        #expect(summary.hasPrefix("Processor controls are off, and partitions run uncontrolled: "), "\(summary)")
        let info = try await test.create("free", arguments: "mode=idle", cpu: ProcessorSettings(reserve: 20, weight: 500))
        #expect(info.cpu == ProcessorControlsInfo(reserve: 20, limit: 100, weight: 500, affinity: nil, enforced: false))
        try await test.deployment.perform("start", on: "free")
        _ = try await test.deployment.waitForConsole("free", containing: "guest: idle")
        let sample = try await test.deployment.client.statistics("free")
        #expect(sample.cpu.source == "threads" && sample.cpu.controlGroups.isEmpty)
        #expect(sample.cpu.totalNanoseconds > 0)
        // Reserves are still checked.
        #expect(await apiError {
            try await test.create("greedy", processors: 64, arguments: "mode=idle", cpu: ProcessorSettings(reserve: 100))
        }?.status == 409)
        _ = try await test.deployment.client.setProcessorControls("free", ProcessorSettings(weight: 10))
        // Said once, in the root's log, and no group of this root exists on the host.
        let log = try String(contentsOfFile: test.deployment.rootLog, encoding: .utf8)
        #expect(log.components(separatedBy: summary).count - 1 == 1, "\(log)")
        let hv = "/sys/fs/cgroup/cpu/hv"
        let ours = ((try? FileManager.default.contentsOfDirectory(atPath: hv)) ?? []).filter { $0.hasPrefix("root.\(root.processID).") }
        #expect(ours.isEmpty)
    }
}

/// Starting a root whose view of the control-group mounts is read-only: `unshare` gives it a
/// private mount namespace in which each cgroup mount is remounted read-only, then runs it.
enum ReadOnlyCgroups {
    static let script = #"for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do mount -o remount,bind,ro "$m" || exit 97; done; exec "$@""#

    static let command = ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "hv-root"]

    /// The wrapper, if it works on this host (it needs unshare and the right to mount).
    static let wrapper: [String]? = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return nil }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: command[0])
        probe.arguments = Array(command.dropFirst()) + ["/bin/true"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return nil }
        // Not `waitUntilExit`: a test thread blocked there can starve the queue Foundation
        // reaps children on (ChildExit).
        ChildExit.wait(for: probe.processIdentifier, timeoutNanoseconds: 10_000_000_000)
        let deadline = Date().addingTimeInterval(5)
        while probe.isRunning && Date() < deadline { usleep(10_000) }
        return !probe.isRunning && probe.terminationStatus == 0 ? command : nil
    }()
}
