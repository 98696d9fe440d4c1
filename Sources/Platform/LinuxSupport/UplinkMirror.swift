import Glibc
import SystemPackage

/// Joins an external switch's TAP to its uplink with tc(8) rules, so that whoever holds the
/// TAP's descriptor reaches that one host interface and nothing else (Docs/security.md):
///
/// - every frame written to the TAP (it arrives at the TAP's ingress) is redirected out of the
///   uplink, before the host's stack sees it;
/// - every frame the uplink receives is mirrored out of the TAP (read by the descriptor's
///   holder), and then goes on through the uplink's other ingress filters, if any, to the
///   host's stack.
///
/// The host keeps its own use of the uplink and its addresses, which a Linux bridge enslaving it
/// would take (cutting the host off if done wrong; Wi-Fi interfaces cannot be enslaved at all).
/// An AF_PACKET socket would keep them too, but it sends out of whichever interface a `sendmsg`
/// names, and can be bound again to another; a TAP's descriptor can do neither. The host cannot
/// reach guests through the uplink (a NIC does not loop frames back): host traffic belongs on
/// an internal switch.
///
/// Each rule is a classic-BPF filter that returns "match" for every frame, however short (a u32
/// key skips frames too short for it, and not every kernel has `matchall`), on the interface's
/// `clsact` qdisc. The uplink's rule sits at `uplinkFilterPreference`, ahead of the usual
/// automatic preferences, and continues classification after mirroring, so the host's own
/// filters see every frame as before. It is only ever replaced or removed where it mirrors to
/// no device (one a crashed root left behind) or to this mirror's TAP, so a rule of another
/// root, or anyone's filter at that preference, is never touched: `attach` refuses instead.
public struct UplinkMirror: Sendable, Equatable {
    /// The TAP interface.
    public let tap: String
    /// The host interface.
    public let uplink: String
    /// Whether `attach` added the uplink's `clsact` qdisc (`detach` removes it again once it
    /// holds no filter).
    public let addedQdisc: Bool

    /// The preference of the uplink's ingress filter.
    public static let uplinkFilterPreference = 3
    /// The preference of the TAP's ingress filter.
    static let tapFilterPreference = 1
    /// A classic BPF program of one instruction, `ret #-1`: every frame matches.
    static let everyFrame = ["protocol", "all", "bpf", "bytecode", "1,6 0 0 4294967295,"]

    /// Why mirrors cannot be set up on this host (tc is missing), or nil.
    public static var unavailableReason: String? {
        TrafficControl.installed ? nil : "tc (Debian's iproute2) is not installed"
    }

    /// Installs the rules: `tap` (up, with no addresses) and `uplink` must exist in the calling
    /// thread's network namespace.
    public static func attach(tap: String, uplink: String) throws(SystemError) -> UplinkMirror {
        try TrafficControl.run(["qdisc", "add", "dev", tap, "clsact"])
        try TrafficControl.run(["filter", "add", "dev", tap, "ingress", "pref", "\(tapFilterPreference)"] + everyFrame
                               + ["action", "mirred", "egress", "redirect", "dev", uplink])
        let added = try TrafficControl.ensureClassifierQdisc(on: uplink)
        let mirror = UplinkMirror(tap: tap, uplink: uplink, addedQdisc: added)
        let targets = try mirror.uplinkRuleTargets()
        if let targets {
            // Something holds the preference: only a rule whose TAP is gone may be replaced.
            guard !targets.isEmpty, targets.allSatisfy({ $0 == "*" }) else {
                let holder = targets.isEmpty ? "another filter" : "a rule mirroring to \(targets.joined(separator: ", "))"
                throw SystemError("tc: ingress preference \(uplinkFilterPreference) of \(uplink) holds \(holder)",
                                  errno: .resourceBusy)
            }
            try TrafficControl.run(mirror.uplinkFilter("del"))
        }
        try TrafficControl.run(mirror.uplinkFilter("add") + everyFrame
                               + ["action", "mirred", "egress", "mirror", "dev", tap, "continue"])
        return mirror
    }

    /// Removes the uplink's rule, if it is still this mirror's (or mirrors to no device), and the
    /// `clsact` qdisc `attach` added once no filter is left on it.
    public func detach() throws(SystemError) {
        if let targets = try uplinkRuleTargets(), !targets.isEmpty, targets.allSatisfy({ $0 == tap || $0 == "*" }) {
            try TrafficControl.run(uplinkFilter("del"))
        }
        if addedQdisc, try TrafficControl.hasNoFilters(on: uplink) {
            try TrafficControl.run(["qdisc", "del", "dev", uplink, "clsact"])
        }
    }

