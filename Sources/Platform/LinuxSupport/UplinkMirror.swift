import Glibc
import SystemPackage

/// Joins an external switch's TAP to its uplink with tc(8) rules, so that whoever holds the
/// TAP's descriptor reaches that one host interface and nothing else (Docs/security.md):
///
/// - every frame written to the TAP (it arrives at the TAP's ingress) is redirected out of the
///   uplink, before the host's stack sees it;
/// - every frame the uplink receives is mirrored out of the TAP (read by the descriptor's
///   holder), and still goes on to the host's stack.
///
/// The host keeps its own use of the uplink and its addresses, which a Linux bridge enslaving it
/// would take (cutting the host off if done wrong; Wi-Fi interfaces cannot be enslaved at all).
/// An AF_PACKET socket would keep them too, but it sends out of whichever interface a `sendmsg`
/// names, and can be bound again to another; a TAP's descriptor can do neither. The host cannot
/// reach guests through the uplink (a NIC does not loop frames back): host traffic belongs on
/// an internal switch. The rules are one u32 filter on each interface's `clsact`
/// qdisc (a match-all u32 key, since not every kernel has `matchall`). The TAP's rule goes with
/// the TAP; the uplink's is removed by `detach()`, and one a crashed root left behind (which
/// mirrors to no device, and so does nothing) is replaced by the next `attach` on that uplink.
public struct UplinkMirror: Sendable, Equatable {
    /// The TAP interface.
    public let tap: String
    /// The host interface.
    public let uplink: String

    /// The preference of the one ingress filter the mirror owns on an uplink.
    public static let uplinkFilterPreference = 51_173

    /// Why mirrors cannot be set up on this host (tc is missing), or nil.
    public static var unavailableReason: String? {
        TrafficControl.installed ? nil : "tc (Debian's iproute2) is not installed"
    }

    /// Installs the rules: `tap` (up, with no addresses) and `uplink` must exist in the calling
    /// thread's network namespace.
    public static func attach(tap: String, uplink: String) throws(SystemError) -> UplinkMirror {
        let mirror = UplinkMirror(tap: tap, uplink: uplink)
        try TrafficControl.run(["qdisc", "add", "dev", tap, "clsact"])
        try TrafficControl.run(["filter", "add", "dev", tap, "ingress", "pref", "1"] + TrafficControl.everyFrame
                               + ["action", "mirred", "egress", "redirect", "dev", uplink])
        try TrafficControl.ensureClassifierQdisc(on: uplink)
        // A filter a root before this one left behind, if any.
        try? TrafficControl.run(mirror.uplinkFilter(["del"]))
        try TrafficControl.run(mirror.uplinkFilter(["add"]) + TrafficControl.everyFrame
                               + ["action", "mirred", "egress", "mirror", "dev", tap])
        return mirror
    }

    /// Removes the uplink's filter (the TAP's goes with the TAP). The `clsact` qdisc stays: it
    /// may hold filters of others, and an empty one costs nothing.
    public func detach() throws(SystemError) {
        try TrafficControl.run(uplinkFilter(["del"]))
    }

    private func uplinkFilter(_ verb: [String]) -> [String] {
        ["filter"] + verb + ["dev", uplink, "ingress", "pref", "\(Self.uplinkFilterPreference)"]
    }

    /// Stops the host's own stack from talking on a TAP that only carries a switch's frames:
    /// no IPv6 (link-local address, router and neighbour solicitations). Hosts without IPv6
    /// have nothing to turn off.
    public static func silenceHostStack(on interface: String) throws(SystemError) {
        let path = "/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6"
        let raw = open(path, O_WRONLY | O_CLOEXEC)
        if raw < 0 {
            if errno == ENOENT { return }
            throw SystemError.current("open \(path)")
        }
        let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        let written = try retryingOnInterrupt("write \(path)") { Glibc.write(descriptor.rawValue, "1", 1) }
        guard written == 1 else { throw SystemError("write \(path)", errno: .ioError) }
    }
}

/// tc(8), from Debian's iproute2.
enum TrafficControl {
    /// A u32 key that every frame matches, of every protocol.
    static let everyFrame = ["protocol", "all", "u32", "match", "u32", "0", "0"]

    static let candidates = ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"]

    static var executable: String { candidates.first { access($0, X_OK) == 0 } ?? candidates[0] }

    static var installed: Bool { candidates.contains { access($0, X_OK) == 0 } }

    /// Runs tc; a failure carries what tc said.
    static func run(_ arguments: [String]) throws(SystemError) {
        let result = try HostCommand.run(executable, arguments, timeoutSeconds: 30)
        guard result.status == 0 else {
            let said = result.errors.split(separator: "\n").first.map(String.init) ?? "exit status \(result.status)"
            throw SystemError("tc \(arguments.joined(separator: " ")) (\(said))", errno: .ioError)
        }
    }

    /// Adds a `clsact` qdisc to `interface` unless it has one (or the older `ingress`) already.
    static func ensureClassifierQdisc(on interface: String) throws(SystemError) {
        do throws(SystemError) {
            try run(["qdisc", "add", "dev", interface, "clsact"])
        } catch {
            let shown = try HostCommand.run(executable, ["qdisc", "show", "dev", interface], timeoutSeconds: 30)
            guard shown.status == 0, shown.output.contains("qdisc clsact") || shown.output.contains("qdisc ingress") else {
                throw error
            }
        }
    }
}
