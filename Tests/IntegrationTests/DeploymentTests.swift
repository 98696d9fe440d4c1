import Foundation
import KVM
import LocalDeployment
import ManagementAPI
import Testing

@Suite("Root scheduler and parent partition with real child partitions",
       .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct DeploymentTests {
    @Test func twoChildrenCannotSeeEachOthersMemoryOrMessages() async throws {
        let test = try await TestDeployment.start("isolation")
        defer { test.stop() }
        try await test.create("left", processors: 2, memoryMiB: 32)
        try await test.create("right", processors: 1, memoryMiB: 32)
        try await test.deployment.perform("start", on: "left")
        try await test.deployment.perform("start", on: "right")
        var tags: [String] = []
        for name in ["left", "right"] {
            _ = try await test.deployment.waitForConsole(name, containing: "probe: done")
            // Let both run their marker checks a few more times side by side.
            _ = try await test.deployment.waitForConsole(name, containing: "probe: alive round=20", timeoutSeconds: 30)
        }
        for name in ["left", "right"] {
            let lines = try await test.deployment.console(name, lines: 2000)
            #expect(!lines.contains { $0.contains("isolation violated") }, "\(name): \(lines)")
            let report = ProbeReport(lines: lines)
            #expect(report.messageInterrupt != nil && report.messagePolled != nil && report.event != nil, "\(name): \(lines)")
            tags += lines.filter { $0.contains("isolation tag=") }
        }
        #expect(tags.count == 2)
        #expect(Set(tags.map { $0.split(separator: " ").first { $0.hasPrefix("tag=") } }).count == 2, "distinct tags")
    }

    @Test func crashingChildIsReportedAndTheOthersKeepRunning() async throws {
        let test = try await TestDeployment.start("crash")
        defer { test.stop() }
        try await test.create("steady")
        try await test.create("crasher", arguments: "mode=crash")
        try await test.deployment.perform("start", on: "steady")
        _ = try await test.deployment.waitForConsole("steady", containing: "probe: done")
        try await test.deployment.perform("start", on: "crasher")
        let crashed = try await test.deployment.waitForState("crasher", "crashed")
        #expect(crashed.reason?.contains("triple fault") == true, "\(crashed)")
        // The root still answers and the other child keeps running and talking to the parent.
        #expect(try await test.rootInfo().parentConnected)
        // It prints "probe: alive round=N" every 20 rounds of half a second: wait for the first
        // one after the crash (a loaded host may have printed several before it).
        let rounds = try await test.deployment.console("steady", lines: 2000).compactMap { line in
            line.hasPrefix("probe: alive round=") ? Int(line.dropFirst("probe: alive round=".count)) : nil
        }
        let next = (rounds.max() ?? 0) + 20
        let line = try await test.deployment.waitForConsole("steady", containing: "probe: alive round=\(next)",
                                                            timeoutSeconds: 30)
        #expect(line == "probe: alive round=\(next)")
        #expect(try await test.deployment.info("steady").state == "running")
    }

    @Test func killingTheParentLeavesChildrenRunningAndTheyReconnect() async throws {
        let test = try await TestDeployment.start("parent")
        defer { test.stop() }
        try await test.create("survivor")
        try await test.deployment.perform("start", on: "survivor")
        _ = try await test.deployment.waitForConsole("survivor", containing: "probe: done")
        // On a loaded host a slow echo can make the probe report the parent unreachable and
        // then reachable before any kill: only lines printed after each step count.
        let unreachable = try await Self.count("probe: parent unreachable", of: "survivor", in: test)
        test.deployment.killParent()
        try await test.deployment.waitForParent(connected: false)
        try await Self.waitForAnother("probe: parent unreachable", than: unreachable, of: "survivor", in: test)
        #expect(try await test.deployment.info("survivor").state == "running")
        let reachable = try await Self.count("probe: parent reachable", of: "survivor", in: test)
        try test.deployment.startParent()
        try await test.deployment.waitForParent(connected: true)
        try await Self.waitForAnother("probe: parent reachable", than: reachable, of: "survivor", in: test)
        #expect(try await test.deployment.info("survivor").state == "running")
    }

    /// How many of partition `name`'s console lines are `line`.
    static func count(_ line: String, of name: String, in test: TestDeployment) async throws -> Int {
        try await test.deployment.console(name, lines: 2000).filter { $0 == line }.count
    }

    /// Waits until partition `name` has printed `line` more than `before` times.
    static func waitForAnother(_ line: String, than before: Int, of name: String, in test: TestDeployment,
                               timeoutSeconds: Double = 20) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while try await count(line, of: name, in: test) <= before {
            guard Date() < deadline else {
                Issue.record("\(name) printed no new \"\(line)\" within \(timeoutSeconds) s")
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func lifecycleMovesThroughCreatedRunningPausedStopped() async throws {
        let test = try await TestDeployment.start("lifecycle")
        defer { test.stop() }
        #expect(try await test.create("cycle").state == "created")
        #expect(try await test.deployment.perform("start", on: "cycle").state == "running")
        _ = try await test.deployment.waitForConsole("cycle", containing: "probe: done")
        #expect(try await test.deployment.perform("pause", on: "cycle").state == "paused")
        let pausedLines = try await test.deployment.console("cycle", lines: 5000).count
        try await Task.sleep(for: .seconds(1.5))
        #expect(try await test.deployment.console("cycle", lines: 5000).count == pausedLines, "a paused guest prints nothing")
        #expect(try await test.deployment.perform("resume", on: "cycle").state == "running")
        let stopped = try await test.deployment.perform("stop", on: "cycle")
        #expect(stopped.state == "stopped" && stopped.reason == "stopped by request")
        #expect(await apiError { _ = try await test.deployment.perform("start", on: "cycle") }?.kind == .conflict)
        _ = try await test.deployment.client.send(.DELETE, "/v1/partitions/cycle")
        #expect(await apiError { _ = try await test.deployment.info("cycle") }?.kind == .notFound)
    }

    @Test func stoppingAPartitionReleasesItsThreadsAndMemory() async throws {
        let test = try await TestDeployment.start("release")
        defer { test.stop() }
        let baseline = try await test.rootResources()
        try await test.create("transient", processors: 4, memoryMiB: 64)
        try await test.deployment.perform("start", on: "transient")
        _ = try await test.deployment.waitForConsole("transient", containing: "probe: done")
        let running = try await test.rootResources()
        #expect(running.threads >= baseline.threads + 4, "one thread per virtual processor")
        #expect(running.descriptors >= baseline.descriptors + 6, "a VM, four vCPUs and a memfd are counted")
        try await test.deployment.perform("stop", on: "transient")
        // The request's own thread (`api-wait`) may still be exiting when the answer arrives.
        var after = try await test.rootResources()
        for _ in 0..<100 where after != baseline {
            try await Task.sleep(for: .milliseconds(100))
            after = try await test.rootResources()
        }
        #expect(after.threads == baseline.threads, "processor threads are joined")
        #expect(after.descriptors == baseline.descriptors, "VM, vCPU, memfd and eventfd descriptors are closed")
    }

    @Test func badRequestsGetOneClearSentence() async throws {
        let test = try await TestDeployment.start("errors")
        defer { test.stop() }
        let client = test.deployment.client
        #expect(await errorSentence { _ = try await test.deployment.info("nobody") }
                == "No partition is named nobody: list them with `hv partition list`.")
        try await test.create("dup")
        #expect(await errorSentence { try await test.create("dup") }?.contains("exists: delete it first") == true)
        #expect(await apiError { try await test.create("dup") }?.status == 409)
        #expect(await apiError { _ = try await test.deployment.info("nobody") }?.status == 404)
        let bad = PartitionConfiguration(name: "Bad Name", processors: 1, memoryMiB: 32,
                                         guest: .embedded(image: "x", arguments: "", imagePath: "/nonexistent"))
        #expect(await errorSentence {
            _ = try await client.request(.POST, "/v1/partitions", body: bad, as: PartitionInfo.self)
        }?.hasPrefix("Invalid partition configuration: name") == true)
        let missing = PartitionConfiguration(name: "ghost", processors: 1, memoryMiB: 32,
                                             guest: .embedded(image: "x", arguments: "", imagePath: "/nonexistent/guest.elf"))
        #expect(await errorSentence {
            _ = try await client.request(.POST, "/v1/partitions", body: missing, as: PartitionInfo.self)
        }?.contains("Guest image /nonexistent/guest.elf does not exist") == true)
        #expect(await apiError {
            _ = try await client.request(.POST, "/v1/partitions", body: missing, as: PartitionInfo.self)
        }?.kind == .badRequest)
        let absent = ManagementClient(socketPath: "\(test.directory)/nothing.sock")
        #expect(await errorSentence { _ = try await absent.request(.GET, "/v1/root", as: RootInfo.self) }?
            .contains("start it with `hv root`") == true)
    }

    /// SIGTERM is how `hv demo`, systemd or a user ends these services: each must stop on its
    /// own, not wait for SIGKILL (the parent once let its signal sources be freed and ignored it).
    @Test func rootAndParentStopCleanlyOnSIGTERM() async throws {
        let test = try await TestDeployment.start("sigterm")
        defer { test.stop() }
        let processes = [("parent", try #require(test.deployment.parentProcessID), test.deployment.parentLog,
                          "parent partition stopped"),
                         ("root", try await test.rootInfo().processID, test.deployment.rootLog, "root scheduler stopped")]
        for (role, pid, log, farewell) in processes {
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(8)
            while isAlive(pid) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!isAlive(pid), "the \(role) ignored SIGTERM")
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains(farewell), "the \(role) did not shut down in order: \(text.suffix(400))")
        }
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalToTheFrontEndStopsItsRootAndParent(_ number: Int32) async throws {
        let directory = NSTemporaryDirectory() + "hv-test-signal-\(number)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let demo = Process()
        demo.executableURL = URL(fileURLWithPath: TestDeployment.hvExecutable)
        demo.arguments = ["demo", "--runtime-dir", directory]
        demo.standardOutput = FileHandle.nullDevice
        demo.standardError = FileHandle.nullDevice
        try demo.run()
        defer { if demo.isRunning { kill(demo.processIdentifier, SIGKILL) } }

        // Wait until the demo's root answers and its parent is connected.
        let client = ManagementClient(socketPath: RuntimeDirectory.apiSocket(in: directory))
        var root: RootInfo?
        let deadline = ContinuousClock.now + .seconds(120)
        while root?.parentConnected != true && demo.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            root = try? await client.request(.GET, "/v1/root", as: RootInfo.self)
        }
        let rootPID = try #require(root?.parentConnected == true ? root?.processID : nil, "the demo's root never came up")
        let parentPID = try #require(childProcesses(of: demo.processIdentifier).first { $0 != rootPID },
                                     "the demo has no parent partition process")

        kill(demo.processIdentifier, number)
        // Awaited without blocking a thread: Foundation reaps the child on a global queue.
        let exitDeadline = ContinuousClock.now + .seconds(120)
        while demo.isRunning && ContinuousClock.now < exitDeadline { try await Task.sleep(for: .milliseconds(20)) }
        try #require(!demo.isRunning, "the front end (pid \(demo.processIdentifier)) is still running 120 s after the signal")
        #expect(demo.terminationReason == .uncaughtSignal && demo.terminationStatus == number,
                "the front end still ends by the signal (reason \(demo.terminationReason), status \(demo.terminationStatus))")
        for (role, pid) in [("root", rootPID), ("parent", parentPID)] {
            #expect(!isAlive(pid), "the \(role) (pid \(pid)) outlived the front end")
        }
    }
}

