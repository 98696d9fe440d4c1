import ControlProtocol
import DeviceModel
import DeviceRegistry
import HyperV
import Foundation
import LinuxSupport
@testable import ParentPartition
@testable import RootScheduler
import Synchronization
import Testing
import TestSupport

/// One control record as a misbehaving peer sends it.
struct HostileRecord: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// How many eventfds travel with it.
    var descriptors = 0
    /// Sent as one datagram of this many bytes instead (beyond the protocol's limit).
    var oversized: Int?

    var testDescription: String { name }

    func send(on end: ScriptedEnd) throws {
        if let oversized { return try end.sendOversized(oversized) }
        try end.sendRaw(bytes, descriptors: (0..<descriptors).map { _ in try EventFD().owned })
    }
}

/// A compromised or broken peer on the control socket: the root cuts off a parent that sends a
/// bad record and carries on; the parent drops a root that does and reconnects. Neither traps.
@Suite("Hostile control records")
struct HostileRecordTests {
    static func withVersion(_ version: UInt16, _ bytes: [UInt8]) -> [UInt8] {
        [UInt8(truncatingIfNeeded: version), UInt8(version >> 8)] + bytes.dropFirst(2)
    }

    static let fromParent: [HostileRecord] = {
        let register = ParentMessage.registerMessageConnection(partitionID: 1, connectionID: 0x0F00).bytes
        var facts = WireEncoder()
        facts.u16(ControlProtocol.version)
        facts.u16(8)  // partitionStatus
        facts.u32(1)
        facts.u32(1)
        facts.string(String(repeating: "k", count: 257))
        facts.string("v")
        return [
            HostileRecord(name: "unknown kind", bytes: withVersion(ControlProtocol.version, [0, 0, 0xFF, 0x7F, 0, 0, 0, 0])),
            HostileRecord(name: "unsupported version", bytes: withVersion(ControlProtocol.version + 1, register)),
            HostileRecord(name: "truncated", bytes: Array(register.dropLast())),
            HostileRecord(name: "trailing bytes", bytes: register + [0]),
            HostileRecord(name: "event connection without its eventfd",
                          bytes: ParentMessage.registerEventConnection(partitionID: 1, connectionID: 0x2001).bytes),
            HostileRecord(name: "a descriptor the message does not take", bytes: register, descriptors: 1),
            HostileRecord(name: "a fact key beyond its limit", bytes: facts.bytes),
            HostileRecord(name: "an empty record", bytes: []),
            HostileRecord(name: "a record beyond the size limit", bytes: [],
                          oversized: SequencedPacketSocket.maximumMessageSize + 1),
        ]
    }()

