import ControlProtocol
import DeviceModel
import Foundation
import Glibc
import GuestMemory
import HyperV
import ICProtocol
import ICVSC
import LinuxSupport
@testable import ParentPartition
@testable import RootScheduler
import Testing
import VMBusClient
import VMBusProtocol

/// A parent that dies and one that takes over, with the guest's channels open throughout
/// (Docs/architecture.md, "A parent that restarts"): the root keeps the parent's committed state
/// and the guest messages it never acknowledged, and the next parent carries on from them.
@Suite("A parent restart keeps every channel", .serialized)
struct ParentRestartTests {
    /// The finding: a restarted parent's VMBus server dropped every message before
    /// INITIATE_CONTACT, which a guest that already negotiated never sends again, so heartbeat,
    /// shutdown and time sync stayed dead and a shutdown request did nothing.
    @Test func aRestartedParentCarriesOnTheChannelsTheGuestHasOpen() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["heartbeat", "shutdown"])
        root.observe(alpha)
        let first = try ParentEnd(socketPath: root.socketPath)
        let guest = try SeamGuest(alpha)
        try guest.connect()
        var heartbeat = IntegrationServiceVSC(service: .heartbeat, channel: try guest.open(ICService.heartbeat.classID))
        var shutdown = IntegrationServiceVSC(service: .shutdown, channel: try guest.open(ICService.shutdown.classID))
        #expect(eventually(within: 20) { _ = heartbeat.poll(); _ = shutdown.poll(); return (heartbeat.lastHeartbeat ?? 0) >= 2 },
                "the first parent negotiated and sends heartbeats")
        #expect(shutdown.negotiated != nil)

        first.stop()  // as if killed: it commits nothing more, and its workers are gone
        #expect(eventually { !root.link.isConnected })
        _ = heartbeat.poll()
        // The guest's service carries on over the same ring; a fresh view of it sees what comes
        // from the next parent only.
        var resumed = IntegrationServiceVSC(service: .heartbeat, channel: heartbeat.channel)
        let second = try ParentEnd(socketPath: root.socketPath)
        defer { second.stop() }
        #expect(eventually(within: 20) { _ = resumed.poll(); return resumed.negotiated != nil && resumed.lastHeartbeat != nil },
                "the next parent negotiated again on the open channel and its heartbeats began")
        let firstBeat = resumed.lastHeartbeat ?? 0
        #expect(eventually(within: 20) { _ = resumed.poll(); return (resumed.lastHeartbeat ?? 0) > firstBeat }, "and they go on")
        #expect(alpha.facts["vmbus.restored"] == "2 resumed, 0 offered again")

        try root.link.requestShutdown(partitionID: alpha.id)
        #expect(eventually(within: 20) { shutdown.poll() == .shutdown }, "hv partition shutdown reaches the guest")
        // The bus itself carries on too: the guest can still open and close channels' GPADLs.
        #expect(guest.client.version != nil)
    }

    /// A guest message the parent took but never acknowledged (it died first) goes to the next
    /// parent, with its number, once that one registers the connection; an acknowledged one
    /// does not.
    @Test func aGuestMessageTheParentNeverHandledGoesToTheNextParent() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let first = try ScriptedEnd.parent(connectingTo: root.socketPath)
        try first.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 1))
        #expect(eventually { alpha.messageConnections.contains(ConnectionID(1)) })
        #expect(try alpha.postMessage(connection: ConnectionID(1), type: .vmbus, payload: [1, 2, 3]) == .success)
        let taken = try first.rootMessage { message, _ -> SequencedGuestMessage? in
            if case .sequencedGuestMessage(let guest) = message { return guest }
            return nil
        }
        let message = try #require(taken)
        #expect(message.payload == [1, 2, 3] && message.partitionID == alpha.id && message.connectionID == 1)
        first.close()
        #expect(eventually { !root.link.isConnected })
        // The link reads as disconnected a moment before it forgets the parent's connections.
        #expect(eventually { alpha.messageConnections.isEmpty })
        #expect(try alpha.postMessage(connection: ConnectionID(1), type: .vmbus, payload: [4]) == .invalidConnectionID,
                "no parent: nothing is taken meanwhile")

        let second = try ScriptedEnd.parent(connectingTo: root.socketPath)
        try second.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 1))
        let again = try second.rootMessage { message, _ -> SequencedGuestMessage? in
            if case .sequencedGuestMessage(let guest) = message { return guest }
            return nil
        }
        #expect(again == message, "the same message, the same number")
        try second.channel.send(.completed(partitionID: alpha.id, jobs: 1, sequence: message.sequence))
        #expect(try second.rootAnswers(probe: 1))
        second.close()
        #expect(eventually { !root.link.isConnected })

        let third = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { third.close() }
        try third.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 1))
        try third.channel.send(.requestDoorbell(requestID: 9, partitionID: 0xDEAD, vp: 0, sint: 2))
        let replayed = try third.rootMessage { message, _ -> Bool? in
            if case .sequencedGuestMessage = message { return true }
            if case .requestFailed(9, _) = message { return false }
            return nil
        }
        #expect(replayed == false, "an acknowledged message is not handed over again")
    }

    /// A commit counts whole or not at all: a parent that dies between the parts of one leaves
    /// the saved state and the guest's SynIC as they were; a whole one is applied (records
    /// stored, messages posted), and the next parent gets the saved state before the partition.
    @Test func aCommitIsAppliedWholeOrNotAtAll() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        try alpha.enableSynIC(vp: 0, sint: 2)
        let post = { (byte: UInt8) in SynICPost(vp: 0, sint: 2, messageType: 1, payload: [byte]) }

        let first = try ScriptedEnd.parent(connectingTo: root.socketPath)
        try first.channel.send(.commitState(StateCommit(partitionID: alpha.id, sequence: 0, isFinal: false,
                                                        records: [StateRecord(key: 1, bytes: [1])], posts: [post(0xAA)])))
        #expect(try first.rootAnswers(probe: 1))
        first.close()
        #expect(eventually { !root.link.isConnected })
        #expect(try alpha.takeMessage(sint: 2) == nil, "half a commit posts nothing")

        let second = try ScriptedEnd.parent(connectingTo: root.socketPath)
        let firstForAlpha = try second.rootMessage { message, _ -> RootMessage? in
            switch message {
            case .savedState(alpha.id, _), .partitionAttached: return message
            default: return nil
            }
        }
        if case .partitionAttached? = firstForAlpha {} else { Issue.record("half a commit saved state: \(String(describing: firstForAlpha))") }
        try second.channel.send(.commitState(StateCommit(partitionID: alpha.id, sequence: 0, isFinal: false,
                                                         records: [StateRecord(key: 1, bytes: [1])], posts: [post(0xBB)])))
        try second.channel.send(.commitState(StateCommit(partitionID: alpha.id, sequence: 0, isFinal: true,
                                                         records: [StateRecord(key: 2, bytes: [2, 2])], posts: [post(0xCC)])))
        var taken: [[UInt8]] = []
        #expect(eventually {
            if let message = try? alpha.takeMessage(sint: 2) {
                taken.append(message.payload)
                _ = alpha.hypervisor?.writeMSR(vp: 0, index: SyntheticMSR.endOfMessage.rawValue, value: 0)
            }
            return taken.count == 2
        })
        #expect(taken == [[0xBB], [0xCC]], "both parts' messages, in order")
        try second.channel.send(.commitState(StateCommit(partitionID: alpha.id, sequence: 0, isFinal: true,
                                                         records: [StateRecord(key: 1, bytes: nil)], posts: [])))
        #expect(try second.rootAnswers(probe: 2))
        second.close()
        #expect(eventually { !root.link.isConnected })

        let third = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { third.close() }
        var saved: [StateRecord] = []
        let attached = try third.rootMessage { message, _ -> Bool? in
            if case .savedState(alpha.id, let records) = message { saved += records }
            if case .partitionAttached(let attachment) = message, attachment.partitionID == alpha.id { return true }
            return nil
        }
        #expect(attached == true)
        #expect(saved == [StateRecord(key: 2, bytes: [2, 2])], "record 1 was deleted, record 2 kept")
    }

    /// A guest that signals a channel while no parent has its event connection registered
    /// (between a parent's death and its successor's registration) loses that signal; and a
    /// guest whose ring is not empty does not signal again. So the root signals an event
    /// connection once when it registers it: the successor's worker looks at its ring after the
    /// registration, not only before (a soak child's bench channel stalled for good without it).
    @Test func aRegisteredEventConnectionIsSignalledOnceSoNoSignalLostMeanwhileStrandsIt() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        #expect(try alpha.signalEvent(connection: ConnectionID(0x2001)) == .invalidConnectionID, "lost: nothing registered")
        let event = try EventFD()
        try parent.channel.send(.registerEventConnection(partitionID: alpha.id, connectionID: 0x2001),
                                descriptors: [event.rawValue])
        #expect(try event.wait(timeoutMilliseconds: 10_000) == 1, "signalled once on registration")
        #expect(try alpha.signalEvent(connection: ConnectionID(0x2001)) == .success)
        #expect(try event.wait(timeoutMilliseconds: 10_000) == 1, "and by the guest from then on")
    }

    /// COM1 keeps what the guest programmed across a restart: the next parent's UART reads back
    /// the guest's registers and raises the transmitter-empty interrupt a driver waits for (a
    /// fresh UART would leave Linux's 8250 driver with interrupts off, its tty output stalled).
    @Test func com1KeepsWhatTheGuestProgrammedAcrossARestart() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["com1"])
        let first = try ParentEnd(socketPath: root.socketPath)
        #expect(eventually { alpha.forwarder(for: 0x3F8) != nil })
        let uart = try #require(alpha.forwarder(for: 0x3F8))
        uart.write(vp: 0, port: 0x3FB, size: 1, value: 0x03)  // LCR: 8N1
        uart.write(vp: 0, port: 0x3FC, size: 1, value: 0x0B)  // MCR: OUT2, RTS, DTR
        uart.write(vp: 0, port: 0x3F9, size: 1, value: 0x02)  // IER: THRE
        uart.write(vp: 0, port: 0x3FF, size: 1, value: 0x5A)  // scratch, last
        #expect(uart.read(vp: 0, port: 0x3FF, size: 1) == 0x5A, "the writes went in, in order")
        let key = EmulatedDeviceService.key(for: [0x3F8..<0x400])
        // Each write's commit follows the one before it; the last one's (the scratch value) is in
        // once the root's record holds 0x5A. A parent killed before a commit arrives loses that
        // change, by design; this test is about what was committed.
        #expect(eventually {
            root.link.state(of: alpha.id).savedRecords.first { $0.key == key }?.bytes?.contains(0x5A) == true
        }, "committed")
        let line = try #require(alpha.interruptLineIfRequested(pin: 4))
        first.stop()
        #expect(eventually { !root.link.isConnected })
        // The root forgets the first parent's registrations after it marks the link down.
        #expect(eventually { alpha.forwarder(for: 0x3F8) == nil })
        _ = line.consume()

        let second = try ParentEnd(socketPath: root.socketPath)
        defer { second.stop() }
        #expect(eventually { alpha.forwarder(for: 0x3F8) != nil })
        #expect(try line.wait(timeoutMilliseconds: 10_000) != nil, "the THRE interrupt its driver waits for")
        let again = try #require(alpha.forwarder(for: 0x3F8))
        #expect(again.read(vp: 0, port: 0x3FF, size: 1) == 0x5A)
        #expect(again.read(vp: 0, port: 0x3F9, size: 1) == 0x02)
        #expect(again.read(vp: 0, port: 0x3FB, size: 1) == 0x03)
        #expect(again.read(vp: 0, port: 0x3FC, size: 1) == 0x0B)
    }

    /// The finding: guest RAM was handed over writable and unsealed, and a parent that shrank
    /// it made the root take SIGBUS on its next write to that child's memory.
    @Test func guestRAMIsHandedOverSealedAgainstResizing() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        let received = try parent.rootMessage { message, descriptors -> OwnedDescriptor? in
            if case .partitionAttached = message { return descriptors.first }
            return nil
        }
        let memory = try #require(received)
        let seals = try MemoryFile.seals(of: memory)
        #expect(seals & MemoryFile.Seals.shrink != 0 && seals & MemoryFile.Seals.grow != 0 && seals & MemoryFile.Seals.seal != 0)
        #expect(ftruncate(memory.rawValue, 4096) == -1 && errno == EPERM, "the parent cannot shrink it")
        #expect(ftruncate(memory.rawValue, 64 << 20) == -1 && errno == EPERM, "nor grow it")
        #expect(MemoryFile.Seals.seal & fcntl(memory.rawValue, 1024 + 10) != 0)
        // The root's mapping is whole: its last page is still there to write.
        let rootMemory = try #require(alpha.memory)
        try rootMemory.write([0x5A], at: GuestPhysicalAddress(UInt64(rootMemory.size - 1)))
    }
}

