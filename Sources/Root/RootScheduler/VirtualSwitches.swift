import ControlProtocol
import Glibc
import DeviceModel
import LinuxSupport
import ManagementAPI
import Privilege
import Synchronization

/// A virtual switch the root configured: what the parent is handed, and the host side the root
/// created for it and keeps for the switch's life (closing it removes the TAP interface).
struct ManagedSwitch: Sendable {
    let spec: SwitchSpec
    /// The TAP the parent is handed (an internal switch's, or the one an external switch's
    /// uplink is mirrored to); nil for a private switch.
    let hostSide: OwnedDescriptor?
    /// An external switch's tc rules between its TAP and the uplink.
    var uplinkMirror: UplinkMirror? = nil
    /// An external switch's hold on its uplink's promiscuity, kept by the root alone.
    var promiscuity: OwnedDescriptor? = nil
    /// What the set-up could not do but did without (for the log).
    var warnings: [String] = []
    /// The index of an external switch's uplink, which the switch claims in `SwitchTable.uplinks`.
    var uplinkIndex: Int32? = nil
}

/// Why a switch request failed.
public enum SwitchError: Error, Equatable, CustomStringConvertible {
    case notFound(String)
    case exists(String)
    /// NICs of these partitions are plugged into it.
    case inUse(String, partitions: [String])
    case invalid(String)
    case tooMany(Int)
    /// Another external switch is bound to this host interface.
    case uplinkInUse(String, by: String)
    /// The host interface cannot be an external switch's uplink.
    case unsuitableUplink(String, reason: String)
    /// The host side (TAP, tc rules) could not be set up.
    case hostSide(String, SystemError)

    public var description: String {
        switch self {
        case .notFound(let name):
            "No virtual switch is named \(name): list them with `hv switch list`."
        case .exists(let name):
            "A virtual switch named \(name) exists: delete it first with `hv switch delete \(name)`."
        case .inUse(let name, let partitions):
            "Cannot delete switch \(name): NICs of \(partitions.joined(separator: ", ")) are plugged into it; "
                + "remove them (`hv partition device remove`) or delete the partitions first."
        case .invalid(let reason):
            "Invalid switch configuration: \(reason)."
        case .tooMany(let maximum):
            "The root already has \(maximum) virtual switches; delete one first."
        case .unsuitableUplink(let interface, let reason):
            "Host interface \(interface) cannot be an external switch's uplink: \(reason)."
        case .uplinkInUse(let interface, let other):
            "Host interface \(interface) is the uplink of external switch \(other) already (one external switch per "
                + "interface, as on Hyper-V); use that switch or delete it first."
        case .hostSide(let what, let error):
            "Cannot set up \(what): \(error); check the interface name and that the root runs with CAP_NET_ADMIN."
        }
    }

    var kind: ManagementErrorKind {
        switch self {
        case .notFound: .notFound
        case .exists, .inUse, .uplinkInUse: .conflict
        case .invalid, .tooMany, .hostSide, .unsuitableUplink: .badRequest
        }
    }
}

/// The virtual switches of the root, by name.
final class SwitchTable: Sendable {
    let switches = Mutex<[String: ManagedSwitch]>([:])
    /// External switches' uplinks by interface index (another name of the same interface is the
    /// same uplink), each with its switch's name: claimed before the host side is set up
    /// (outside the table's lock, since it runs tc), released when the switch goes.
    let uplinks = Mutex<[Int32: String]>([:])

    /// The most switches (the parent runs at most as many).
    static let maximumSwitches = 64

    /// Gives up `index`'s claim if `name` holds it.
    func releaseUplink(_ index: Int32, of name: String) {
        uplinks.withLock { if $0[index] == name { $0[index] = nil } }
    }

    var all: [ManagedSwitch] { switches.withLock { table in table.keys.sorted().compactMap { table[$0] } } }

    func contains(_ name: String) -> Bool { switches.withLock { $0[name] != nil } }

