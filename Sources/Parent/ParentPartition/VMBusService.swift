import DeviceHost
import DeviceModel
import GuestMemory
import HyperV
import LinuxSupport
import Logging
import Synchronization
import VMBusHost
import VMBusProtocol
import VMBusServer

/// The VMBus server of one child partition, wired to the world: guest channel messages arrive
/// from the root (HvPostMessage on connections 1 and 4), the server's answers go back as SynIC
/// messages on SINT 2, and each open channel gets ring memory in guest RAM, an ioeventfd
/// connection (relid | 0x2000) for the guest's signals, and a worker thread running its VSP.
///
/// A channel whose guest corrupts its ring or breaks its device protocol is closed and
/// rescinded; the other channels and the parent carry on.
///
/// Everything here runs on the partition's control thread (`ChildPartition.control`): guest
/// messages, and what channel workers ask for (sub-channels, giving up a channel), which they
/// enqueue there. The lock only makes the state `Sendable`; it is never contended.
final class VMBusService: PartitionService {
    let partition: ChildPartition
    private let state: Mutex<State>
    /// Rate limit for protocol-violation logs.
    private let violations = Atomic<Int>(0)
    /// The GPADLs devices may use beside their rings, with their leases.
    let gpadls = GPADLRegistry()

    struct State {
        var server: VMBusServer
        var devices: [UInt32: Device] = [:]
        var open: [UInt32: OpenChannel] = [:]
    }

    /// A synthetic device of the partition: what the guest is offered and who serves it. Each
    /// of its channels (the primary and any sub-channels) maps to it.
    struct Device {
        var spec: DeviceSpec
        var classID: GUID
        var provider: any VirtualServiceProvider
        var subChannelIndex: UInt16 = 0

        var name: String { spec.kind }
    }

    struct OpenChannel {
        var worker: ChannelWorker
    }

    var messageConnections: [UInt32] {
        [VMBusConstants.messageConnectionID.rawValue, VMBusConstants.initiateContactConnectionID.rawValue]
    }

    init(partition: ChildPartition, devices offered: [Device]) {
        self.partition = partition
        var server = VMBusServer(configuration: .init(memorySize: UInt64(partition.memory.size),
                                                      processorCount: partition.processorCount))
        var devices: [UInt32: Device] = [:]
        for device in offered {
            let offer = ChannelOffer(interfaceType: device.classID, interfaceInstance: device.spec.instance, name: device.name)
            guard let (relID, _) = server.addOffer(offer) else {
                partition.logger.error("partition \(partition.name): no relid left for \(device.name)")
                continue
            }
            devices[relID] = device
        }
        state = Mutex(State(server: server, devices: devices))
        partition.prepareDoorbells(sint: UInt8(VMBusConstants.messageSINT))
        for connection in messageConnections {
            partition.root.registerMessageConnection(partitionID: partition.id, connectionID: connection)
        }
    }

    // MARK: Devices coming and going

    /// Offers a device added while the partition runs (on the control thread): a guest that has
    /// asked for offers sees it at once, as a hot-added device.
    func add(_ device: Device) {
        state.withLock { state in
            let offer = ChannelOffer(interfaceType: device.classID, interfaceInstance: device.spec.instance, name: device.name)
            guard let (relID, actions) = state.server.addOffer(offer) else {
                partition.logger.error("partition \(partition.name): no relid left for \(device.name)")
                return
            }
            state.devices[relID] = device
            perform(actions, &state)
        }
    }

    /// Withdraws the device `instance` (on the control thread): its channels are closed and
    /// rescinded, which the guest sees as a hot-removed device.
    /// - Returns: whether the partition had it.
    @discardableResult
    func remove(instance: GUID) -> Bool {
        state.withLock { state in
            let primaries = state.devices.filter { $0.value.spec.instance == instance && $0.value.subChannelIndex == 0 }
            for relID in primaries.keys.sorted() {
                perform(state.server.rescind(channel: relID), &state)
                if state.server.state(of: relID) == .released { state.devices[relID] = nil }
            }
            // Its channels are closed now (their workers stopped): release what it holds beyond them.
            for device in primaries.values { (device.provider as? any DetachableProvider)?.detach() }
            return !primaries.isEmpty
        }
    }

