import Foundation
import ManagementAPI
import Testing

@Suite("Switch configuration")
struct SwitchConfigurationTests {
    @Test func validConfigurationsAndTheirHostInterfaces() throws {
        #expect(SwitchConfiguration(name: "lan", kind: "private").problem == nil)
        #expect(SwitchConfiguration(name: "lan", kind: "private").resolvedHostInterface == "")
        #expect(SwitchConfiguration(name: "lab", kind: "internal").resolvedHostInterface == "hv-lab")
        #expect(SwitchConfiguration(name: "a-very-long-switch-name", kind: "internal").resolvedHostInterface == "hv-a-very-long-")
        #expect(SwitchConfiguration(name: "up", kind: "external", hostInterface: "eth0", mtu: 9000).problem == nil)
        let decoded = try JSONDecoder().decode(SwitchConfiguration.self,
                                               from: Data(#"{"name": "lab", "kind": "internal", "hostInterface": "hv-lab", "mtu": 1500}"#.utf8))
        #expect(decoded == SwitchConfiguration(name: "lab", kind: "internal", hostInterface: "hv-lab", mtu: 1500))
    }

    @Test(arguments: [
        (SwitchConfiguration(name: "", kind: "private"), "a switch name is"),
        (SwitchConfiguration(name: "-x", kind: "private"), "a switch name is"),
        (SwitchConfiguration(name: "a b", kind: "private"), "a switch name is"),
        (SwitchConfiguration(name: String(repeating: "x", count: 33), kind: "private"), "a switch name is"),
        (SwitchConfiguration(name: "lan", kind: "bridged"), "kind \"bridged\""),
        (SwitchConfiguration(name: "lan", kind: "private", mtu: 575), "mtu 575"),
        (SwitchConfiguration(name: "lan", kind: "private", mtu: 9001), "mtu 9001"),
        (SwitchConfiguration(name: "lan", kind: "private", hostInterface: "eth0"), "no host interface"),
        (SwitchConfiguration(name: "lan", kind: "external"), "needs --host-interface"),
        (SwitchConfiguration(name: "lan", kind: "external", hostInterface: "an-interface-too-long"), "not a Linux interface name"),
        (SwitchConfiguration(name: "lan", kind: "internal", hostInterface: "../x"), "not a Linux interface name"),
    ])
    func invalidConfigurationsAreRefusedWithAReason(_ configuration: SwitchConfiguration, _ reason: String) {
        #expect(configuration.problem?.contains(reason) == true, "\(configuration.problem ?? "accepted")")
    }
}
