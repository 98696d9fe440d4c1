import ControlProtocol
import DeviceModel
import DeviceRegistry
import Foundation
import GuestMemory
import HyperV
import LinuxSupport
@testable import ParentPartition
@testable import RootScheduler
import Synchronization
import Testing
import VMBusProtocol

/// The root's `ParentLink` and the parent's `ParentPartitionService` (through `RootConnection`)
/// over a real SOCK_SEQPACKET socket, with partitions that have no KVM behind them.
@Suite("Root ↔ parent over the control socket")
struct ParentLinkTests {
    @Test func anAttachedPartitionsMemoryIsTheSameRAMInTheParent() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", processors: 2, devices: ["heartbeat"])
        let rootMemory = try #require(alpha.memory)
        let marker: [UInt8] = Array("written by the root".utf8)
        try rootMemory.write(marker, at: GuestPhysicalAddress(0x1000))

        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { parent.child(alpha.id) != nil }, "the parent got alpha")
        let child = try #require(parent.child(alpha.id))
        #expect(child.name == "alpha" && child.processorCount == 2 && child.devices.map(\.kind) == ["heartbeat"])
        #expect(child.memory.size == 16 << 20)
        #expect(try child.memory.read(at: GuestPhysicalAddress(0x1000), count: marker.count) == marker)
        try child.memory.write(Array("and by the parent".utf8), at: GuestPhysicalAddress(0xFF_F000))
        #expect(try rootMemory.read(at: GuestPhysicalAddress(0xFF_F000), count: 17) == Array("and by the parent".utf8))
        let time = try #require(alpha.hypervisor).time
        #expect(child.clock == ReferenceClock(tscFrequencyHz: time.tscFrequencyHz, scale: time.scale,
                                              guestTSCOffset: time.guestTSCOffset, referenceOffset: time.referenceOffset))
        #expect(root.link.isConnected)

        // Created while the parent is connected (RootScheduler.create hands it over at once);
        // a Linux guest always gets COM1.
        let beta = try root.table.add("beta", linux: true)
        root.link.attach(beta)
        #expect(eventually { parent.child(beta.id) != nil })
        #expect(parent.child(beta.id)?.devices.map(\.kind) == ["com1"])
    }

    @Test func synicPageChangesReachTheParent() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        root.observe(alpha)
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { parent.child(alpha.id) != nil })
        #expect(parent.child(alpha.id)?.processorPages(0)?.eventFlagsPage == nil)
        try alpha.enableSynIC(vp: 0, sint: 2)
        #expect(eventually { parent.child(alpha.id)?.processorPages(0)?.eventFlagsPage == TestPartition.eventFlagsPage })
        #expect(parent.child(alpha.id)?.processorPages(0)?.messagePage == TestPartition.messagePage)
    }

    /// The probe guest's echo: HvPostMessage on a connection the parent registered reaches the
    /// parent, and what the parent posts back lands in the guest's SynIC message slot.
    @Test func aGuestsMessageReachesTheParentAndTheAnswerItsSynIC() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let sint = 3
        try alpha.enableSynIC(vp: 0, sint: sint)
        #expect(try alpha.postMessage(connection: DiagnosticEcho.messageConnection, type: DiagnosticEcho.messageType,
                                      payload: [UInt8(sint)]) == .invalidConnectionID, "no parent yet")

        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually {
            alpha.messageConnections.contains(DiagnosticEcho.messageConnection)
                && alpha.messageConnections.contains(VMBusConstants.messageConnectionID)
        }, "the echo's and the VMBus server's connections")

        let payload = [UInt8(sint)] + Array("echo me".utf8)
        #expect(try alpha.postMessage(connection: DiagnosticEcho.messageConnection, type: DiagnosticEcho.messageType,
                                      payload: payload) == .success)
        var answer: (type: UInt32, payload: [UInt8])?
        #expect(eventually { answer = try? alpha.takeMessage(sint: sint); return answer != nil }, "the echo arrived")
        #expect(answer?.type == DiagnosticEcho.messageType.rawValue)
        #expect(answer?.payload == payload)
        #expect(alpha.environment.raised.contains("0/\(sint)"), "delivery raised the SINT")
    }

    /// Registering an event connection hands the parent's eventfd to the root: the guest's
    /// HvSignalEvent signals it and the parent answers by setting an event flag and ringing the
    /// doorbell eventfd the root handed it.
    @Test func anEventConnectionHandsOverAnEventFDAndADoorbellComesBack() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        try alpha.enableSynIC(vp: 0, sint: DiagnosticEcho.eventSINT)
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { alpha.eventConnections[DiagnosticEcho.eventConnection] != nil })
        #expect(eventually { alpha.doorbellIfRequested(vp: 0, sint: DiagnosticEcho.eventSINT) != nil })
        let doorbell = try #require(alpha.doorbellIfRequested(vp: 0, sint: DiagnosticEcho.eventSINT))
        // The parent may not have received the doorbell yet: a ring before it arrives is replayed.
        #expect(try alpha.signalEvent(connection: DiagnosticEcho.eventConnection) == .success)
        #expect(try doorbell.wait(timeoutMilliseconds: 10_000) != nil, "the parent rang the doorbell")
        let memory = try #require(alpha.memory)
        let flags = GuestPhysicalAddress(TestPartition.eventFlagsPage + UInt64(SynIC.eventFlagsOffset(sint: DiagnosticEcho.eventSINT))
                                         + UInt64(DiagnosticEcho.eventFlag / 64) * 8)
        let word = try memory.load(UInt64.self, at: flags)
        #expect(word & (1 << UInt64(DiagnosticEcho.eventFlag % 64)) != 0, "the echo flag is set")
    }

    /// COM1 lives in the parent: the root forwards the guest's port accesses to it.
    @Test func portWritesAndReadsReachTheParentsUART() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["com1"])
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { alpha.forwarder(for: 0x3F8) != nil })
        #expect(alpha.interceptedRanges == [0x3F8..<0x400])
        let line = try #require(alpha.interruptLineIfRequested(pin: 4), "COM1's IRQ 4 was requested before its ports")
        let uart = try #require(alpha.forwarder(for: 0x3F8))

        for byte in Array("hello\n".utf8) { uart.write(vp: 0, port: 0x3F8, size: 1, value: UInt32(byte)) }
        #expect(eventually { alpha.console.snapshot.contains("hello") }, "the UART's output became a console line")

        uart.write(vp: 0, port: 0x3FF, size: 1, value: 0xA5)
        #expect(uart.read(vp: 0, port: 0x3FF, size: 1) == 0xA5, "the scratch register answers from the parent")
        #expect(uart.read(vp: 0, port: 0x3FD, size: 1) & 0x60 == 0x60, "LSR: transmitter empty")

        // OUT2 connects the UART's interrupt to the line; enabling THRE interrupts raises one.
        uart.write(vp: 0, port: 0x3FC, size: 1, value: 0x08)
        uart.write(vp: 0, port: 0x3F9, size: 1, value: 0x02)
        #expect(try line.wait(timeoutMilliseconds: 10_000) != nil, "the parent raised IRQ 4 through the root's eventfd")
    }

    /// String I/O (REP INS/OUTS) travels as one message per exit, both ways.
    @Test func stringPortIOReachesTheParentAsOneMessage() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["com1"])
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { alpha.forwarder(for: 0x3F8) != nil })
        let uart = try #require(alpha.forwarder(for: 0x3F8))
        uart.writeString(vp: 0, port: 0x3F8, size: 1, bytes: Array("string\n".utf8))
        #expect(eventually { alpha.console.snapshot.contains("string") }, "REP OUTSB reached the UART byte by byte")
        uart.write(vp: 0, port: 0x3FF, size: 1, value: 0x5A)
        #expect(uart.readString(vp: 0, port: 0x3FF, size: 1, count: 3) == [0x5A, 0x5A, 0x5A], "REP INSB read the scratch register")
    }

    /// The parent says a partition is ready (`partitionReady`) after its devices' port
    /// registrations, in the same lane: once the root's wait returns, COM1 goes to the parent.
    @Test func aPartitionIsReadyOnlyOnceItsDevicesPortsAreRegistered() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let beta = try root.table.add("beta", linux: true)
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { root.link.isConnected })
        #expect(try root.link.waitUntilReady(partitionID: beta.id, timeoutNanoseconds: 10_000_000_000))
        #expect(beta.forwarder(for: 0x3F8) != nil, "COM1's ports were registered first")
    }

    /// The wait for a partition's devices ends when the parent says it is ready, at its deadline,
    /// or when the parent goes away; a parent's word about a partition it was not handed is
    /// ignored, so the set of ready partitions stays as small as the handed-over one.
    @Test func waitingForAPartitionsDevicesEndsWithReadinessTheDeadlineOrTheParent() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        #expect(throws: ParentLinkError.notConnected) {
            try root.link.waitUntilReady(partitionID: alpha.id, timeoutNanoseconds: 1_000_000_000)
        }
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        // The root welcomes a parent a moment before it takes it as its connection.
        #expect(eventually { root.link.isConnected })
        #expect(throws: ParentLinkError.devicesNotSetUp(seconds: 0)) {
            try root.link.waitUntilReady(partitionID: alpha.id, timeoutNanoseconds: 300_000_000)
        }
        let asked = Locked(0)
        let started = MonotonicClock.nanoseconds()
        #expect(try root.link.waitUntilReady(partitionID: alpha.id, timeoutNanoseconds: 600_000_000_000) {
            asked.set(asked.get() + 1)
            return asked.get() < 3
        } == false, "a partition no longer wanted (stopped meanwhile) ends the wait")
        #expect(MonotonicClock.nanoseconds() - started < 60_000_000_000)
        try parent.channel.send(.partitionReady(partitionID: 999))
        try parent.channel.send(.partitionReady(partitionID: alpha.id))
        #expect(try root.link.waitUntilReady(partitionID: alpha.id, timeoutNanoseconds: 10_000_000_000))
        #expect(root.link.connection?.ready.read { $0 } == [alpha.id])

        let beta = try root.table.add("beta")
        root.link.attach(beta)
        let outcome = Locked<ParentLinkError?>(nil)
        let (link, id) = (root.link, beta.id)
        let waiter = try OSThread.spawn(name: "start") {
            do throws(ParentLinkError) {
                _ = try link.waitUntilReady(partitionID: id, timeoutNanoseconds: 600_000_000_000)
            } catch {
                outcome.set(error)
            }
        }
        parent.close()
        #expect(eventually { outcome.get() != nil }, "the wait ended long before its deadline")
        #expect(outcome.get() == .notConnected)
        waiter.join()
    }

    @Test func aPortReadTheParentDoesNotAnswerReadsAsAFloatingBus() throws {
        let root = try RootEnd(portReadTimeout: 50_000_000)
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        try parent.channel.send(.registerPorts(partitionID: alpha.id, base: 0x2F8, count: 8))
        #expect(eventually { alpha.forwarder(for: 0x2F8) != nil })
        let port = try #require(alpha.forwarder(for: 0x2F8))

        #expect(port.read(vp: 0, port: 0x2FD, size: 1) == ParentPortForwarder.floating)
        let request = try parent.rootMessage { message, _ -> UInt32? in
            if case .portRead(let request, alpha.id, 0, 0x2FD, 1) = message { return request }
            return nil
        }
        let asked = try #require(request, "the parent was asked")
        #expect(port.connection.pendingReads.read { $0.isEmpty }, "the timed-out read was forgotten")
        // A late answer finds nothing waiting.
        try parent.channel.send(.portReadResult(requestID: asked, value: 0x42))
        try parent.channel.send(.requestDoorbell(requestID: 77, partitionID: 999, vp: 0, sint: 2))
        #expect(try parent.rootMessage { message, _ in
            if case .requestFailed(77, _) = message { return true }
            return nil
        } == true, "the root carried on")
        #expect(port.connection.pendingReads.read { $0.isEmpty })
    }

    @Test func aPortReadWhoseParentGoesAwayReadsAsAFloatingBus() throws {
        let root = try RootEnd(portReadTimeout: 600_000_000_000)
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        try parent.channel.send(.registerPorts(partitionID: alpha.id, base: 0x2F8, count: 8))
        #expect(eventually { alpha.forwarder(for: 0x2F8) != nil })
        let port = try #require(alpha.forwarder(for: 0x2F8))
        let value = Locked<UInt32?>(nil)
        let reader = try OSThread.spawn(name: "vp0") { value.set(port.read(vp: 0, port: 0x2F8, size: 1)) }
        #expect(try parent.rootMessage { message, _ in
            if case .portRead = message { return true }
            return nil
        } == true)
        parent.close()
        #expect(eventually { value.get() != nil }, "the waiting processor was released long before the timeout")
        #expect(value.get() == ParentPortForwarder.floating)
        reader.join()
        #expect(port.read(vp: 0, port: 0x2F8, size: 1) == ParentPortForwarder.floating, "a closed link is not asked")
    }

    /// A parent that restarts: its registrations go with it (guests see INVALID_CONNECTION_ID,
    /// ports read 0xFF), and the next parent gets every live partition again.
    @Test func aParentRestartForgetsItsRegistrationsAndGetsThePartitionsAgain() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["com1"])
        let stopped = try root.table.add("stopped")
        stopped.stop()
        try alpha.enableSynIC(vp: 0, sint: 3)

        let first = try ParentEnd(socketPath: root.socketPath)
        #expect(eventually { alpha.messageConnections.contains(DiagnosticEcho.messageConnection)
                && alpha.eventConnections[DiagnosticEcho.eventConnection] != nil && alpha.forwarder(for: 0x3F8) != nil })
        #expect(first.child(stopped.id) == nil, "a stopped partition is not handed over")
        first.stop()

        #expect(eventually { !root.link.isConnected })
        #expect(eventually { alpha.messageConnections.isEmpty && alpha.interceptedRanges.isEmpty }, "the root forgot them")
        #expect(alpha.eventConnections.isEmpty)
        #expect(alpha.hypervisor?.connections.eventConnections.isEmpty == true)
        #expect(alpha.interceptedRanges.isEmpty)
        #expect(try alpha.postMessage(connection: DiagnosticEcho.messageConnection, type: DiagnosticEcho.messageType,
                                      payload: [3]) == .invalidConnectionID)

        let second = try ParentEnd(socketPath: root.socketPath)
        defer { second.stop() }
        #expect(eventually { second.child(alpha.id) != nil }, "the new parent got alpha again")
        #expect(eventually { alpha.messageConnections.contains(DiagnosticEcho.messageConnection) && alpha.forwarder(for: 0x3F8) != nil })
        #expect(try alpha.postMessage(connection: DiagnosticEcho.messageConnection, type: DiagnosticEcho.messageType,
                                      payload: [3, 9]) == .success)
        var answer: (type: UInt32, payload: [UInt8])?
        #expect(eventually { answer = try? alpha.takeMessage(sint: 3); return answer != nil })
        #expect(answer?.payload == [3, 9])
    }

    @Test func aDetachedPartitionIsReleasedByTheParent() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { parent.child(alpha.id) != nil })
        alpha.stop()
        root.link.detach(partitionID: alpha.id)
        #expect(eventually { parent.child(alpha.id) == nil })
    }

    @Test func partitionFactsFromTheParentReachThePartition() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        try parent.channel.send(.partitionStatus(partitionID: alpha.id, facts: ["vmbus.version": "5.3"]))
        try parent.channel.send(.partitionStatus(partitionID: 999, facts: ["ignored": "yes"]))
        #expect(eventually { alpha.facts == ["vmbus.version": "5.3"] })
    }
}

