import Foundation
import KVM
import LocalDeployment
import ManagementAPI
import Testing

@Suite("VMBus with real child partitions", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct VMBusTests {
    /// Waits until partition `name` reports a fact satisfying `predicate`.
    func waitForFact(_ test: TestDeployment, _ name: String, _ key: String, timeoutSeconds: Double = 30,
                     _ predicate: (String) -> Bool) async throws -> String {
        let facts = try await facts(test, name, timeoutSeconds: timeoutSeconds) { $0[key].map(predicate) ?? false }
        guard let value = facts[key], predicate(value) else {
            Issue.record("\(name) never reported \(key) as expected: \(facts)")
            return ""
        }
        return value
    }

    /// Partition `name`'s facts once `done` holds of them (or after `timeoutSeconds`). The
    /// parent reports facts over the control socket, apart from what the guest prints: a line
    /// printed after an exchange does not mean its facts have reached the root yet.
    func facts(_ test: TestDeployment, _ name: String, timeoutSeconds: Double = 30,
               until done: ([String: String]) -> Bool) async throws -> [String: String] {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var facts = try await test.deployment.info(name).status
        while !done(facts), Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
            facts = try await test.deployment.info(name).status
        }
        return facts
    }

    @Test func childOpensBenchHeartbeatAndShutdownChannels() async throws {
        let test = try await TestDeployment.start("channels")
        defer { test.stop() }
        try await test.create("bus", processors: 2, memoryMiB: 64, arguments: "mode=vmbus",
                              devices: ["heartbeat", "shutdown", "bench"])
        try await test.deployment.perform("start", on: "bus")
        _ = try await test.deployment.waitForConsole("bus", containing: "integration services negotiated")
        let keys = ["vmbus.version", "heartbeat.version", "shutdown.version", "bench.state"]
        let status = try await facts(test, "bus") { facts in keys.allSatisfy { facts[$0] != nil } }
        #expect(status["vmbus.version"] == "5.3")
        #expect(status["heartbeat.version"] == "3.0")
        #expect(status["shutdown.version"] == "3.2")
        #expect(status["bench.state"] == "open")
        let lines = try await test.deployment.console("bus")
        #expect(lines.contains { $0.contains("opened heartbeat") } && lines.contains { $0.contains("opened shutdown") }
                && lines.contains { $0.contains("opened bench") }, "\(lines)")
        // Heartbeats keep coming: the guest answers each with the sequence number plus one.
        _ = try await waitForFact(test, "bus", "heartbeat.sequence") { (Int($0) ?? 0) >= 3 }
    }

    @Test func shutdownIntegrationServiceStopsThePartition() async throws {
        let test = try await TestDeployment.start("shutdown")
        defer { test.stop() }
        try await test.create("polite", arguments: "mode=vmbus", devices: ["heartbeat", "shutdown"])
        try await test.deployment.perform("start", on: "polite")
        _ = try await test.deployment.waitForConsole("polite", containing: "integration services negotiated")
        try await test.deployment.perform("shutdown", on: "polite")
        let stopped = try await test.deployment.waitForState("polite", "stopped")
        #expect(stopped.reason == "guest powered off")
        #expect(try await test.deployment.console("polite").contains { $0.contains("the host asked for a shutdown") })
    }

    @Test func shutdownWithoutTheServiceIsRefusedWithAFix() async throws {
        let test = try await TestDeployment.start("noshutdown")
        defer { test.stop() }
        try await test.create("plain")
        try await test.deployment.perform("start", on: "plain")
        let message = await errorSentence { try await test.deployment.perform("shutdown", on: "plain") }
        #expect(message?.contains("add \"shutdown\" to its devices") == true, "\(message ?? "")")
    }

    /// One data page per ring and 4064-byte messages (4088 ring bytes each): every message laps
    /// the 4096-byte ring, so a million messages are a million wrap-arounds, each checksummed.
    @Test func dataSurvivesAMillionRingWrapAroundsIntact() async throws {
        let test = try await TestDeployment.start("wraps")
        defer { test.stop() }
        let count = 1_002_000
        let size = 4064
        try await test.create("lapper", arguments: "mode=vmbus ring-kib=8 bench=throughput sizes=\(size) bytes=\(count * size) verify=1",
                              devices: ["bench"])
        try await test.deployment.perform("start", on: "lapper")
        _ = try await test.deployment.waitForConsole("lapper", containing: "bench: done", timeoutSeconds: 900)
        let facts = try await facts(test, "lapper") { $0["bench.throughput.\(size).intact"] != nil }
        #expect(facts["bench.throughput.\(size).messages"] == "\(count)")
        #expect(facts["bench.throughput.\(size).intact"] == "true", "\(facts)")
        let wraps = count * (16 + size + 8) / 4096
        #expect(wraps >= 1_000_000)
    }

    @Test func twoChildrenBenchAtOnce() async throws {
        let test = try await TestDeployment.start("pair")
        defer { test.stop() }
        let plan = "mode=vmbus bench=throughput,source,signalled,polled,raw sizes=64,1024 bytes=1048576 rtts=100 verify=1"
        for name in ["first", "second"] {
            try await test.create(name, arguments: plan, devices: ["bench"])
        }
        for name in ["first", "second"] { try await test.deployment.perform("start", on: name) }
        for name in ["first", "second"] {
            _ = try await test.deployment.waitForConsole(name, containing: "bench: done", timeoutSeconds: 300)
            let facts = try await facts(test, name) { $0.keys.filter { $0.hasSuffix(".intact") }.count >= 9 }
            let intact = facts.filter { $0.key.hasSuffix(".intact") }
            #expect(intact.count == 9, "\(name): \(facts)")
            #expect(intact.values.allSatisfy { $0 == "true" }, "\(name): \(facts)")
        }
    }

    @Test func aScribblingChildLosesOnlyItsOwnChannel() async throws {
        let test = try await TestDeployment.start("scribble")
        defer { test.stop() }
        try await test.create("vandal", arguments: "mode=scribble", devices: ["bench"])
        try await test.create("bystander", arguments: "mode=vmbus bench=throughput,signalled sizes=256 bytes=1048576 rtts=100 verify=1",
                              devices: ["bench", "heartbeat"])
        try await test.deployment.perform("start", on: "bystander")
        try await test.deployment.perform("start", on: "vandal")
        _ = try await test.deployment.waitForConsole("vandal", containing: "scribble: the host rescinded relid 1")
        let vandal = try await test.deployment.info("vandal")
        #expect(vandal.status["vmbus.channel.1.closed"]?.contains("corrupt ring") == true, "\(vandal.status)")
        #expect(vandal.state == "running")
        _ = try await test.deployment.waitForConsole("bystander", containing: "bench: done", timeoutSeconds: 300)
        let bystander = try await facts(test, "bystander") {
            $0["bench.throughput.256.intact"] != nil && $0["bench.signalled.256.intact"] != nil
        }
        #expect(bystander["bench.throughput.256.intact"] == "true" && bystander["bench.signalled.256.intact"] == "true")
        #expect(bystander.keys.allSatisfy { !$0.hasPrefix("vmbus.channel.") })
        #expect(try await test.rootInfo().parentConnected)
    }
}
