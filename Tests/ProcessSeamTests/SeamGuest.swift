import Foundation
import GuestMemory
import HyperV
import LinuxSupport
@testable import RootScheduler
import Synchronization
import Testing
import VMBusClient
import VMBusHost
import VMBusProtocol

/// A VMBus guest played by the test over a `TestPartition`: the real client core
/// (`VMBusClient`) posts through the partition's real HvPostMessage, takes the host's messages
/// from SINT 2's slot of processor 0 as a guest would (EOM after each), and drives its channels
/// over rings in the partition's RAM, signalling the host with HvSignalEvent.
final class SeamGuest {
    let partition: TestPartition
    private(set) var client = VMBusClient()
    private(set) var events: [ClientEvent] = []
    /// The next free page for rings: guest RAM from 1 MiB up.
    private(set) var nextPage: UInt64 = 0x100

    enum GuestError: Error { case timedOut(String), failed(String) }

    init(_ partition: TestPartition) throws {
        self.partition = partition
        try partition.enableSynIC(vp: 0, sint: VMBusConstants.messageSINT)
    }

    private var now: UInt64 { MonotonicClock.nanoseconds() }

    /// Runs a request of the program and carries its actions out until `done` holds for an
    /// event (new ones, in order), or `seconds` pass.
    @discardableResult
    func run(_ request: (inout VMBusClient) throws(ClientError) -> [ClientAction], within seconds: Double = 10,
             until done: (ClientEvent) -> Bool) throws -> ClientEvent {
        let first = events.count
        var pending = try request(&client)[...]
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            while let action = pending.popFirst() {
                switch action {
                case .post(let message, let connection, let delay):
                    if delay > 0 { usleep(UInt32(min(delay / 1000, 1_000_000))) }
                    let status = try partition.postMessage(connection: connection, type: .vmbus, payload: message.bytes)
                    pending += client.postCompleted(status, now: now)
                case .wait:
                    break
                case .event(let event):
                    events.append(event)
                }
            }
            if let found = events[first...].first(where: done) { return found }
            if let message = try takeHostMessage() {
                pending += client.handle(message, now: now)
            } else {
                pending += client.tick(now: now)
                usleep(200)
            }
        }
        throw GuestError.timedOut("no matching event; saw \(events[first...])")
    }

    /// The next host message in SINT 2's slot (the slot is freed and EOM written, so the next
    /// one queued behind it is delivered).
    func takeHostMessage() throws -> [UInt8]? {
        guard let message = try partition.takeMessage(sint: VMBusConstants.messageSINT) else { return nil }
        _ = partition.hypervisor?.writeMSR(vp: 0, index: SyntheticMSR.endOfMessage.rawValue, value: 0)
        return message.type == SynICMessageType.vmbus.rawValue ? message.payload : nil
    }

    /// Connects (newest version first) and asks for the offers.
    func connect() throws {
        try run({ client throws(ClientError) in try client.connect(monitorPage1: 0xF000, monitorPage2: 0xE000) }) {
            if case .connected = $0 { return true }
            return false
        }
        try run({ client throws(ClientError) in try client.requestOffers() }) { $0 == .allOffersDelivered }
    }

    /// The offer of the device class `classID`.
    func offer(_ classID: GUID) throws -> OfferChannel {
        guard let offer = client.offers.first(where: { $0.interfaceType == classID }) else {
            throw GuestError.failed("no offer of \(classID)")
        }
        return offer
    }

    /// Opens the channel of device class `classID` with rings of `pages` pages each.
    func open(_ classID: GUID, pages: Int = 4) throws -> SeamChannel {
        let offer = try offer(classID)
        let relID = offer.childRelID
        let ring = (0..<UInt64(2 * pages)).map { nextPage + $0 }
        nextPage += UInt64(2 * pages)
        var gpadl: UInt32 = 0
        try run({ client throws(ClientError) in
            let created = try client.createGPADL(channel: relID, pageNumbers: ring)
            gpadl = created.gpadl
            return created.actions
        }) {
            if case .gpadlCreated(_, relID, _) = $0 { return true }
            return false
        }
        let opened = try run({ client throws(ClientError) in
            try client.openChannel(relID, gpadl: gpadl, targetVP: 0, downstreamPageOffset: UInt32(pages))
        }) {
            if case .opened(relID, _) = $0 { return true }
            return false
        }
        guard case .opened(_, 0) = opened else { throw GuestError.failed("the host refused to open relid \(relID)") }
        let memory = try #require(partition.memory)
        return try SeamChannel(relID: relID, partition: partition,
                               outgoing: GuestRingMemory(memory: memory, pages: ring[0..<pages]),
                               incoming: GuestRingMemory(memory: memory, pages: ring[pages...]))
    }

    /// CLOSECHANNEL (the host does not answer it).
    func close(_ relID: UInt32) throws {
        try post(client.closeChannel(relID))
    }

    /// RELID_RELEASED, the answer to a rescind (the host does not answer it).
    func release(_ relID: UInt32) throws {
        try post(client.releaseRelID(relID))
    }

    private func post(_ actions: [ClientAction]) throws {
        var pending = actions[...]
        while let action = pending.popFirst() {
            if case .post(let message, let connection, _) = action {
                let status = try partition.postMessage(connection: connection, type: .vmbus, payload: message.bytes)
                pending += client.postCompleted(status, now: now)
            }
        }
    }
}

/// The guest end of a channel of a `SeamGuest`: the real ring code over the partition's RAM.
struct SeamChannel: VMBusChannel {
    let relID: UInt32
    let partition: TestPartition
    var writer: RingWriter<GuestRingMemory>
    var reader: RingReader<GuestRingMemory>

    init(relID: UInt32, partition: TestPartition, outgoing: GuestRingMemory, incoming: GuestRingMemory) throws {
        self.relID = relID
        self.partition = partition
        writer = try RingWriter(memory: outgoing)
        reader = try RingReader(memory: incoming)
    }

    var outgoingDataSize: Int { writer.memory.dataSize }
    var incomingDataSize: Int { reader.memory.dataSize }

    mutating func stage(_ type: PacketType, flags: PacketFlags, transactionID: UInt64, header: [UInt8],
                        payload: [UInt8]) -> Bool {
        (try? writer.write(type: type, flags: flags, transactionID: transactionID, header: header, payload: payload)) != nil
    }

    /// Publishes and always signals: the test's guest does not bother with interrupt_mask.
    mutating func publish() {
        _ = writer.commit()
        signalHost()
    }

    mutating func receive(into buffer: inout [UInt8]) -> PacketDescriptor? {
        guard let descriptor = try? reader.next(into: &buffer) else { return nil }
        if reader.commit() { signalHost() }
        return descriptor
    }

    mutating func beginPolling() { reader.beginPolling() }
    mutating func endPolling() -> Bool { reader.endPolling() }
    mutating func signalHost() { _ = try? partition.signalEvent(connection: VMBusConstants.eventConnectionID(childRelID: relID)) }
    func signalEvent(connection: ConnectionID) { _ = try? partition.signalEvent(connection: connection) }
    var interruptCount: UInt64 { 0 }
    func timestamp() -> UInt64 { MonotonicClock.nanoseconds() }
    func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64 { end &- start }
    func ticks(nanoseconds: UInt64) -> UInt64 { nanoseconds }
    func relax() { usleep(50) }
}
