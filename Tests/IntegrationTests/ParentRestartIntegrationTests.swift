import Foundation
import KVM
import LocalDeployment
import ManagementAPI
import Testing

/// The parent partition killed with SIGKILL and started again under a running child whose
/// channels are open and busy (Docs/architecture.md, "A parent that restarts").
@Suite("A killed parent's successor carries on", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct ParentRestartIntegrationTests {
    /// The counts in the child's last "soak:" line.
    func soakCounts(_ test: TestDeployment, _ name: String) async throws -> (pongs: UInt64, lost: UInt64) {
        let line = try await test.deployment.console(name, lines: 200).last { $0.contains("soak: pings=") } ?? ""
        func number(_ marker: String) -> UInt64 {
            guard let range = line.range(of: marker) else { return 0 }
            return UInt64(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        return (number("pongs="), number("lost="))
    }

    /// The finding: the restarted parent's VMBus server dropped every message before
    /// INITIATE_CONTACT, heartbeat and shutdown stayed dead, and `hv partition shutdown`
    /// reported success and did nothing.
    @Test func aKilledParentsSuccessorKeepsTheChildsChannelsAndShutsItDown() async throws {
        let test = try await TestDeployment.start("restart")
        defer { test.stop() }
        try await test.create("child", memoryMiB: 32, arguments: "mode=vmbus bench=soak report=1",
                              devices: ["heartbeat", "shutdown", "timesync", "bench"])
        try await test.deployment.perform("start", on: "child")
        _ = try await test.deployment.waitForConsole("child", containing: "soak: started")
        let firstBeat = try await waitForHeartbeat(test, after: Date.distantPast)

        for round in 1...2 {
            let killed = Date()
            let pongsBefore = try await soakCounts(test, "child").pongs
            try await test.deployment.restartParent()
            _ = try await waitForHeartbeat(test, after: max(killed, firstBeat))
            // The bench channel carries on too: pongs keep coming, none lost.
            let deadline = Date().addingTimeInterval(30)
            var counts = try await soakCounts(test, "child")
            while counts.pongs <= pongsBefore + 100 && Date() < deadline {
                try await Task.sleep(for: .milliseconds(500))
                counts = try await soakCounts(test, "child")
            }
            #expect(counts.pongs > pongsBefore + 100, "round \(round): pings are answered after the restart")
            #expect(counts.lost == 0, "round \(round): no ping lost")
        }
        #expect(try await test.deployment.info("child").status["vmbus.restored"] == "4 resumed, 0 offered again")

        try await test.deployment.perform("shutdown", on: "child")
        let stopped = try await test.deployment.waitForState("child", "stopped", timeoutSeconds: 30)
        #expect(stopped.reason == "guest powered off")
    }

    /// Waits for a heartbeat answered after `date`; returns when it was.
    func waitForHeartbeat(_ test: TestDeployment, after date: Date, timeoutSeconds: Double = 30) async throws -> Date {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let seen = try await test.deployment.info("child").status["heartbeat.seen"],
               let when = ISO8601DateFormatter().date(from: seen), when > date {
                return when
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("no heartbeat answered after \(date): \(try await test.deployment.info("child").status)")
        return date
    }
}
