import ControlProtocol
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
/// Every change of the server's state is committed to the root together with the messages it
/// answers with and the guest message it handled (`StateCommit`), so a parent that dies leaves
/// the root a state that matches what the guest saw. A restarted parent restores it: channels
/// carry on over the same rings (their ring indices live in guest memory), with a session the
/// device resumes; a device that cannot carry on has its channel rescinded and offered again,
/// which the guest sees as a hot-remove and a hot-add (Docs/architecture.md, "A parent that
/// restarts").
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
        /// What was committed last, so each commit carries only what changed.
        var ledger = ServerStateLedger()
        /// Messages for the guest, posted with the next commit, in order.
        var posts: [SynICPost] = []
        /// Channels rescinded after a restart because their device could not carry on: offered
        /// again once the guest has released them (an offer with the GUIDs of a channel the guest
        /// still holds would be dropped as a duplicate, `drivers/hv/channel_mgmt.c:
        /// vmbus_process_offer`).
        var offerAgainOnRelease: [UInt32: Device] = [:]
        /// Removed devices, by instance, whose channels are still served while the guest tears
        /// down: detached once the last one closes.
        var detachOnClose: [GUID: any VirtualServiceProvider] = [:]
    }

    /// A synthetic device of the partition: what the guest is offered and who serves it. Each
    /// of its channels (the primary and any sub-channels) maps to it.
    struct Device {
        var spec: DeviceSpec
        var classID: GUID
        var provider: any VirtualServiceProvider
        var subChannelIndex: UInt16 = 0

        var name: String { spec.kind }

        var offer: ChannelOffer {
            ChannelOffer(interfaceType: classID, interfaceInstance: spec.instance, name: name, subChannelIndex: subChannelIndex)
        }
    }

    struct OpenChannel {
        var worker: ChannelWorker
    }

    var messageConnections: [UInt32] {
        [VMBusConstants.messageConnectionID.rawValue, VMBusConstants.initiateContactConnectionID.rawValue]
    }

    /// - Parameter saved: the partition's saved state (the server's records are picked out).
    init(partition: ChildPartition, devices offered: [Device], saved: [UInt64: [UInt8]] = [:]) {
        self.partition = partition
        let configuration = VMBusServer.Configuration(memorySize: UInt64(partition.memory.size),
                                                      processorCount: partition.processorCount)
        var restored: VMBusServer?
        let own = saved.filter { ServerState.owns($0.key) }
        if !own.isEmpty {
            do throws(ServerStateError) {
                restored = try VMBusServer(configuration: configuration, restoring: own)
            } catch {
                partition.logger.error("partition \(partition.name): cannot restore its VMBus state (\(error)); starting afresh")
                partition.report(["vmbus.restored": "no: \(error)"])
            }
        }
        partition.prepareDoorbells(sint: UInt8(VMBusConstants.messageSINT))
        var withdrawn: [UInt32] = []
        if let restored {
            // The GPADLs the guest created before the restart, for the resumed sessions' leases
            // and for the overlap check of buffers created from now on.
            for gpadl in restored.createdGPADLs {
                gpadls.publish(handle: gpadl.id, channel: gpadl.channel, byteOffset: gpadl.byteOffset,
                               byteCount: gpadl.byteCount, pageNumbers: gpadl.pageNumbers)
            }
            state = Mutex(State(server: restored, ledger: ServerStateLedger(matching: restored)))
            withdrawn = restore(offered)
        } else {
            state = Mutex(State(server: VMBusServer(configuration: configuration)))
            state.withLock { state in
                for device in offered { offer(device, &state) }
            }
        }
        commit(sequence: 0)
        enforceWithdrawalDeadline(withdrawn)
        // The root hands over what the guest posted and an earlier parent did not handle once
        // these are registered: after the restore, so it finds the restored state.
        for connection in messageConnections {
            partition.root.registerMessageConnection(partitionID: partition.id, connectionID: connection)
        }
    }

    // MARK: Restoring

    /// Carries on from a restored server: open channels resume with their device's session, or
    /// are rescinded to be offered again; channels of devices the partition no longer has are
    /// rescinded; devices with no channel yet are offered.
    /// - Returns: the channels now being withdrawn, for their deadline.
    private func restore(_ offered: [Device]) -> [UInt32] {
        state.withLock { state in
            var unmatched = offered
            var resumed = 0
            var reoffered = 0
            for channel in state.server.liveChannels {
                let offer = channel.offer
                // Rescinding a primary channel below changes its sub-channels' states.
                let current = state.server.state(of: channel.relID) ?? channel.state
                guard let primary = offered.first(where: {
                    $0.classID == offer.interfaceType && $0.spec.instance == offer.interfaceInstance
                }) else {
                    perform(state.server.rescind(channel: channel.relID), &state)
                    continue
                }
                var device = primary
                device.subChannelIndex = offer.subChannelIndex
                state.devices[channel.relID] = device
                if offer.subChannelIndex == 0 { unmatched.removeAll { $0.spec.instance == device.spec.instance } }
                switch current {
                case .open(let request):
                    if resume(request, device, &state) {
                        resumed += 1
                    } else {
                        partition.logger.info("partition \(partition.name): \(device.name) cannot carry on after the restart; offering it again")
                        let serving = startWithdrawal(request, device, &state)
                        perform(state.server.rescind(channel: channel.relID, untilGuestCloses: serving), &state)
                        if offer.subChannelIndex == 0 {
                            state.offerAgainOnRelease[channel.relID] = device
                            reoffered += 1
                        }
                    }
                case .withdrawing(let request):
                    // Being withdrawn when the last parent died: served again until the guest
                    // closes it, then offered again.
                    if !startWithdrawal(request, device, &state) {
                        perform(state.server.finishWithdrawal(channel: channel.relID), &state)
                    }
                    if offer.subChannelIndex == 0 { state.offerAgainOnRelease[channel.relID] = device }
                case .opening(let request):
                    let accepted = open(request, &state)
                    perform(state.server.completeOpen(channel: request.channel, accepted: accepted), &state)
                case .rescinded:
                    if offer.subChannelIndex == 0 { state.offerAgainOnRelease[channel.relID] = device }
                default:
                    break
                }
            }
            for device in unmatched { offer(device, &state) }
            partition.logger.info("partition \(partition.name): VMBus state restored; \(resumed) channel(s) resumed, \(reoffered) offered again")
            partition.report(["vmbus.restored": "\(resumed) resumed, \(reoffered) offered again"])
            return withdrawing(state)
        }
    }

    /// Starts serving an open channel again over its rings, with the session its device resumes.
    private func resume(_ request: OpenRequest, _ device: Device, _ state: inout State) -> Bool {
        serveAgain(request, device, &state) { device.provider.resumeSession($0) }
    }

    /// Serves a channel whose device cannot carry it on with the device's withdrawal session
    /// (`VirtualServiceProvider.withdrawalSession`), until the guest closes it or
    /// `withdrawalDeadlineNanoseconds` pass. Returns whether it is served.
    private func startWithdrawal(_ request: OpenRequest, _ device: Device, _ state: inout State) -> Bool {
        serveAgain(request, device, &state) { device.provider.withdrawalSession($0) }
    }

    /// Serves a channel the last parent left open with the session `make` gives for it.
    private func serveAgain(_ request: OpenRequest, _ device: Device, _ state: inout State,
                            _ make: (ChannelOpening) -> sending (any ChannelSession)?) -> Bool {
        let opening = ChannelOpening(relID: request.channel, subChannelIndex: device.subChannelIndex, targetVP: request.targetVP)
        guard let session = make(opening), start(request, device, session, &state) else { return false }
        // A signal the old parent owed the guest may have died with it: one spurious interrupt
        // makes the guest look at its rings (drivers/hv/vmbus_drv.c: vmbus_chan_sched reads them).
        partition.signalEvent(vp: request.targetVP, sint: UInt8(VMBusConstants.messageSINT), flag: request.channel)
        return true
    }

    /// How long a rescinded channel is served for a guest that does not close it.
    static let withdrawalDeadlineNanoseconds: UInt64 = 15_000_000_000

    /// Closes the withdrawn channels among `relIDs` that the guest has not closed by the deadline.
    private func enforceWithdrawalDeadline(_ relIDs: [UInt32]) {
        guard !relIDs.isEmpty else { return }
        let scheduled = partition.control.enqueue(afterNanoseconds: Self.withdrawalDeadlineNanoseconds) { [self] in
            let late = state.withLock { state -> [UInt32] in
                var late: [UInt32] = []
                for relID in relIDs {
                    let actions = state.server.finishWithdrawal(channel: relID)
                    if !actions.isEmpty { late.append(relID) }
                    perform(actions, &state)
                }
                return late
            }
            if !late.isEmpty {
                partition.logger.warning("partition \(partition.name): the guest did not close rescinded channel(s) \(late) in time; closed")
                commit(sequence: 0)
            }
        }
        if !scheduled {
            // No room to wait: close them now rather than serve them without a deadline.
            state.withLock { state in
                for relID in relIDs { perform(state.server.finishWithdrawal(channel: relID), &state) }
            }
            commit(sequence: 0)
        }
    }

    /// The channels being withdrawn (rescinded, still served).
    private func withdrawing(_ state: State) -> [UInt32] {
        state.server.liveChannels.compactMap { channel in
            if case .withdrawing = channel.state { return channel.relID }
            return nil
        }
    }

    // MARK: Devices coming and going

    /// Offers a device added while the partition runs (on the control thread): a guest that has
    /// asked for offers sees it at once, as a hot-added device.
    ///
    /// A device removed and added again before the guest has released the old one's channel
    /// (it may still be tearing down over it) is offered once it has: an offer with the GUIDs of
    /// a channel the guest still holds would be dropped as a duplicate
    /// (`drivers/hv/channel_mgmt.c: vmbus_process_offer`), and the device would never appear.
    func add(_ device: Device) {
        state.withLock { state in
            if let held = state.devices.first(where: { relID, other in
                other.subChannelIndex == 0 && other.classID == device.classID && other.spec.instance == device.spec.instance
                    && state.server.state(of: relID).map { $0 != .released } == true
            })?.key {
                // A device deferred earlier and not offered yet gives way to this one.
                if let superseded = state.offerAgainOnRelease.updateValue(device, forKey: held) {
                    Self.detachUnserved(superseded, besides: state.devices[held])
                }
                return
            }
            offer(device, &state)
        }
        commit(sequence: 0)
    }

    /// Detaches a device that was never offered, unless it is `served`'s own provider (after a
    /// restart, a channel offered again keeps the device that serves it now).
    private static func detachUnserved(_ device: Device, besides served: Device?) {
        guard let unserved = device.provider as? any DetachableProvider,
              (served?.provider as? any DetachableProvider) !== unserved else { return }
        unserved.detach()
    }

    private func offer(_ device: Device, _ state: inout State) {
        guard let (relID, actions) = state.server.addOffer(device.offer) else {
            partition.logger.error("partition \(partition.name): no relid left for \(device.name)")
            return
        }
        state.devices[relID] = device
        perform(actions, &state)
    }

    /// Withdraws the device `instance` (on the control thread): its channels are closed and
    /// rescinded, which the guest sees as a hot-removed device.
    /// - Returns: whether the partition had it.
    @discardableResult
    func remove(instance: GUID) -> Bool {
        let (removed, withdrawn) = state.withLock { state -> (Bool, [UInt32]) in
            let primaries = state.devices.filter { $0.value.spec.instance == instance && $0.value.subChannelIndex == 0 }
            for relID in primaries.keys.sorted() {
                // A device added again while this one was withdrawn, not offered yet, goes too.
                if let deferred = state.offerAgainOnRelease.removeValue(forKey: relID) {
                    Self.detachUnserved(deferred, besides: state.devices[relID])
                }
                perform(state.server.rescind(channel: relID, untilGuestCloses: true), &state)
                if state.server.state(of: relID) == .released { state.devices[relID] = nil }
            }
            // What it holds beyond its channels is released once they have all closed (at once
            // if none was open): its driver in the guest may still be tearing down over them.
            for device in primaries.values {
                state.detachOnClose[device.spec.instance] = device.provider
                detachIfClosed(instance: device.spec.instance, &state)
            }
            return (!primaries.isEmpty, withdrawing(state))
        }
        commit(sequence: 0)
        enforceWithdrawalDeadline(withdrawn)
        return removed
    }

    /// Detaches the removed device `instance` once none of its channels is served any more.
    private func detachIfClosed(instance: GUID, _ state: inout State) {
        guard let provider = state.detachOnClose[instance],
              !state.open.keys.contains(where: { state.devices[$0]?.spec.instance == instance }) else { return }
        state.detachOnClose[instance] = nil
        (provider as? any DetachableProvider)?.detach()
    }

    // MARK: Inputs

    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8], sequence: UInt64) {
        guard type == .vmbus else { return }
        state.withLock { state in
            let actions = state.server.handle(payload, connectionID: ConnectionID(connectionID), from: vp)
            perform(actions, &state)
        }
        commit(sequence: sequence)
    }

    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8]) {
        receive(vp: vp, connectionID: connectionID, type: type, payload: payload, sequence: 0)
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
            commit(sequence: 0)
        }
    }

    /// A primary channel's session asked for `count` sub-channels (on its worker thread): they
    /// are offered from the control thread, with the lowest sub-channel indices no offered
    /// sub-channel holds (a rescinded one the guest has not released yet holds none: the device
    /// granted indices 1…count, and Linux's netvsc ignores a sub-channel numbered beyond them).
    private func offerSubChannels(of primary: UInt32, count: Int) {
        partition.perform { [self] in
            state.withLock { state in
                guard let device = state.devices[primary], device.subChannelIndex == 0 else { return }
                let inUse = Set(state.server.offeredSubChannels(of: primary).compactMap { state.devices[$0]?.subChannelIndex })
                var index: UInt16 = 1
                for _ in 0..<min(count, Self.maximumSubChannels) {
                    while inUse.contains(index) { index += 1 }
                    var subChannel = device
                    subChannel.subChannelIndex = index
                    guard let (relID, actions) = state.server.addOffer(subChannel.offer) else {
                        partition.logger.error("partition \(partition.name): no relid left for a \(device.name) sub-channel")
                        return
                    }
                    state.devices[relID] = subChannel
                    perform(actions, &state)
                    index += 1
                }
            }
            commit(sequence: 0)
        }
    }

    /// The most sub-channels one channel may have.
    static let maximumSubChannels = 64

    /// Stops serving (the partition is detached, or the parent is going away): the workers stop
    /// and nothing is committed, so a parent that serves the partition next carries on from the
    /// last commit.
    func stop() {
        let providers = state.withLock { state -> [any VirtualServiceProvider] in
            state.detachOnClose = [:]  // every device is detached below, once
            // Every worker winds down at once (a storage channel drains its disk requests for
            // up to 30 s), so the partition's channels take the longest one's time, not the sum.
            for open in state.open.values { open.worker.requestStop() }
            for relID in state.open.keys.sorted() { close(relID, &state) }
            // Devices waiting to be offered again were never served: they go as well.
            for (relID, device) in state.offerAgainOnRelease { Self.detachUnserved(device, besides: state.devices[relID]) }
            state.offerAgainOnRelease = [:]
            return state.devices.values.filter { $0.subChannelIndex == 0 }.map(\.provider)
        }
        for provider in providers { (provider as? any DetachableProvider)?.detach() }
        for connection in messageConnections {
            partition.root.unregisterMessageConnection(partitionID: partition.id, connectionID: connection)
        }
    }

    // MARK: Committing

    /// Sends what changed since the last commit, with the messages to post, to the root as one
    /// commit (`sequence`: the guest message handled, 0 for none). Called on the control thread
    /// at the end of every job that changed the server, outside the lock.
    private func commit(sequence: UInt64) {
        let (records, posts) = state.withLock { state -> ([StateRecord], [SynICPost]) in
            let records = state.ledger.changes(in: state.server).map { StateRecord(key: $0.key, bytes: $0.bytes) }
            defer { state.posts.removeAll() }
            return (records, state.posts)
        }
        guard !records.isEmpty || !posts.isEmpty else { return }
        partition.root.commit(partitionID: partition.id, sequence: sequence, records: records, posts: posts)
    }

    // MARK: Actions

    private func perform(_ actions: [ServerAction], _ state: inout State) {
        // Channels closed together (an UNLOAD closes them all) wind down side by side, as in
        // `stop`: a storage channel drains its disk requests for up to 30 s, so each is asked to
        // stop before the first is waited for.
        for case .close(let relID) in actions { state.open[relID]?.worker.requestStop() }
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case .post(let vp, let sint, let message):
                state.posts.append(SynICPost(vp: vp, sint: sint, messageType: SynICMessageType.vmbus.rawValue,
                                             payload: message.bytes))
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
                // A released sub-channel, or a primary channel whose device was removed or whose
                // guest broke it: gone for good, unless its device is to be offered again (after
                // a restart).
                let released = state.devices.removeValue(forKey: relID)
                if let device = state.offerAgainOnRelease.removeValue(forKey: relID) {
                    if let (newRelID, actions) = state.server.addOffer(device.offer) {
                        state.devices[newRelID] = device
                        queue.append(contentsOf: actions)
                    } else {
                        partition.logger.error("partition \(partition.name): no relid left to offer \(device.name) again")
                        (device.provider as? any DetachableProvider)?.detach()
                    }
                } else if let released,
                          !state.devices.values.contains(where: { $0.spec.instance == released.spec.instance }),
                          !state.offerAgainOnRelease.values.contains(where: { $0.spec.instance == released.spec.instance }) {
                    // The device's last channel is gone (its primary, or a sub-channel the guest
                    // released after it) and nothing offers it again: what it holds beyond its
                    // channels (a NIC's switch port) goes too, or it would stay on the switch for
                    // good. A removal's own detach (`detachOnClose`) then finds it done.
                    (released.provider as? any DetachableProvider)?.detach()
                }
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

    /// Opens a channel the guest asked for: its device's new session over the rings.
    private func open(_ request: OpenRequest, _ state: inout State) -> Bool {
        guard let device = state.devices[request.channel] else { return false }
        let opening = ChannelOpening(relID: request.channel, subChannelIndex: device.subChannelIndex, targetVP: request.targetVP)
        guard let session = device.provider.openSession(opening) else { return false }
        return start(request, device, session, &state)
    }

    /// Maps the channel's rings, registers its event connection, starts its worker with `session`.
    private func start(_ request: OpenRequest, _ device: Device, _ session: sending any ChannelSession,
                       _ state: inout State) -> Bool {
        let relID = request.channel
        let guestSignal: EventFD
        let channel: VSPChannel
        do {
            let incoming = try GuestRingMemory(memory: partition.memory, pages: request.incomingRingPages)
            let outgoing = try GuestRingMemory(memory: partition.memory, pages: request.outgoingRingPages)
            guestSignal = try EventFD()
            channel = try VSPChannel(
                relID: relID, subChannelIndex: device.subChannelIndex, incoming: incoming, outgoing: outgoing,
                targetVP: request.targetVP, guestSignal: guestSignal,
                signalGuest: { [partition] vp in
                    partition.signalEvent(vp: vp, sint: UInt8(VMBusConstants.messageSINT), flag: relID)
                },
                subChannels: { [self] count in offerSubChannels(of: relID, count: count) },
                gpadls: gpadls.view(channel: primaryRelID(of: relID, state)))
        } catch {
            // Rings that do not hold up (a control page the guest filled with nonsense): the
            // session opened for them is closed here, since no worker will (a storage device
            // counts its open channels).
            session.close()
            partition.logger.warning("partition \(partition.name): cannot open \(device.name): \(error)")
            return false
        }
        do {
            partition.channelOpened(relID: relID, device: device.name, subChannelIndex: device.subChannelIndex,
                                    counters: channel.counters)
            // Registered before OPEN_RESULT is posted (both go over the partition's ordered lane),
            // so the guest's first signal already finds its ioeventfd.
            let eventConnection = VMBusConstants.eventConnectionID(childRelID: relID)
            partition.registerEventConnection(eventConnection, event: guestSignal)
            let worker: ChannelWorker
            do throws(SystemError) {
                worker = try ChannelWorker(channel: channel, session: session) { [self] reason in
                    channelFailed(relID, reason: reason)
                }
            } catch {
                // ChannelWorker closed the session; what was set up for it here is undone.
                partition.unregisterEventConnection(eventConnection)
                partition.channelClosed(relID: relID)
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
        if let instance = state.devices[relID]?.spec.instance { detachIfClosed(instance: instance, &state) }
    }
}