    @Test(arguments: fromParent)
    func aBadRecordCutsTheParentOffAndTheRootCarriesOn(_ record: HostileRecord) throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 0x0F00))
        #expect(try parent.rootAnswers(probe: 1))
        #expect(alpha.messageConnections == [ConnectionID(0x0F00)])

        try record.send(on: parent)
        #expect(parent.closes(), "the root cut the parent off")
        #expect(eventually { !root.link.isConnected })
        #expect(eventually { alpha.messageConnections.isEmpty }, "and forgot what it registered")

        let next = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { next.close() }
        let attached = try next.rootMessage { message, descriptors -> Int? in
            if case .partitionAttached(let attachment) = message, attachment.partitionID == alpha.id { return descriptors.count }
            return nil
        }
        #expect(attached == 1, "the next parent gets alpha and its memory")
    }

    /// Well-formed requests a parent has no business making are refused one by one; the parent
    /// stays connected.
    @Test func impossibleRequestsAreRefusedWithoutCuttingTheParentOff() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        let id = alpha.id
        try parent.channel.send(.registerPorts(partitionID: id, base: 0xFFF8, count: 8))
        try parent.channel.send(.registerPorts(partitionID: id, base: 0x3F8, count: 0))
        try parent.channel.send(.registerPorts(partitionID: id, base: 0xE0, count: 16))
        try parent.channel.send(.unregisterEventConnection(partitionID: id, connectionID: 0x2001))
        try parent.channel.send(.postMessage(partitionID: id, vp: 7, sint: 2, messageType: 1, payload: [1]))
        try parent.channel.send(.postMessage(partitionID: id, vp: 0, sint: 16, messageType: 1, payload: [1]))
        try parent.channel.send(.consoleOutput(partitionID: 0xDEAD, bytes: Array("lost\n".utf8)))
        try parent.channel.send(.portReadResult(requestID: 12345, value: 1))
        try parent.channel.send(.requestDoorbell(requestID: 10, partitionID: id, vp: 5, sint: 2))
        try parent.channel.send(.requestInterruptLine(requestID: 11, partitionID: id, pin: 24))
        var refused: Set<UInt32> = []
        _ = try parent.rootMessage { message, _ -> Bool? in
            if case .requestFailed(let request, _) = message { refused.insert(request) }
            return refused.count == 2 ? true : nil
        }
        #expect(refused == [10, 11])
        #expect(try parent.rootAnswers(probe: 99))
        #expect(root.link.isConnected)
        #expect(alpha.interceptedRanges.isEmpty, "no port range was taken")
        #expect(alpha.console.snapshot.isEmpty)
    }

    /// A partition the root took back from the parent (it stopped; it is found by its ID until it
    /// is deleted) is not the parent's to register anything for: connections and port ranges
    /// for it are refused, and the root keeps nothing of it again, however often the parent asks.
    @Test func registrationsForAPartitionTakenBackFromTheParentAreRefused() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        #expect(try parent.rootAnswers(probe: 1))
        root.link.detach(partitionID: alpha.id)
        #expect(!root.link.keptPartitions.contains(alpha.id))
        for round in UInt32(0)..<3 {
            try parent.channel.send(.registerPorts(partitionID: alpha.id, base: 0x3F8, count: 8))
            try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 0x1000 + round))
            try parent.sendRaw(ParentMessage.registerEventConnection(partitionID: alpha.id, connectionID: 0x2000 + round).bytes,
                               descriptors: [try EventFD().owned])
        }
        #expect(try parent.rootAnswers(probe: 2))
        #expect(alpha.interceptedRanges.isEmpty)
        #expect(alpha.messageConnections.isEmpty && alpha.eventConnections.isEmpty)
        #expect(!root.link.keptPartitions.contains(alpha.id))
        #expect(root.link.isConnected)
    }

    /// A partition taken back while the root registers something of the parent's for it (after
    /// the check that it is handed, before the record) keeps nothing of that registration.
    @Test func aRegistrationThatCrossesItsPartitionsDetachIsUndone() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        for (round, ports) in [false, true].enumerated() {
            let partition = try root.table.add("alpha\(round)")
            root.link.attach(partition)
            #expect(try parent.rootAnswers(probe: UInt32(10 + 2 * round)))
            let id = partition.id
            partition.beforeNextRegistration.withLock { $0 = { [link = root.link] in link.detach(partitionID: id) } }
            if ports {
                try parent.channel.send(.registerPorts(partitionID: id, base: 0x3F8, count: 8))
            } else {
                try parent.sendRaw(ParentMessage.registerEventConnection(partitionID: id, connectionID: 0x2001).bytes,
                                   descriptors: [try EventFD().owned])
            }
            #expect(try parent.rootAnswers(probe: UInt32(11 + 2 * round)))
            #expect(partition.beforeNextRegistration.withLock { $0 == nil }, "the registration reached the partition")
            #expect(partition.eventConnections.isEmpty && partition.interceptedRanges.isEmpty)
            #expect(!root.link.keptPartitions.contains(id))
        }
        #expect(root.link.isConnected)
    }

    /// A parent cannot grow the root's connection tables without bound.
    @Test func aParentRegistersAtMostTheLimitOfConnectionsPerPartition() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        for connection in UInt32(0x1000)..<UInt32(0x1000 + ParentLink.registrationLimit + 10) {
            try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: connection))
        }
        try parent.sendRaw(ParentMessage.registerEventConnection(partitionID: alpha.id, connectionID: 0x2001).bytes,
                           descriptors: [try EventFD().owned])
        #expect(try parent.rootAnswers(probe: 1))
        #expect(alpha.messageConnections.count == ParentLink.registrationLimit)
        #expect(alpha.eventConnections.isEmpty)
        // Registering one already registered again is no growth.
        try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 0x1000))
        #expect(try parent.rootAnswers(probe: 2))
        #expect(alpha.messageConnections.count == ParentLink.registrationLimit)
    }

    /// The root never waits on a descriptor the parent shares with it: a blocking eventfd whose
    /// counter the parent filled, handed over as an event connection (the root signals it once
    /// registered), stops neither the root's service of the parent nor its shutdown.
    @Test func anEventFDTheParentFilledNeverBlocksTheRoot() throws {
        let root = try RootEnd()
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        let full: UInt64 = 0xFFFF_FFFF_FFFF_FFFE
        let first = try EventFD()
        first.signal(full)
        try parent.sendRaw(ParentMessage.registerEventConnection(partitionID: alpha.id, connectionID: 0x2001).bytes,
                           descriptors: [first.owned])
        #expect(try parent.rootAnswers(probe: 1), "the root still serves the parent")
        #expect(alpha.eventConnections.count == 1)
        // Once the parent reads its counter, the signal the root owed it arrives.
        #expect(try first.wait() == full)
        #expect(eventually { first.consume() == 1 })
        let second = try EventFD()
        second.signal(full)
        try parent.sendRaw(ParentMessage.registerEventConnection(partitionID: alpha.id, connectionID: 0x2002).bytes,
                           descriptors: [second.owned])
        #expect(try parent.rootAnswers(probe: 2))
        // The write the root owes `second` still waits: shutting down does not (on a thread of
        // its own, so a regression fails here rather than hanging the suite).
        let stopped = Atomic<Bool>(false)
        let stopper = try OSThread.spawn(name: "stopper") {
            root.stop()
            stopped.store(true, ordering: .releasing)
        }
        #expect(eventually(within: 30) { stopped.load(ordering: .acquiring) }, "shutdown waited for the parent's eventfd")
        stopper.detach()
        #expect(!root.link.isConnected)
    }

    /// Parts of a commit are kept only for partitions handed to this parent: parts for any other
    /// ID would be kept under keys no limit counts. They are dropped without cutting the parent
    /// off (one sent as its partition stopped crosses the detach).
    @Test func commitPartsForAPartitionNotHandedToTheParentAreNotKept() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        for id in [UInt32(0xDEAD), 0xBEEF, alpha.id &+ 1, alpha.id] {
            try parent.channel.send(.commitState(StateCommit(
                partitionID: id, sequence: 0, isFinal: false,
                records: [StateRecord(key: 1, bytes: [UInt8](repeating: 1, count: 1000))], posts: [])))
        }
        #expect(try parent.rootAnswers(probe: 1))
        #expect(root.link.connection?.stagedPartitions == [alpha.id])
    }

    /// A parent that takes none of a partition's device changes makes the root refuse more
    /// (`ParentLink.keepsUp`, asked before each API change) long before the changes it queues
    /// whatever the room would make it give the parent up.
    @Test func aParentThatTakesNoChangesStopsDeviceChangesBeforeItIsGivenUp() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["heartbeat"])
        let beta = try root.table.add("beta", devices: ["heartbeat"])
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        #expect(try parent.rootAnswers(probe: 1))
        let connection = try #require(root.link.connection)
        #expect(connection.outbox.queued(lane: alpha.id) != nil && connection.outbox.queued(lane: beta.id) != nil)
        let limits = connection.outbox.limits
        let bench = try DeviceRegistry.catalog.resolve(adding: "bench", to: alpha.devices, partition: "alpha")

        /// Sends `change` to `lane` until the root refuses more. The parent reads what it is sent
        /// and acknowledges none of it, so a window of jobs leaves and then nothing: what waits in
        /// the lane only grows, and the refusal, once given, stands (were the window still
        /// filling, a job leaving after the last change would make room again).
        func changeUntilRefused(_ lane: UInt32, _ change: DeviceSpec) -> Int {
            var changes = 0
            let windowFull = eventually {
                while let received = try? parent.rootMessage(within: 0), case .message = received {}
                guard connection.outbox.outstandingJobs(lane: lane) < limits.window else { return true }
                root.link.deviceChanged(partitionID: lane, change, resources: [])
                changes += 1
                return false
            }
            #expect(windowFull, "the parent was sent a window of jobs")
            while root.link.keepsUp(partitionID: lane), changes < ControlOutbox.Limits.hardLimitFactor * limits.laneEntries {
                root.link.deviceChanged(partitionID: lane, change, resources: [])
                changes += 1
            }
            return changes
        }

        let changes = changeUntilRefused(alpha.id, bench)
        #expect(!root.link.keepsUp(partitionID: alpha.id), "after \(changes) changes")
        #expect(changes <= Int(limits.window) + limits.laneEntries, "the lane's limit and the jobs in flight, not the hard limit")
        #expect(root.link.connection === connection, "the parent is still the root's")
        #expect(try parent.rootAnswers(probe: 2))

        // Large changes fill the lane's bytes long before its entries.
        let large = DeviceSpec(kind: "bench", instance: bench.instance, settings: [UInt8](repeating: 0x20, count: 16 << 10))
        let largeChanges = changeUntilRefused(beta.id, large)
        #expect(!root.link.keepsUp(partitionID: beta.id), "after \(largeChanges) large changes")
        #expect(largeChanges <= Int(limits.window) + limits.laneBytes / (16 << 10) + 1, "stopped by the lane's bytes")
        #expect(root.link.connection === connection, "the parent is still the root's")
    }

    /// A connection registered again on the same link does not send its unacknowledged log
    /// again: a parent repeating the registration would otherwise have the root queue a copy of
    /// the log each time.
    @Test func registeringAMessageConnectionAgainDoesNotReplayItsLog() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        let connection = ConnectionID(0x1000)
        try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: connection.rawValue))
        #expect(try parent.rootAnswers(probe: 1))
        var payloads: [[UInt8]] = []
        /// Collects the guest messages the root sends until `done` says so.
        func collect(until done: @escaping (RootMessage) -> Bool) throws {
            _ = try parent.rootMessage { message, _ -> Bool? in
                if case .sequencedGuestMessage(let guestMessage) = message { payloads.append(guestMessage.payload) }
                return done(message) ? true : nil
            }
        }
        #expect(try alpha.postMessage(connection: connection, type: .vmbus, payload: [1]) == .success)
        try collect { if case .sequencedGuestMessage(let message) = $0 { message.payload == [1] } else { false } }
        for _ in 0..<5 {
            try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: connection.rawValue))
        }
        // Answered once the registrations are handled (and any replay queued).
        try parent.channel.send(.requestDoorbell(requestID: 2, partitionID: 0xDEAD, vp: 0, sint: 2))
        try collect { if case .requestFailed(2, _) = $0 { true } else { false } }
        // The guest's next message follows any replay in the partition's lane.
        #expect(try alpha.postMessage(connection: connection, type: .vmbus, payload: [2]) == .success)
        try collect { if case .sequencedGuestMessage(let message) = $0 { message.payload == [2] } else { false } }
        #expect(payloads == [[1], [2]], "each message once")
    }

    /// Shutting the root down ends a connection still waiting for its hello too: it is not the
    /// current parent yet, but the root waits for the thread that serves it.
    @Test func shuttingDownEndsAConnectionThatHasNotSaidHello() throws {
        let root = try RootEnd(helloTimeoutMilliseconds: 120_000)
        _ = try root.table.add("alpha")
        let silent = ScriptedEnd(try SequencedPacketSocket.connect(path: root.socketPath))
        defer { silent.close() }
        // The root has accepted it and waits for its hello.
        #expect(eventually { root.link.isServingASocket })
        let stopped = Atomic<Bool>(false)
        let stopper = try OSThread.spawn(name: "stopper") {
            root.stop()
            stopped.store(true, ordering: .releasing)
        }
        #expect(eventually(within: 30) { stopped.load(ordering: .acquiring) }, "shutdown waited for the silent peer's hello")
        #expect(silent.closes())
        stopper.join()
    }

    /// A process that connects and says nothing does not keep the parent out.
    @Test func aSilentConnectionIsDroppedAndTheParentGetsIn() throws {
        // Long enough that the scripted parent's own hello is never late on a loaded host.
        let root = try RootEnd(helloTimeoutMilliseconds: 1000)
        defer { root.stop() }
        _ = try root.table.add("alpha")
        let silent = ScriptedEnd(try SequencedPacketSocket.connect(path: root.socketPath))
        #expect(silent.closes(), "the root hung up on it")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        #expect(try parent.rootAnswers(probe: 1))
    }

    /// Seeded mutations of every parent message: the root either serves the result or cuts the
    /// parent off, and is there for the next parent.
    @Test func mutatedParentRecordsNeverTakeTheRootDown() throws {
        let root = try RootEnd(portReadTimeout: 10_000_000)
        defer { root.stop() }
        let alpha = try root.table.add("alpha", processors: 2, devices: ["com1"])
        try alpha.enableSynIC(vp: 0, sint: 2)
        let id = alpha.id
        let valid: [ParentMessage] = [
            .registerMessageConnection(partitionID: id, connectionID: 1),
            .unregisterMessageConnection(partitionID: id, connectionID: 1),
            .registerEventConnection(partitionID: id, connectionID: 0x2001),
            .unregisterEventConnection(partitionID: id, connectionID: 0x2001),
            .requestDoorbell(requestID: 5, partitionID: id, vp: 1, sint: 2),
            .postMessage(partitionID: id, vp: 0, sint: 2, messageType: 1, payload: [UInt8](repeating: 9, count: 240)),
            .partitionStatus(partitionID: id, facts: ["heartbeat.sequence": "12"]),
            .registerPorts(partitionID: id, base: 0x2F8, count: 8),
            .portReadResult(requestID: 9, value: 0x60),
            .requestInterruptLine(requestID: 10, partitionID: id, pin: 4),
            .consoleOutput(partitionID: id, bytes: Array("hello\n".utf8)),
        ]
        var generator = SeededGenerator(seed: 0x5EA5)
        var parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        var cutOff = 0
        for round in 0..<150 {
            let message = valid[Int.random(in: 0..<valid.count, using: &generator)]
            var bytes = message.bytes
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
            case 1: bytes.removeLast(Int.random(in: 1...bytes.count, using: &generator))
            case 2: bytes += generator.bytes(Int.random(in: 1...16, using: &generator))
            default: bytes.replaceSubrange(4..<min(bytes.count, 12), with: generator.bytes(8))
            }
            try parent.sendRaw(bytes, descriptors: (0..<message.descriptorCount).map { _ in try EventFD().owned })
            let served = try parent.rootAnswers(probe: UInt32(1000 + round))
            if !served {
                cutOff += 1
                parent.close()
                parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
            }
        }
        #expect(cutOff > 0, "some mutations broke the protocol")
        #expect(try parent.rootAnswers(probe: 1))
        parent.close()
    }

    // MARK: The parent against a bad root

    static let fromRoot: [HostileRecord] = {
        let detached = RootMessage.partitionDetached(partitionID: 1).bytes
        return [
            HostileRecord(name: "unknown kind", bytes: withVersion(ControlProtocol.version, [0, 0, 0xFF, 0x7F])),
            HostileRecord(name: "unsupported version", bytes: withVersion(9, detached)),
            HostileRecord(name: "truncated attachment",
                          bytes: Array(RootMessage.partitionAttached(ParentLinkFixtures.attachment(id: 1)).bytes.dropLast(3)),
                          descriptors: 1),
            HostileRecord(name: "trailing bytes", bytes: detached + [0, 0]),
            HostileRecord(name: "attachment without its memory",
                          bytes: RootMessage.partitionAttached(ParentLinkFixtures.attachment(id: 1)).bytes),
            HostileRecord(name: "doorbell without its eventfd",
                          bytes: RootMessage.doorbell(requestID: 1, partitionID: 1, vp: 0, sint: 2).bytes),
            HostileRecord(name: "an empty record", bytes: []),
            HostileRecord(name: "a record beyond the size limit", bytes: [],
                          oversized: SequencedPacketSocket.maximumMessageSize + 1),
        ]
    }()

    @Test(arguments: fromRoot)
    func aBadRootRecordMakesTheParentReconnect(_ record: HostileRecord) throws {
        let root = try ScriptedRoot()
        defer { root.close() }
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        let first = try root.accept()
        #expect(try first.parentAnswers(probe: 1))
        try record.send(on: first)
        #expect(first.closes(), "the parent dropped the connection")
        let second = try root.accept()
        defer { second.close() }
        #expect(try second.parentAnswers(probe: 2), "and came back")
    }

    /// Attachments the parent cannot use are refused one by one; it stays connected and serves
    /// the next good one.
    @Test func unusableAttachmentsAreRefusedAndTheParentCarriesOn() throws {
        let root = try ScriptedRoot()
        defer { root.close() }
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        let connection = try root.accept()
        defer { connection.close() }
        let small = try MemoryFile.create(name: "small", size: 4096)
        let notMemory = try EventFD()
        let memory = try MemoryFile.create(name: "many", size: 16 << 20)
        try connection.sendRaw(RootMessage.partitionAttached(ParentLinkFixtures.attachment(id: 1, memoryMiB: 16)).bytes,
                               descriptors: [small])
        try connection.sendRaw(RootMessage.partitionAttached(ParentLinkFixtures.attachment(id: 2)).bytes,
                               descriptors: [notMemory.owned])
        try connection.sendRaw(RootMessage.partitionAttached(ParentLinkFixtures.attachment(id: 3, processors: 100_000)).bytes,
                               descriptors: [memory])
        var beyondInt = ParentLinkFixtures.attachment(id: 5)
        beyondInt.memorySize = .max
        try connection.sendRaw(RootMessage.partitionAttached(beyondInt).bytes,
                               descriptors: [try MemoryFile.create(name: "beyond", size: 16 << 20)])
        // SynIC pages named twice for one processor, or for a processor the partition lacks.
        for (id, vps) in [(UInt32(6), [UInt32(0), 0]), (7, [1])] {
            var pages = ParentLinkFixtures.attachment(id: id)
            pages.processors = vps.map { ProcessorPages(vp: $0, synicEnabled: false, messagePage: nil, eventFlagsPage: nil) }
            try connection.sendRaw(RootMessage.partitionAttached(pages).bytes,
                                   descriptors: [try MemoryFile.create(name: "pages\(id)", size: 16 << 20)])
        }
        try connection.sendRaw(RootMessage.doorbell(requestID: 4242, partitionID: 9, vp: 0, sint: 2).bytes,
                               descriptors: [notMemory.owned])
        try connection.channel.send(.guestMessage(partitionID: 9, vp: 0, connectionID: 1, messageType: 1, payload: [1]))
        try connection.channel.send(.shutdownGuest(partitionID: 9))
        try connection.channel.send(.portWrite(partitionID: 9, vp: 0, port: 0x3F8, size: 1, value: 0x41))
        #expect(try connection.parentAnswers(probe: 7))
        #expect(parent.child(1) == nil && parent.child(2) == nil && parent.child(3) == nil && parent.child(5) == nil)
        #expect(parent.child(6) == nil && parent.child(7) == nil)

        try connection.sendRaw(RootMessage.partitionAttached(ParentLinkFixtures.attachment(id: 4)).bytes,
                               descriptors: [try MemoryFile.create(name: "good", size: 16 << 20)])
        let doorbellRequested = try connection.parentMessage { message, _ -> Bool? in
            if case .requestDoorbell(_, 4, _, _) = message { return true }
            return nil
        }
        #expect(doorbellRequested == true, "the good partition is served")
        #expect(parent.child(4)?.name == "good")
        // A string read of four billion elements is answered with what one answer carries,
        // without the parent making room for the rest.
        try connection.channel.send(.portReadString(requestID: 77, partitionID: 4, vp: 0, port: 0x3F8, size: 4,
                                                    count: .max))
        let answered = try connection.parentMessage { message, _ -> Int? in
            if case .portReadStringResult(77, let bytes) = message { return bytes.count }
            return nil
        }
        #expect(answered == RootMessage.maximumStringBytes)
        #expect(try connection.parentAnswers(probe: 8))
    }

    /// Seeded mutations of every root message: the parent either serves the result or drops the
    /// root and reconnects.
    @Test func mutatedRootRecordsNeverTakeTheParentDown() throws {
        let root = try ScriptedRoot()
        defer { root.close() }
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        let valid: [RootMessage] = [
            .partitionAttached(ParentLinkFixtures.attachment(id: 3)),
            .partitionDetached(partitionID: 3),
            .synicPagesChanged(partitionID: 3, ProcessorPages(vp: 0, synicEnabled: true, messagePage: 0x10000,
                                                              eventFlagsPage: 0x11000)),
            .guestMessage(partitionID: 3, vp: 0, connectionID: 1, messageType: 1, payload: [1, 0, 0, 0, 0, 0, 0, 0]),
            .doorbell(requestID: 3, partitionID: 3, vp: 0, sint: 2),
            .requestFailed(requestID: 3, reason: "no"),
            .shutdownGuest(partitionID: 3),
            .portWrite(partitionID: 3, vp: 0, port: 0x3F8, size: 1, value: 0x41),
            .portRead(requestID: 9, partitionID: 3, vp: 0, port: 0x3FD, size: 1),
            .interruptLine(requestID: 10, partitionID: 3, pin: 4),
        ]
        var generator = SeededGenerator(seed: 0xB00_7)
        var connection = try root.accept()
        var dropped = 0
        for round in 0..<100 {
            let message = valid[Int.random(in: 0..<valid.count, using: &generator)]
            var bytes = message.bytes
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
            case 1: bytes.removeLast(Int.random(in: 1...bytes.count, using: &generator))
            case 2: bytes += generator.bytes(Int.random(in: 1...16, using: &generator))
            default: bytes.replaceSubrange(4..<min(bytes.count, 12), with: generator.bytes(8))
            }
            let descriptors: [OwnedDescriptor] = try (0..<message.descriptorCount).map { _ in
                if case .partitionAttached = message { return try MemoryFile.create(name: "fuzz", size: 16 << 20) }
                return try EventFD().owned
            }
            try connection.sendRaw(bytes, descriptors: descriptors)
            let served = try connection.parentAnswers(probe: UInt32(1000 + round))
            if !served {
                dropped += 1
                connection.close()
                connection = try root.accept()
            }
        }
        #expect(dropped > 0, "some mutations broke the protocol")
        #expect(try connection.parentAnswers(probe: 1))
        connection.close()
    }
}

enum ParentLinkFixtures {
    static func attachment(id: UInt32, memoryMiB: UInt64 = 16, processors: UInt32 = 1) -> PartitionAttachment {
        PartitionAttachment(
            partitionID: id, name: id == 4 ? "good" : "p\(id)", memorySize: memoryMiB << 20, processorCount: processors,
            clock: ReferenceClock(tscFrequencyHz: 1_000_000_000, scale: 1 << 32, guestTSCOffset: 0, referenceOffset: 0),
            processors: [ProcessorPages(vp: 0, synicEnabled: false, messagePage: nil, eventFlagsPage: nil)], devices: [])
    }
}
