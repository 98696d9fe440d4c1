import DeviceModel
import Foundation
import Glibc
import KVM
import LinuxSupport
import LocalDeployment
import ManagementAPI
import Testing

/// Synthetic NICs of real Embedded children (`mode=net`) on switches of a real root and parent
/// (Docs/network.md).
@Suite("Network with real child partitions", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct NetworkIntegrationTests {
    static func nic(_ switchName: String, _ mac: String) -> DeviceConfiguration {
        DeviceConfiguration(kind: "nic", settings: ["switch": .string(switchName), "mac": .string(mac)])
    }

    func createSwitch(_ test: TestDeployment, _ configuration: SwitchConfiguration) async throws -> SwitchInfo {
        try await test.deployment.client.request(.POST, "/v1/switches", body: configuration, as: SwitchInfo.self)
    }

    func status(_ test: TestDeployment, _ method: HTTPMethodName, _ path: String) async throws -> Int {
        switch method {
        case .post: try await test.deployment.client.send(.POST, path).status
        case .delete: try await test.deployment.client.send(.DELETE, path).status
        }
    }

    @Test func twoChildrenOnAPrivateSwitchPingEachOther() async throws {
        let test = try await TestDeployment.start("private")
        defer { test.stop() }
        _ = try await createSwitch(test, SwitchConfiguration(name: "lan", kind: "private"))
        try await test.create("b", memoryMiB: 64, arguments: "mode=net ip=10.9.0.3 recv-kib=2048",
                              devices: ["heartbeat", Self.nic("lan", "00:15:5d:09:00:03")])
        try await test.deployment.perform("start", on: "b")
        _ = try await test.deployment.waitForConsole("b", containing: "net: 1 NIC(s) up")
        try await test.create("a", memoryMiB: 64, arguments: "mode=net ip=10.9.0.2 peer=10.9.0.3 net=ping pings=20 recv-kib=2048",
                              devices: ["heartbeat", Self.nic("lan", "00:15:5d:09:00:02")])
        try await test.deployment.perform("start", on: "a")
        let line = try await test.deployment.waitForConsole("a", containing: "net: ping ")
        #expect(line.contains("replies=20/20"), "\(line)")
        #expect(try await test.deployment.console("a").contains { $0.contains("NIC 00:15:5d:09:00:02 up: NVSP 6.1") })
        let switches = try await test.deployment.client.request(.GET, "/v1/switches", as: [SwitchInfo].self)
        #expect(switches.first { $0.name == "lan" }?.ports.count == 2)
    }

    @Test func aSwitchInUseCannotBeDeletedAndANICNeedsItsSwitch() async throws {
        let test = try await TestDeployment.start("switchrules")
        defer { test.stop() }
        let missing = await errorSentence {
            try await test.create("lost", arguments: "mode=net", devices: [Self.nic("nowhere", "00:15:5d:09:00:09")])
        }
        #expect(missing?.contains("switch nowhere, which does not exist") == true, "\(missing ?? "")")
        _ = try await createSwitch(test, SwitchConfiguration(name: "lan", kind: "private"))
        #expect(try await status(test, .post, "/v1/switches") == 400, "no body")
        let duplicate = await errorSentence { _ = try await createSwitch(test, SwitchConfiguration(name: "lan", kind: "private")) }
        #expect(duplicate?.contains("exists") == true)
        try await test.create("user", arguments: "mode=net", devices: [Self.nic("lan", "00:15:5d:09:00:01")])
        #expect(try await status(test, .delete, "/v1/switches/lan") == 409)
        try await test.deployment.delete("user")
        #expect(try await status(test, .delete, "/v1/switches/lan") == 204)
        #expect(try await status(test, .delete, "/v1/switches/lan") == 404)
    }

    @Test func aNICHotAddedToARunningChildComesUpAndGoesAwayWhenRemoved() async throws {
        let test = try await TestDeployment.start("hotnic")
        defer { test.stop() }
        _ = try await createSwitch(test, SwitchConfiguration(name: "lan", kind: "private"))
        try await test.create("host", memoryMiB: 96, arguments: "mode=net recv-kib=2048", devices: ["heartbeat"])
        try await test.deployment.perform("start", on: "host")
        _ = try await test.deployment.waitForConsole("host", containing: "net: 0 NIC(s) up")
        _ = try await test.deployment.client.request(.POST, "/v1/partitions/host/devices", body: Self.nic("lan", "00:15:5d:09:00:07"),
                                                      as: PartitionInfo.self)
        _ = try await test.deployment.waitForConsole("host", containing: "NIC 00:15:5d:09:00:07 hot-added")
        var version: String?
        for _ in 0..<50 where version == nil {
            version = try await test.deployment.info("host").status["nic.00:15:5d:09:00:07.nvsp_version"]
            if version == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(version == "6.1")
        // Only the cable changes while the partition runs: pulled, the adapter reports the link down.
        let pulled: [String: JSONValue] = ["switch": .string("lan"), "mac": .string("00:15:5d:09:00:07"), "connected": .bool(false)]
        _ = try await test.deployment.client.request(.PUT, "/v1/partitions/host/devices/nic", body: pulled, as: PartitionInfo.self)
        var link: String?
        for _ in 0..<50 where link != "down" {
            link = try await test.deployment.info("host").status["nic.00:15:5d:09:00:07.link"]
            if link != "down" { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(link == "down")
        let moved: [String: JSONValue] = ["switch": .string("elsewhere"), "mac": .string("00:15:5d:09:00:07")]
        let refused = await errorSentence {
            _ = try await test.deployment.client.request(.PUT, "/v1/partitions/host/devices/nic", body: moved, as: PartitionInfo.self)
        }
        #expect(refused != nil, "a NIC does not move to another switch while the partition runs")
        _ = try await test.deployment.client.request(.DELETE, "/v1/partitions/host/devices/nic", as: PartitionInfo.self)
        _ = try await test.deployment.waitForConsole("host", containing: "NIC 00:15:5d:09:00:07 removed")
        let after = try await test.deployment.client.request(.GET, "/v1/switches", as: [SwitchInfo].self)
        #expect(after.first { $0.name == "lan" }?.ports.isEmpty == true)
    }

    static var tapUnavailable: String? {
        guard getuid() == 0 else { return "the root needs CAP_NET_ADMIN to create a TAP (run as root)" }
        guard access("/dev/net/tun", R_OK | W_OK) == 0 else { return "/dev/net/tun is missing" }
        return nil
    }

    /// An internal switch: the root creates its TAP in the host's namespace; a child pings the
    /// host through it. The switch survives a parent restart: the new parent gets it again and a
    /// child created afterwards reaches the host too.
    @Test(.enabled(if: tapUnavailable == nil, "\(tapUnavailable ?? "")"))
    func aChildPingsTheHostThroughAnInternalSwitchAcrossAParentRestart() async throws {
        let test = try await TestDeployment.start("internal")
        defer { test.stop() }
        let tap = "hvt-\(getpid() % 100_000)"
        let info = try await createSwitch(test, SwitchConfiguration(name: "host", kind: "internal", hostInterface: tap))
        #expect(info.hostInterface == tap)
        #expect(FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)"))
        // 10.213.88.0/24: away from the 10.88.0.0/16 podman gives its own bridge by default.
        try NetworkInterface.setIPv4Address(tap, 0x0AD5_5801, prefix: 24, using: try NetworkInterface.controlSocket())
        try await childPings(test, "first", from: "10.213.88.2", to: "10.213.88.1", on: "host", mac: "00:15:5d:58:00:02")

        test.deployment.killParent()
        try await test.deployment.waitForParent(connected: false)
        try test.deployment.startParent()
        try await test.deployment.waitForParent(connected: true)
        try await childPings(test, "second", from: "10.213.88.3", to: "10.213.88.1", on: "host", mac: "00:15:5d:58:00:03")
        try await test.deployment.delete("first")
        try await test.deployment.delete("second")
        #expect(try await status(test, .delete, "/v1/switches/host") == 204)
        var gone = false
        for _ in 0..<50 where !gone {
            gone = !FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)")
            if !gone { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(gone, "deleting the switch removes its TAP")
    }

    /// An external switch, as the issue asks it tested: its uplink is one end of a veth pair
    /// whose other end is in a network namespace the test creates, with an address there. A
    /// child pings that address through the switch: out through the switch's TAP and the tc
    /// redirect to the uplink, back through the uplink's mirror. The uplink takes one external
    /// switch, and deleting the switch takes the root's rule off it.
    @Test(.enabled(if: tapUnavailable == nil, "\(tapUnavailable ?? "")"),
          .enabled(if: UplinkMirror.unavailableReason == nil, "\(UplinkMirror.unavailableReason ?? "")"))
    func aChildPingsAHostBehindAnExternalSwitchsUplink() async throws {
        let suffix = getpid() % 100_000
        let (uplink, peer, namespace) = ("hvu-\(suffix)", "hvp-\(suffix)", "hv-ext-\(suffix)")
        try Self.ip(["netns", "add", namespace])
        defer {
            try? Self.ip(["netns", "del", namespace])
            try? Self.ip(["link", "del", uplink])
        }
        try Self.ip(["link", "add", uplink, "type", "veth", "peer", "name", peer, "netns", namespace])
        try Self.ip(["link", "set", uplink, "up"])
        try Self.ip(["-n", namespace, "addr", "add", "10.213.89.1/24", "dev", peer])
        try Self.ip(["-n", namespace, "link", "set", peer, "up"])

        let test = try await TestDeployment.start("external")
        defer { test.stop() }
        let info = try await createSwitch(test, SwitchConfiguration(name: "lan", kind: "external", hostInterface: uplink))
        #expect(info.hostInterface == uplink)
        let second = await errorSentence {
            _ = try await createSwitch(test, SwitchConfiguration(name: "lan2", kind: "external", hostInterface: uplink))
        }
        #expect(second?.contains("uplink of external switch lan") == true, "\(second ?? "created")")
        #expect(try Self.uplinkRuleInstalled(on: uplink))

        try await childPings(test, "child", from: "10.213.89.2", to: "10.213.89.1", on: "lan", mac: "00:15:5d:59:00:02")
        try await test.deployment.delete("child")
        #expect(try await status(test, .delete, "/v1/switches/lan") == 204)
        #expect(try !Self.uplinkRuleInstalled(on: uplink), "deleting the switch takes its rule off the uplink")
    }

    /// Creates and starts child `name` (address `address`, NIC `mac` on `switchName`), which
    /// pings `peer` ten times; all ten must answer.
    func childPings(_ test: TestDeployment, _ name: String, from address: String, to peer: String, on switchName: String,
                    mac: String) async throws {
        try await test.create(name, memoryMiB: 64, arguments: "mode=net ip=\(address) peer=\(peer) net=ping pings=10 recv-kib=2048",
                              devices: ["heartbeat", Self.nic(switchName, mac)])
        try await test.deployment.perform("start", on: name)
        let console = try await test.deployment.waitForConsole(name, containing: "net: ping ")
        #expect(console.contains("replies=10/10"), "\(name): \(console)")
    }

    /// Runs iproute2's `ip`.
    static func ip(_ arguments: [String]) throws {
        let ip = access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"
        let result = try HostCommand.run(ip, arguments, timeoutSeconds: 30)
        guard result.status == 0 else { throw SystemError("ip \(arguments.joined(separator: " ")): \(result.errors)", errno: .ioError) }
    }

    /// Whether the uplink's ingress has the filter an external switch's root installs.
    static func uplinkRuleInstalled(on uplink: String) throws -> Bool {
        let tc = access("/usr/sbin/tc", X_OK) == 0 ? "/usr/sbin/tc" : "/sbin/tc"
        let shown = try HostCommand.run(tc, ["filter", "show", "dev", uplink, "ingress"], timeoutSeconds: 30)
        guard shown.status == 0 else { throw SystemError("tc filter show dev \(uplink): \(shown.errors)", errno: .ioError) }
        return shown.output.contains("pref \(UplinkMirror.uplinkFilterPreference) ") && shown.output.contains("Egress Mirror")
    }
}

/// The two methods these tests send without a body.
enum HTTPMethodName {
    case post, delete
}
