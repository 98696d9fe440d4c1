import ControlProtocol
import LinuxSupport
import Logging
import Synchronization
import VirtualSwitch

/// The virtual switches this parent runs, as the root configured them: each switch, and for an
/// internal or external one the thread that pumps frames between its host port and the TAP the
/// root created (the parent has no privilege to create it; an external switch's TAP reaches its
/// uplink and nothing else, through tc rules the root set, `UplinkMirror`).
final class SwitchService: Sendable {
    let directory = SwitchDirectory()
    private let pumps = Mutex<[String: HostSide]>([:])

    /// A switch's host port: the pump, and the port whose direct sink writes to its descriptor.
    struct HostSide: Sendable {
        var pump: HostPortPump
        var port: SwitchPortID
        var virtualSwitch: VirtualSwitch

        /// Stops the pump and drops the sink, so nothing holds the host descriptor any more (the
        /// root closes its own copy: the TAP goes away).
        func stop() {
            virtualSwitch.setDirectSink(nil, for: port)
            pump.stop()
        }
    }
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Runs the switch `spec` describes; `descriptor` is its host side (none for a private
    /// switch). A switch of the same name is replaced: NICs built from now on use the new one.
    func attach(_ spec: SwitchSpec, descriptor: OwnedDescriptor?) {
        let kind: SwitchKind = switch spec.kind {
        case .private: .private
        case .internal: .internal(hostInterface: spec.hostInterface)
        case .external: .external(uplinkInterface: spec.hostInterface)
        }
        let virtualSwitch = VirtualSwitch(name: spec.name, kind: kind, mtu: Int(spec.mtu))
        var hostSide: HostSide?
        if spec.kind != .private {
            guard let descriptor else {
                logger.error("switch \(spec.name): the root sent no host descriptor; not started")
                return
            }
            do throws(SystemError) {
                let endpoint = try VirtioFrameEndpoint.tap(descriptor)
                var configuration = SwitchPortConfiguration(name: spec.hostInterface,
                                                            kind: spec.kind == .internal ? .host : .uplink)
                configuration.maximumFrameSize = virtualSwitch.maximumFrameSize
                let (port, ready) = try virtualSwitch.addPort(configuration)
                let pump = try HostPortPump(endpoint: endpoint, port: port, ready: ready, switch: virtualSwitch,
                                            name: "sw-\(spec.name.prefix(12))")
                // A NIC's worker writes its frames for the host straight to the descriptor (a
                // non-blocking write of one frame), instead of handing each to the pump thread,
                // and takes what the host answered during those writes at once.
                virtualSwitch.setDirectSink(pump.directSink(for: endpoint), pickup: pump.pickup, for: port)
                hostSide = HostSide(pump: pump, port: port, virtualSwitch: virtualSwitch)
            } catch {
                logger.error("switch \(spec.name): cannot serve its host port \(spec.hostInterface): \(error); not started")
                return
            }
        }
        let (added, replaced) = directory.add(virtualSwitch)
        guard added else {
            hostSide?.stop()
            logger.error("switch \(spec.name): this parent already runs \(SwitchDirectory.maximumSwitches) switches; not started")
            return
        }
        let old = pumps.withLock { table in
            if let hostSide { return table.updateValue(hostSide, forKey: spec.name) }
            return table.removeValue(forKey: spec.name)
        }
        old?.stop()
        logger.info("switch \(spec.name) (\(spec.kind.name), MTU \(spec.mtu)\(spec.hostInterface.isEmpty ? "" : ", \(spec.hostInterface)")) \(replaced == nil ? "running" : "replaced")")
    }

    /// Stops the switch `name` (the root deleted it; no NIC uses it).
    func detach(_ name: String) {
        directory.remove(name)
        pumps.withLock { $0.removeValue(forKey: name) }?.stop()
        logger.info("switch \(name) deleted")
    }

    /// Stops every pump (the parent is going away or lost the root, which sends them again).
    func stopAll() {
        let all = pumps.withLock { table -> [HostSide] in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for pump in all { pump.stop() }
        for virtualSwitch in directory.all { directory.remove(virtualSwitch.name) }
    }
}