extension ParentRestartTests {
    /// A device removed from a running partition is rescinded with its channel still served: a
    /// guest driver that tears down over the rescinded channel (Linux's netvsc waits for every
    /// send to complete first) is still answered, here by the heartbeat going on; the channel
    /// stops once the guest releases it (Docs/hyperv-interface.md §6.6). The device added again
    /// meanwhile (the same instance) is offered only then: offered at once, Linux would drop the
    /// offer as a duplicate of the channel it holds, and the device would never appear.
    /// A NIC whose primary channel the guest broke is closed and rescinded; once the guest lets
    /// it go, nothing offers the NIC again, so its switch port goes too (before, it stayed on the
    /// switch, flooded and holding the NIC's address, after the partition was gone).
    @Test func aNICWhoseChannelTheGuestBrokeLeavesTheSwitchOnceReleased() throws {
        let root = try RootEnd()
        defer { root.stop() }
        root.table.switches.withLock {
            $0.append(ManagedSwitch(spec: SwitchSpec(name: "lan", kind: .private, mtu: 1500, hostInterface: ""), hostSide: nil))
        }
        let alpha = try root.table.add("alpha", devices: [DeviceConfiguration(kind: "nic", settings: ["switch": .string("lan")])])
        root.observe(alpha)
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        let guest = try SeamGuest(alpha)
        try guest.connect()
        let controlPage = guest.nextPage  // the guest→host ring's control page (`SeamGuest.open`)
        var channel = try guest.open(.network)
        let relID = channel.relID
        func removed() -> Bool { alpha.facts.contains { $0.key.hasSuffix(".link") && $0.value == "removed" } }
        // A write index past the ring's data: the worker gives up on the channel.
        let memory = try #require(alpha.memory)
        try memory.store(UInt32(0xFFFF_FFF0), at: GuestPhysicalAddress(controlPage * 4096))
        channel.signalHost()
        try guest.run({ _ throws(ClientError) in [] }, within: 20) { $0 == .rescinded(channel: relID) }
        #expect(!removed(), "kept until the guest lets the channel go")
        try guest.release(relID)
        #expect(eventually(within: 20) { removed() }, "the NIC's port left the switch")
    }