    /// The spec and host side of a configuration: creates the TAP of an internal switch (up,
    /// with the switch's MTU), or an external one's TAP joined to its uplink (`UplinkMirror`),
    /// the uplink held promiscuous so that it takes frames for the guests' addresses.
    static func make(_ configuration: SwitchConfiguration) throws(SwitchError) -> ManagedSwitch {
        if let problem = configuration.problem { throw .invalid(problem) }
        guard let kind = SwitchSpec.Kind(name: configuration.kind) else { throw .invalid("unknown kind \(configuration.kind)") }
        let mtu = configuration.mtu ?? 1500
        let interface = configuration.resolvedHostInterface
        let spec = SwitchSpec(name: configuration.name, kind: kind, mtu: UInt32(mtu), hostInterface: interface)
        switch kind {
        case .private:
            return ManagedSwitch(spec: spec, hostSide: nil)
        case .internal:
            do throws(SystemError) {
                let (tap, actual) = try TAPDevice.create(name: interface)
                let control = try NetworkInterface.controlSocket()
                try NetworkInterface.setMTU(actual, mtu, using: control)
                try NetworkInterface.setUp(actual, true, using: control)
                return ManagedSwitch(spec: SwitchSpec(name: spec.name, kind: kind, mtu: spec.mtu, hostInterface: actual),
                                     hostSide: tap)
            } catch {
                throw .hostSide("the TAP interface \(interface) of switch \(configuration.name)", error)
            }
        case .external:
            if let reason = unsuitability(ofUplink: interface, mtu: mtu) { throw .unsuitableUplink(interface, reason: reason) }
            var mirror: UplinkMirror?
            do throws(SystemError) {
                let control = try NetworkInterface.controlSocket()
                let (tap, actual) = try TAPDevice.create(name: "hvx%d")
                let warnings = UplinkMirror.silenceHostStack(on: actual)
                try NetworkInterface.setMTU(actual, mtu, using: control)
                try NetworkInterface.setUp(actual, true, using: control)
                mirror = try UplinkMirror.attach(tap: actual, uplink: interface)
                let promiscuity = try PacketSocket.holdPromiscuous(interface: interface)
                return ManagedSwitch(spec: spec, hostSide: tap, uplinkMirror: mirror, promiscuity: promiscuity,
                                     warnings: warnings.map { "switch \(configuration.name): TAP \(actual) keeps \($0)" })
            } catch {
                // The TAP (and its own rule) goes with its descriptor; the uplink's rule is
                // taken off here, or the error says why it could not be.
                var failure = error
                if let mirror {
                    do throws(SystemError) {
                        try mirror.detach()
                    } catch {
                        failure = SystemError("\(failure.operation); then, taking its rule off \(interface): \(error)",
                                              errno: failure.errno)
                    }
                }
                throw .hostSide("the uplink \(interface) of switch \(configuration.name)", failure)
            }
        }
    }

    /// Why `interface` cannot carry an external switch of `mtu`, or nil: it must be an
    /// Ethernet interface other than loopback and a TUN/TAP (another switch's, say), with room
    /// for the switch's frames (mirred does not check, so larger frames would vanish).
    static func unsuitability(ofUplink interface: String, mtu: Int) -> String? {
        let directory = "/sys/class/net/\(interface)"
        func value(_ name: String) -> UInt64? {
            do throws(SystemError) { return try SysfsCounter(path: "\(directory)/\(name)").read() } catch { return nil }
        }
        guard let type = value("type") else { return "no such interface" }
        // ARPHRD_ETHER; loopback is ARPHRD_LOOPBACK (772), TUN ARPHRD_NONE.
        guard type == 1 else { return "not an Ethernet interface (ARPHRD \(type))" }
        if access("\(directory)/tun_flags", F_OK) == 0 { return "a TUN/TAP interface" }
        if let uplinkMTU = value("mtu"), uplinkMTU < UInt64(max(0, mtu)) {
            return "its MTU is \(uplinkMTU), below the switch's \(mtu)"
        }
        return nil
    }
}


extension RootScheduler {
    /// Every virtual switch, with the NICs plugged in.
    public func listSwitches() -> [SwitchInfo] {
        let users = switchUsers()
        return switchTable.all.map { info($0, users: users[$0.spec.name] ?? []) }
    }

    /// Creates a virtual switch and hands it to the parent. Switches are the host's network
    /// configuration (an internal one makes a TAP, an external one listens on a host interface),
    /// so only root or the root scheduler's own user may create or delete them.
    /// - Parameter requester: who asked (the API's peer); nil is the root itself.
    public func createSwitch(_ configuration: SwitchConfiguration, requester: UserIdentity? = nil) throws(RootError)
        -> SwitchInfo
    {
        try Self.requireSwitchAdministrator(requester, "create switch \(configuration.name)")
        guard !switchTable.contains(configuration.name) else { throw .virtualSwitch(.exists(configuration.name)) }
        var uplinkIndex: Int32?
        if configuration.kind == SwitchSpec.Kind.external.name {
            let uplink = configuration.resolvedHostInterface
            let index: Int32
            do throws(SystemError) {
                index = try NetworkInterface.index(of: uplink, using: try NetworkInterface.controlSocket())
            } catch {
                throw .virtualSwitch(.unsuitableUplink(uplink, reason: "\(error)"))
            }
            let holder = switchTable.uplinks.withLock { uplinks -> String? in
                if let holder = uplinks[index] { return holder }
                uplinks[index] = configuration.name
                return nil
            }
            if let holder { throw .virtualSwitch(.uplinkInUse(uplink, by: holder)) }
            uplinkIndex = index
        }
        var managed: ManagedSwitch
        do throws(SwitchError) {
            managed = try SwitchTable.make(configuration)
        } catch {
            if let uplinkIndex { switchTable.releaseUplink(uplinkIndex, of: configuration.name) }
            throw .virtualSwitch(error)
        }
        managed.uplinkIndex = uplinkIndex
        let inserted = switchTable.switches.withLock { table -> SwitchError? in
            guard table[managed.spec.name] == nil else { return .exists(managed.spec.name) }
            guard table.count < SwitchTable.maximumSwitches else { return .tooMany(SwitchTable.maximumSwitches) }
            table[managed.spec.name] = managed
            return nil
        }
        if let inserted {
            removeHostSide(of: managed)
            throw .virtualSwitch(inserted)
        }
        parentLink?.switchAttached(managed)
        let host = managed.spec.hostInterface.isEmpty ? "" : ", \(managed.spec.hostInterface)"
        let tap = managed.uplinkMirror.map { " through TAP \($0.tap)" } ?? ""
        logger.info("switch \(managed.spec.name) created (\(managed.spec.kind.name), MTU \(managed.spec.mtu)\(host)\(tap))")
        for warning in managed.warnings { logger.warning("\(warning)") }
        return info(managed, users: [])
    }

