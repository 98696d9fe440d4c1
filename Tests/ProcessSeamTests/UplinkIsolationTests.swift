import Glibc
import LinuxSupport
import ManagementAPI
@testable import RootScheduler
import Testing

/// What the root hands the parent for an external switch (Docs/security.md): a TAP joined to the
/// uplink, never a packet socket, whose `sendmsg` could name any host interface and which could
/// be bound again to another one. Before: the parent was handed an AF_PACKET socket.
@Suite("External switch: the parent's descriptor reaches only the uplink", .serialized)
struct UplinkIsolationTests {
    static var unavailable: String? {
        guard geteuid() == 0 else { return "needs root to create interfaces" }
        guard access("/dev/net/tun", R_OK | W_OK) == 0 else { return "/dev/net/tun is missing" }
        return UplinkMirror.unavailableReason
    }

    /// A veth pair in the host's namespace (the root reads an uplink's facts in sysfs, which
    /// shows the namespace it was mounted in), removed when `body` returns.
    static func withUplink(_ body: (_ uplink: String) throws -> Void) throws {
        let suffix = getpid() % 100_000
        let (uplink, peer) = ("hvi-\(suffix)", "hvj-\(suffix)")
        try? ip(["link", "del", uplink])
        try ip(["link", "add", uplink, "type", "veth", "peer", "name", peer])
        defer { try? ip(["link", "del", uplink]) }
        try ip(["link", "set", uplink, "up"])
        try ip(["link", "set", peer, "up"])
        try body(uplink)
    }

    @Test(.enabled(if: unavailable == nil, "\(unavailable ?? "")"))
    func theHandedDescriptorIsATAPNotASocket() throws {
        try Self.withUplink { uplink in
            let managed = try SwitchTable.make(SwitchConfiguration(name: "ext", kind: "external", hostInterface: uplink))
            let mirror = try #require(managed.uplinkMirror)
            defer { try? mirror.detach() }
            let descriptor = try #require(managed.hostSide)
            var status = stat()
            #expect(fstat(descriptor.rawValue, &status) == 0)
            #expect(status.st_mode & S_IFMT == S_IFCHR, "a TAP's descriptor is /dev/net/tun, a character device")
            // No socket call works on it: nothing can name, or bind to, another interface.
            var type: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            #expect(getsockopt(descriptor.rawValue, SOL_SOCKET, SO_TYPE, &type, &length) == -1 && errno == ENOTSOCK)
            #expect(mirror.uplink == uplink && managed.promiscuity != nil && managed.spec.hostInterface == uplink)
            #expect(try Self.tc(["filter", "show", "dev", mirror.tap, "ingress"]).contains("Egress Redirect to device \(uplink)"))
        }
    }

    /// Deleting the switch cuts its TAP off even while someone still holds its descriptor (a
    /// parent that ignores being told), and takes only its own rule off the uplink; a rule of a
    /// live TAP at the preference (another root's switch) is never replaced, one whose TAP is
    /// gone is.
    @Test(.enabled(if: unavailable == nil, "\(unavailable ?? "")"))
    func aRemovedSwitchsTAPIsCutOffAndOnlyItsOwnRuleGoes() throws {
        try Self.withUplink { uplink in
            let first = try SwitchTable.make(SwitchConfiguration(name: "one", kind: "external", hostInterface: uplink))
            let mirror = try #require(first.uplinkMirror)
            // Another root's switch on the same uplink meets the live rule and is refused.
            let (otherTAP, otherName) = try TAPDevice.create(name: "hvx%d")
            #expect(throws: SystemError.self) { _ = try UplinkMirror.attach(tap: otherName, uplink: uplink) }
            #expect(try Self.tc(["filter", "show", "dev", uplink, "ingress"]).contains("Egress Mirror to device \(mirror.tap)"))
            _ = otherTAP

            try mirror.revokeTAP()
            try mirror.detach()
            // The descriptor the parent holds writes nothing any more.
            let descriptor = try #require(first.hostSide)
            var frame = [UInt8](repeating: 0, count: 12 + 60)
            for index in 12..<18 { frame[index] = 0xFF }
            #expect(write(descriptor.rawValue, &frame, frame.count) == -1 && errno == EIO)
            #expect(try !Self.tc(["filter", "show", "dev", uplink, "ingress"]).contains("mirred"))
            #expect(try !Self.tc(["qdisc", "show", "dev", uplink]).contains("clsact"), "the qdisc it added went with it")

            // A rule whose TAP is gone (a crashed root's) is replaced: this switch's descriptors,
            // and with them its TAP, go at once, its rule stays behind.
            _ = try #require(try SwitchTable.make(SwitchConfiguration(name: "two", kind: "external", hostInterface: uplink)).uplinkMirror)
            let shown = try Self.tc(["filter", "show", "dev", uplink, "ingress"])
            #expect(shown.contains("Egress Mirror to device *"), "the TAP went with its descriptor: \(shown)")
            let (thirdTAP, thirdName) = try TAPDevice.create(name: "hvx%d")
            let third = try UplinkMirror.attach(tap: thirdName, uplink: uplink)
            defer { try? third.detach() }
            #expect(try Self.tc(["filter", "show", "dev", uplink, "ingress"]).contains("Egress Mirror to device \(thirdName)"))
            _ = thirdTAP
        }
    }

    static func tc(_ arguments: [String]) throws -> String {
        let tc = access("/usr/sbin/tc", X_OK) == 0 ? "/usr/sbin/tc" : "/sbin/tc"
        let result = try HostCommand.run(tc, arguments, timeoutSeconds: 30)
        guard result.status == 0 else { throw SystemError("tc \(arguments.joined(separator: " ")): \(result.errors)", errno: .ioError) }
        return result.output
    }

    static func ip(_ arguments: [String]) throws {
        let ip = access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"
        let result = try HostCommand.run(ip, arguments, timeoutSeconds: 30)
        guard result.status == 0 else { throw SystemError("ip \(arguments.joined(separator: " ")): \(result.errors)", errno: .ioError) }
    }
}
