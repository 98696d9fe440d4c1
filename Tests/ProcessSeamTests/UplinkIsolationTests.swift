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

    @Test(.enabled(if: unavailable == nil, "\(unavailable ?? "")"))
    func theHandedDescriptorIsATAPNotASocket() throws {
        let suffix = getpid() % 100_000
        let (uplink, peer) = ("hvi-\(suffix)", "hvj-\(suffix)")
        try Self.ip(["link", "add", uplink, "type", "veth", "peer", "name", peer])
        defer { try? Self.ip(["link", "del", uplink]) }
        try Self.ip(["link", "set", uplink, "up"])
        try Self.ip(["link", "set", peer, "up"])

        let managed = try SwitchTable.make(SwitchConfiguration(name: "ext", kind: "external", hostInterface: uplink))
        defer { try? managed.uplinkMirror?.detach() }
        let descriptor = try #require(managed.hostSide)
        var status = stat()
        #expect(fstat(descriptor.rawValue, &status) == 0)
        #expect(status.st_mode & S_IFMT == S_IFCHR, "a TAP's descriptor is /dev/net/tun, a character device")
        // No socket call works on it: nothing can name, or bind to, another interface.
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(descriptor.rawValue, SOL_SOCKET, SO_TYPE, &type, &length) == -1 && errno == ENOTSOCK)
        #expect(managed.uplinkMirror?.uplink == uplink && managed.promiscuity != nil)
        #expect(managed.spec.hostInterface == uplink)
    }

    static func ip(_ arguments: [String]) throws {
        let ip = access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"
        let result = try HostCommand.run(ip, arguments, timeoutSeconds: 30)
        guard result.status == 0 else { throw SystemError("ip \(arguments.joined(separator: " ")): \(result.errors)", errno: .ioError) }
    }
}