    @Test func aRemovedDevicesChannelIsServedUntilTheGuestLetsItGoAndOnlyThenOfferedAgain() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["heartbeat", "shutdown"])
        root.observe(alpha)
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        let guest = try SeamGuest(alpha)
        try guest.connect()
        var heartbeat = IntegrationServiceVSC(service: .heartbeat, channel: try guest.open(ICService.heartbeat.classID))
        #expect(eventually(within: 20) { _ = heartbeat.poll(); return (heartbeat.lastHeartbeat ?? 0) >= 1 })
        let relID = heartbeat.channel.relID
        let spec = try #require(alpha.devices.first { $0.kind == "heartbeat" })

        root.link.deviceRemoved(partitionID: alpha.id, instance: spec.instance)
        try guest.run({ _ throws(ClientError) in [] }, within: 20) { $0 == .rescinded(channel: relID) }
        let beatAtRescind = heartbeat.lastHeartbeat ?? 0
        #expect(eventually(within: 20) { _ = heartbeat.poll(); return (heartbeat.lastHeartbeat ?? 0) > beatAtRescind },
                "the rescinded channel is still served")

        root.link.deviceAdded(partitionID: alpha.id, spec, resources: [])
        func offered(_ event: ClientEvent) -> Bool {
            if case .offer(let offer) = event { offer.interfaceInstance == spec.instance } else { false }
        }
        #expect(throws: SeamGuest.GuestError.self, "no offer while the guest holds the old channel") {
            try guest.run({ _ throws(ClientError) in [] }, within: 2, until: offered)
        }
        try guest.release(relID)
        #expect(eventually(within: 20) { alpha.facts["heartbeat.state"] == "closed" }, "released, its session closed")
        try guest.run({ _ throws(ClientError) in [] }, within: 20, until: offered)
    }
}