/// A value shared with another thread.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func get() -> Value { mutex.withLock { $0 } }
    func set(_ value: Value) { mutex.withLock { $0 = value } }
}

extension ParentLinkTests {
    /// A device added to a running partition is built and offered by the parent; removed, it is
    /// withdrawn (a VMBus guest sees a hot-add and a hot-remove).
    @Test func devicesComeAndGoWhileThePartitionRuns() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["heartbeat"])
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { parent.child(alpha.id) != nil })
        let child = try #require(parent.child(alpha.id))
        let bench = try DeviceRegistry.catalog.resolve(adding: "bench", to: alpha.devices, partition: "alpha")
        #expect(bench.instance != alpha.devices[0].instance)
        root.link.deviceAdded(partitionID: alpha.id, bench, resources: [])
        #expect(eventually { child.built.withLock { $0[bench.instance] } != nil }, "the parent built the bench device")
        root.link.deviceRemoved(partitionID: alpha.id, instance: bench.instance)
        #expect(eventually { child.built.withLock { $0[bench.instance] } == nil }, "the parent withdrew it")
        #expect(child.built.withLock { $0[alpha.devices[0].instance] } != nil, "the heartbeat stays")
    }
}

extension ParentLinkTests {
    /// A parent that connects gets the virtual switches before the partitions, so the NICs it
    /// builds with them find theirs; a real parent builds a NIC on a switch the root handed it.
    @Test func switchesComeBeforeThePartitionsWhoseNICsUseThem() throws {
        let root = try RootEnd()
        defer { root.stop() }
        root.table.switches.withLock {
            $0.append(ManagedSwitch(spec: SwitchSpec(name: "lan", kind: .private, mtu: 1500, hostInterface: ""), hostSide: nil))
        }
        let nic = DeviceConfiguration(kind: "nic", settings: ["switch": .string("lan")])
        let alpha = try root.table.add("alpha", devices: [nic])
        let scripted = try ScriptedEnd.parent(connectingTo: root.socketPath)
        guard case .message(let first, _) = try scripted.rootMessage() else {
            Issue.record("closed")
            return
        }
        #expect(first == .switchAttached(SwitchSpec(name: "lan", kind: .private, mtu: 1500, hostInterface: "")))
        let attached = try scripted.rootMessage { message, _ in
            if case .partitionAttached(let attachment) = message { attachment.partitionID } else { nil }
        }
        #expect(attached == alpha.id)
        scripted.channel.socket.shutdown()

        #expect(eventually { !root.link.isConnected })
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        #expect(eventually { parent.child(alpha.id) != nil })
        let child = try #require(parent.child(alpha.id))
        #expect(eventually { child.built.withLock { $0[alpha.devices[0].instance] } != nil }, "the NIC was built on lan")
        #expect(parent.service.switches.directory.lookup("lan") != nil)
    }
}