/// Process IDs whose parent is `pid`, from /proc.
private func childProcesses(of pid: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { candidate in
        guard let stat = try? String(contentsOfFile: "/proc/\(candidate)/stat", encoding: .utf8),
              let afterName = stat.range(of: ") ", options: .backwards) else { return false }
        // Fields after the command name: state, ppid, ...
        let fields = stat[afterName.upperBound...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == pid
    }
}

/// Whether `pid` exists and is not a zombie.
private func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let afterName = stat.range(of: ") ", options: .backwards) else { return false }
    return !stat[afterName.upperBound...].hasPrefix("Z")
}

/// The management API's answer when `body` fails with one, else nil.
func apiError(_ body: () async throws -> Void) async -> ManagementError? {
    do {
        try await body()
        return nil
    } catch let error as ManagementClientError {
        return error.apiError
    } catch {
        return nil
    }
}

/// The description of the error `body` throws, or nil if it succeeds.
func errorSentence(_ body: () async throws -> Void) async -> String? {
    do {
        try await body()
        return nil
    } catch {
        return "\(error)"
    }
}

@Suite("Legacy devices in the parent partition", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct LegacyDeviceTests {
    @Test func com1OutputBecomesTheConsoleLog() async throws {
        let test = try await TestDeployment.start("serial")
        defer { test.stop() }
        try await test.create("serial", arguments: "mode=serial", devices: ["com1"])
        try await test.deployment.perform("start", on: "serial")
        #expect(try await Self.comOneLine(of: "serial", in: test) == "hello from COM1")
    }

    /// A start waits until the parent has set up the partition's devices (`partitionReady`), so
    /// the guest's first access to COM1 finds the UART. Before, the processors ran at once: with
    /// the parent slow to attach, COM1's ports read as a floating bus (THRE set) and the bytes
    /// written meanwhile were lost ("o from COM1" once on CI).
    @Test func aStartWaitsUntilTheParentHasSetUpTheDevices() async throws {
        let test = try await TestDeployment.start("serial-held")
        defer { test.stop() }
        let parent = try #require(test.deployment.parentProcessID)
        // A stopped parent holds the hand-over in its socket: it cannot set the partition up.
        #expect(kill(parent, SIGSTOP) == 0)
        // Runs before `test.stop()`; a second SIGCONT is harmless.
        defer { kill(parent, SIGCONT) }
        try await test.create("serial", arguments: "mode=serial", devices: ["com1"])
        let start = Task { try await test.deployment.perform("start", on: "serial") }
        try await Task.sleep(for: .seconds(1))
        #expect(try await test.deployment.info("serial").state == "created", "it did not run before its devices")
        #expect(kill(parent, SIGCONT) == 0)
        #expect(try await start.value.state == "running")
        #expect(try await Self.comOneLine(of: "serial", in: test) == "hello from COM1")
    }

    /// The line the serial guest wrote to COM1. Its own `print` ("serial: done") reaches the log
    /// straight from the root, COM1's bytes through the parent: wait for both.
    static func comOneLine(of name: String, in test: TestDeployment) async throws -> String {
        _ = try await test.deployment.waitForConsole(name, containing: "serial: done")
        return try await test.deployment.waitForConsole(name, containing: "from COM1", timeoutSeconds: 10)
    }
}