    /// Only root or the root's own user may change the switches.
    static func requireSwitchAdministrator(_ requester: UserIdentity?, _ what: String) throws(RootError) {
        guard let requester, requester.uid != 0, requester.uid != geteuid() else { return }
        throw .invalidRequest("Only root or uid \(geteuid()) may \(what); uid \(requester.uid) asked.")
    }

    /// Deletes a switch no NIC uses.
    public func deleteSwitch(_ name: String, requester: UserIdentity? = nil) throws(RootError) {
        try Self.requireSwitchAdministrator(requester, "delete switch \(name)")
        // The users are read under the switch table's lock, and partitions check their switches
        // after entering the partition table: one of the two sees the other.
        let result = switchTable.switches.withLock { table -> Result<ManagedSwitch, SwitchError> in
            guard let managed = table[name] else { return .failure(.notFound(name)) }
            let users = switchUsers()[name] ?? []
            guard users.isEmpty else {
                return .failure(.inUse(name, partitions: Array(Set(users.map { String($0.split(separator: "/")[0]) })).sorted()))
            }
            table[name] = nil
            return .success(managed)
        }
        let managed: ManagedSwitch
        switch result {
        case .failure(let error): throw .virtualSwitch(error)
        case .success(let removed): managed = removed
        }
        parentLink?.switchDetached(name)
        removeHostSide(of: managed)
        logger.info("switch \(name) deleted")
    }

    /// Cuts an external switch's TAP off from the uplink (the parent may keep its descriptor
    /// whatever it is told), takes the switch's rule off the uplink and gives the uplink back.
    /// The TAP and the promiscuity go with their descriptors, once the parent has closed its copy.
    func removeHostSide(of managed: ManagedSwitch) {
        guard let mirror = managed.uplinkMirror else { return }
        do throws(SystemError) {
            try mirror.revokeTAP()
        } catch {
            logger.error("switch \(managed.spec.name): cannot cut TAP \(mirror.tap) off \(mirror.uplink): \(error)")
        }
        do throws(SystemError) {
            try mirror.detach()
        } catch {
            logger.warning("switch \(managed.spec.name): \(error); its rule on \(mirror.uplink) mirrors to no device once the TAP is gone")
        }
        if let index = managed.uplinkIndex { switchTable.releaseUplink(index, of: managed.spec.name) }
    }

    /// "partition/instance" of every NIC of a live partition, by switch name.
    func switchUsers() -> [String: [String]] {
        var users: [String: [String]] = [:]
        for entry in livePartitions {
            for device in entry.devices {
                for name in catalog.virtualSwitches(of: device) {
                    users[name, default: []].append("\(entry.partition.name)/\(device.instance)")
                }
            }
        }
        return users
    }

    /// Refuses devices that plug into a switch the root does not have.
    func checkSwitches(of devices: [DeviceSpec], request: String) throws(RootError) {
        for device in devices {
            for name in catalog.virtualSwitches(of: device) where !switchTable.contains(name) {
                throw .invalidRequest("\(request): device \(device.kind) plugs into switch \(name), which does not exist; "
                                      + "create it with `hv switch create \(name) --kind private|internal|external`.")
            }
        }
    }

    private func info(_ managed: ManagedSwitch, users: [String]) -> SwitchInfo {
        SwitchInfo(name: managed.spec.name, kind: managed.spec.kind.name, mtu: Int(managed.spec.mtu),
                   hostInterface: managed.spec.hostInterface, ports: users.sorted())
    }

    /// The switches a parent that connects is handed, before the partitions.
    var linkedSwitches: [ManagedSwitch] { switchTable.all }
}