    // MARK: Inputs

    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8]) {
        guard type == .vmbus else { return }
        state.withLock { state in
            let actions = state.server.handle(payload, connectionID: ConnectionID(connectionID), from: vp)
            perform(actions, &state)
        }
    }

    func requestGuestShutdown() {
        let providers = state.withLock { $0.devices.values.map(\.provider) }
        for case let provider as any GuestShutdownProvider in providers {
            provider.requestGuestShutdown()
        }
    }

    /// A channel's worker gave up on it (called on that worker's thread): the rescind runs on
    /// the control thread, which can wait for the worker to end.
    private func channelFailed(_ relID: UInt32, reason: String) {
        partition.logger.warning("partition \(partition.name): closing channel \(relID): \(reason)")
        partition.report(["vmbus.channel.\(relID).closed": reason])
        partition.perform { [self] in
            state.withLock { state in
                let actions = state.server.rescind(channel: relID)
                perform(actions, &state)
            }
        }
    }

    /// A primary channel's session asked for `count` sub-channels (on its worker thread): they
    /// are offered from the control thread, with the lowest free sub-channel indices.
    private func offerSubChannels(of primary: UInt32, count: Int) {
        partition.perform { [self] in
            state.withLock { state in
                guard let device = state.devices[primary], device.subChannelIndex == 0 else { return }
                let inUse = Set(state.server.subChannels(of: primary).compactMap { state.devices[$0]?.subChannelIndex })
                var index: UInt16 = 1
                for _ in 0..<min(count, Self.maximumSubChannels) {
                    while inUse.contains(index) { index += 1 }
                    let offer = ChannelOffer(interfaceType: device.classID, interfaceInstance: device.spec.instance,
                                             name: device.name, subChannelIndex: index)
                    guard let (relID, actions) = state.server.addOffer(offer) else {
                        partition.logger.error("partition \(partition.name): no relid left for a \(device.name) sub-channel")
                        return
                    }
                    var subChannel = device
                    subChannel.subChannelIndex = index
                    state.devices[relID] = subChannel
                    perform(actions, &state)
                    index += 1
                }
            }
        }
    }

    /// The most sub-channels one channel may have.
    static let maximumSubChannels = 64

    func stop() {
        let providers = state.withLock { state -> [any VirtualServiceProvider] in
            for relID in state.open.keys.sorted() { close(relID, &state) }
            return state.devices.values.filter { $0.subChannelIndex == 0 }.map(\.provider)
        }
        for provider in providers { (provider as? any DetachableProvider)?.detach() }
        for connection in messageConnections {
            partition.root.unregisterMessageConnection(partitionID: partition.id, connectionID: connection)
        }
    }

    // MARK: Actions

    private func perform(_ actions: [ServerAction], _ state: inout State) {
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case .post(let vp, let sint, let message):
                partition.postMessage(vp: vp, sint: sint, type: .vmbus, payload: message.bytes)
            case .open(let request):
                let accepted = open(request, &state)
                queue.append(contentsOf: state.server.completeOpen(channel: request.channel, accepted: accepted))
            case .close(let relID):
                close(relID, &state)
            case .retarget(let relID, let vp):
                state.open[relID]?.worker.target.retarget(to: vp)
            case .gpadlCreated(let gpadl):
                gpadls.publish(handle: gpadl.id, channel: gpadl.channel, byteOffset: gpadl.byteOffset,
                               byteCount: gpadl.byteCount, pageNumbers: gpadl.pageNumbers)
            case .releaseGPADL(let gpadl):
                // Channels whose rings it held were closed first; a device still copying into a
                // buffer it holds is waited for, so GPADL_TORNDOWN (the next action) is posted
                // only once no device touches the pages.
                if !gpadls.revoke(handle: gpadl.id) {
                    partition.logger.error(
                        "partition \(partition.name): a device still held GPADL \(gpadl.id) after its teardown deadline")
                }
            case .released(let relID):
                // A released sub-channel, or a primary channel whose device was removed: gone for good.
                state.devices[relID] = nil
            case .connected(let version):
                partition.logger.info("partition \(partition.name): VMBus \(version.major).\(version.minor) connected")
                partition.report(["vmbus.version": "\(version.major).\(version.minor)"])
            case .disconnected:
                partition.logger.info("partition \(partition.name): VMBus unloaded")
                partition.report(["vmbus.version": "unloaded"])
            case .protocolViolation(let reason):
                if violations.wrappingAdd(1, ordering: .relaxed).oldValue < 20 {
                    partition.logger.notice("partition \(partition.name): VMBus: \(reason)")
                }
            }
        }
    }

    /// Maps the channel's rings, registers its event connection, starts its worker.
    private func open(_ request: OpenRequest, _ state: inout State) -> Bool {
        guard let device = state.devices[request.channel] else { return false }
        do {
            let incoming = try GuestRingMemory(memory: partition.memory, pages: request.incomingRingPages)
            let outgoing = try GuestRingMemory(memory: partition.memory, pages: request.outgoingRingPages)
            let relID = request.channel
            let opening = ChannelOpening(relID: relID, subChannelIndex: device.subChannelIndex, targetVP: request.targetVP)
            guard let session = device.provider.openSession(opening) else { return false }
            let guestSignal = try EventFD()
            let channel = try VSPChannel(
                relID: relID, subChannelIndex: device.subChannelIndex, incoming: incoming, outgoing: outgoing,
                targetVP: request.targetVP, guestSignal: guestSignal,
                signalGuest: { [partition] vp in
                    partition.signalEvent(vp: vp, sint: UInt8(VMBusConstants.messageSINT), flag: relID)
                },
                subChannels: { [self] count in offerSubChannels(of: relID, count: count) },
                gpadls: gpadls.view(channel: primaryRelID(of: relID, state)))
            partition.channelOpened(relID: relID, device: device.name, subChannelIndex: device.subChannelIndex,
                                    counters: channel.counters)
            // Registered before OPEN_RESULT is posted (both go over the same ordered socket), so
            // the guest's first signal already finds its ioeventfd.
            let eventConnection = VMBusConstants.eventConnectionID(childRelID: relID)
            partition.registerEventConnection(eventConnection, event: guestSignal)
            let worker: ChannelWorker
            do throws(SystemError) {
                worker = try ChannelWorker(channel: channel, session: session) { [self] reason in
                    channelFailed(relID, reason: reason)
                }
            } catch {
                partition.unregisterEventConnection(eventConnection)
                throw error
            }
            state.open[relID] = OpenChannel(worker: worker)
            partition.logger.info("partition \(partition.name): channel \(relID) (\(device.name)) open")
            return true
        } catch {
            partition.logger.warning("partition \(partition.name): cannot open \(device.name): \(error)")
            return false
        }
    }

    /// The relid of the primary channel of `relID`'s device (itself for a primary channel): the
    /// guest creates a device's buffers for its primary channel.
    private func primaryRelID(of relID: UInt32, _ state: State) -> UInt32 {
        guard let device = state.devices[relID], device.subChannelIndex != 0 else { return relID }
        return state.devices.first { $0.value.spec.instance == device.spec.instance && $0.value.subChannelIndex == 0 }?.key
            ?? relID
    }

    private func close(_ relID: UInt32, _ state: inout State) {
        guard let open = state.open.removeValue(forKey: relID) else { return }
        partition.unregisterEventConnection(VMBusConstants.eventConnectionID(childRelID: relID))
        open.worker.stop()
        partition.channelClosed(relID: relID)
    }
}