    /// Cuts the TAP off from the uplink by taking the interface down: a write to a TAP that is
    /// down fails (EIO) before the frame reaches its rule, and nothing is mirrored to it. The
    /// TAP lives as long as a descriptor of it does, and the parent holding one may not let go
    /// of it when told the switch is gone; it cannot bring it up again (that needs
    /// CAP_NET_ADMIN and a socket of the host's namespace).
    public func revokeTAP() throws(SystemError) {
        try NetworkInterface.setUp(tap, false, using: try NetworkInterface.controlSocket())
    }

    private func uplinkFilter(_ verb: String) -> [String] {
        ["filter", verb, "dev", uplink, "ingress", "pref", "\(Self.uplinkFilterPreference)"]
    }

    /// The devices the filters at the uplink's preference mirror to ("*" for one that is gone);
    /// an empty list for a filter that mirrors nowhere; nil if the preference is free.
    private func uplinkRuleTargets() throws(SystemError) -> [String]? {
        let shown = try TrafficControl.output(uplinkFilter("show"))
        guard shown.contains(where: { !$0.isWhitespace }) else { return nil }
        return TrafficControl.mirrorTargets(in: shown)
    }

    /// Stops the host's own stack from talking on, or routing from, a TAP that only carries a
    /// switch's frames: no IPv6 (link-local address, router and neighbour solicitations), no
    /// IPv4 forwarding of what arrives on it (were its rule ever taken away). Best effort: a
    /// host whose `/proc/sys` cannot be written (a container's) keeps them, and the TAP's rule
    /// still takes every frame before the stack does.
    /// - Returns: what could not be set, for the log; empty if everything was.
    public static func silenceHostStack(on interface: String) -> [String] {
        var unset: [String] = []
        for (path, value) in [("/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6", "1"),
                              ("/proc/sys/net/ipv4/conf/\(interface)/forwarding", "0")] {
            let raw = open(path, O_WRONLY | O_CLOEXEC)
            if raw < 0 {
                if errno != ENOENT { unset.append("\(path): \(Errno.current)") }
                continue
            }
            let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
            // SAFETY: the buffer holds the value's one byte and its NUL; one byte is written.
            let written = value.utf8CString.withUnsafeBufferPointer { Glibc.write(descriptor.rawValue, $0.baseAddress, 1) }
            if written != 1 { unset.append("\(path): \(Errno.current)") }
        }
        return unset
    }
}

/// tc(8), from Debian's iproute2, run with a fixed minimal environment (tc loads filter modules
/// from `TC_LIB_DIR`: the root's environment must not choose what code it runs).
enum TrafficControl {
    static let candidates = ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"]
    static let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]

    static var executable: String { candidates.first { access($0, X_OK) == 0 } ?? candidates[0] }

    static var installed: Bool { candidates.contains { access($0, X_OK) == 0 } }

    /// Runs tc; a failure carries what tc said.
    static func run(_ arguments: [String]) throws(SystemError) {
        _ = try output(arguments)
    }

    /// Runs tc and returns what it printed; a failure carries what tc said.
    static func output(_ arguments: [String]) throws(SystemError) -> String {
        let result = try HostCommand.run(executable, arguments, environment: environment, timeoutSeconds: 30)
        guard result.status == 0 else {
            let said = result.errors.split(separator: "\n").first.map(String.init) ?? "exit status \(result.status)"
            throw SystemError("tc \(arguments.joined(separator: " ")) (\(said))", errno: .ioError)
        }
        return result.output
    }

    /// Adds a `clsact` qdisc to `interface` unless it has one (or the older `ingress`) already.
    /// - Returns: whether it added one.
    static func ensureClassifierQdisc(on interface: String) throws(SystemError) -> Bool {
        let shown = try output(["qdisc", "show", "dev", interface])
        if shown.contains("qdisc clsact") || shown.contains("qdisc ingress") { return false }
        try run(["qdisc", "add", "dev", interface, "clsact"])
        return true
    }

    /// Whether `interface`'s `clsact` qdisc holds no filter, in either direction.
    static func hasNoFilters(on interface: String) throws(SystemError) -> Bool {
        for direction in ["ingress", "egress"] {
            let shown = try output(["filter", "show", "dev", interface, direction])
            if shown.contains(where: { !$0.isWhitespace }) { return false }
        }
        return true
    }

    /// The devices mirred actions in tc's `filter show` text send to: "…(Egress Mirror to device
    /// hvx0) continue" gives "hvx0", and "*" is a device that is gone.
    static func mirrorTargets(in shown: String) -> [String] {
        shown.split(separator: "\n").compactMap { line in
            guard let start = line.firstRange(of: "to device ") else { return nil }
            let rest = line[start.upperBound...]
            return rest.firstIndex(of: ")").map { String(rest[..<$0]) }
        }
    }
}
