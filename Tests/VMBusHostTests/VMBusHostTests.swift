import Glibc
import GuestMemory
import LinuxSupport
import Synchronization
import Testing
import VMBusHost
import VMBusProtocol

/// A guest's view of a channel, played by the test: it writes the guest→host ring and reads
/// the host→guest ring through the same guest memory the worker maps.
struct FakeGuest {
    let memory: GuestMemory
    let incomingPages: [UInt64]   // host's incoming = guest's outgoing
    let outgoingPages: [UInt64]
    var writer: RingWriter<GuestRingMemory>
    var reader: RingReader<GuestRingMemory>

    init(memory: GuestMemory, incoming: [UInt64], outgoing: [UInt64]) throws {
        self.memory = memory
        incomingPages = incoming
        outgoingPages = outgoing
        writer = try RingWriter(memory: GuestRingMemory(memory: memory, pages: incoming[...]))
        reader = try RingReader(memory: GuestRingMemory(memory: memory, pages: outgoing[...]))
    }
}

// The sessions below are Sendable (atomics and locks only) so a test can keep watching one after
// handing it to the worker.

/// Echoes every packet back with the same transaction ID.
final class EchoDevice: ChannelSession, Sendable {
    let closed = Atomic<Bool>(false)
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        if packet.payload.first == 0xEE { throw .protocolViolation("poison") }
        try channel.send(.inband, transactionID: packet.descriptor.transactionID, payload: Array(packet.payload))
    }
    func close() { closed.store(true, ordering: .releasing) }
}

/// Accepts everything, never answers.
final class SinkDevice: ChannelSession, Sendable {
    let packets = Atomic<Int>(0)
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        packets.wrappingAdd(1, ordering: .relaxed)
    }
}

/// Plays an infinitely fast guest: each packet it handles is replaced in the ring by a new one
/// before the worker looks again, so the worker never finds its ring empty.
final class RefillingDevice: ChannelSession, Sendable {
    let packets = Atomic<Int>(0)
    let guest = Locked<FakeGuest?>(nil)

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        packets.wrappingAdd(1, ordering: .relaxed)
        guest.withLock { guest in
            _ = try? guest?.writer.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 7, count: 64))
            _ = guest?.writer.commit()
        }
    }
}

/// Holds the worker in its first packet until released, then notes, at each packet, the read
/// index the guest would see in the incoming ring's control page.
final class GatedDevice: ChannelSession, Sendable {
    let memory: GuestMemory
    let readIndexAddress: GuestPhysicalAddress
    let holding = Atomic<Bool>(false)
    let released = Atomic<Bool>(false)
    let readIndexes = Locked<[UInt32]>([])

    init(memory: GuestMemory, controlPage: UInt64) {
        self.memory = memory
        readIndexAddress = GuestPhysicalAddress(controlPage * 4096 + UInt64(RingControlWord.readIndex.byteOffset))
    }

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        if !holding.exchange(true, ordering: .acquiringAndReleasing) {
            while !released.load(ordering: .acquiring) { usleep(100) }
        }
        let index = (try? memory.atomicLoad(UInt32.self, at: readIndexAddress, ordering: .acquiring)) ?? .max
        readIndexes.withLock { $0.append(index) }
    }
}

/// A value shared with worker threads.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

struct Harness {
    let memory: GuestMemory
    let guestSignal: EventFD
    let signals = Locked<Int>(0)
    let failure = Locked<String?>(nil)
    var worker: ChannelWorker!
    var guest: FakeGuest

    /// Rings on deliberately scattered pages to exercise the page-list path.
    init(device: any ChannelSession & Sendable, ringPages: Int = 4, memory: GuestMemory? = nil) throws {
        self.memory = try memory ?? GuestMemory.create(name: "vmbus-host", size: 4 << 20)
        let memory = self.memory
        let incoming = (0..<ringPages).map { UInt64(100 + $0 * 3) }
        let outgoing = (0..<ringPages).map { UInt64(500 + $0 * 5) }
        guest = try FakeGuest(memory: memory, incoming: incoming, outgoing: outgoing)
        guestSignal = try EventFD()
        let channel = try VSPChannel(
            relID: 7, incoming: try GuestRingMemory(memory: memory, pages: incoming[...]),
            outgoing: try GuestRingMemory(memory: memory, pages: outgoing[...]), targetVP: 0, guestSignal: guestSignal
        ) { [signals] _ in signals.withLock { $0 += 1 } }
        let failure = self.failure
        worker = try ChannelWorker(channel: channel, session: device) { reason in failure.withLock { $0 = reason } }
    }

    /// Writes one packet, waiting up to a second for room. Returns false if the worker stopped
    /// draining (a stopped worker never frees space).
    @discardableResult
    mutating func send(_ payload: [UInt8], id: UInt64) -> Bool {
        var attempts = 0
        while (try? guest.writer.write(type: .inband, transactionID: id, payload: payload)) == nil {
            _ = guest.writer.commit()
            attempts += 1
            if attempts > 10_000 { return false }
            usleep(100)
        }
        if guest.writer.commit() { guestSignal.signal() }
        return true
    }

    mutating func receive(timeoutMilliseconds: Int = 2000) -> (PacketDescriptor, [UInt8])? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<(timeoutMilliseconds * 10) {
            if let descriptor = (try? guest.reader.next(into: &buffer)) ?? nil {
                if guest.reader.commit() { guestSignal.signal() }
                return (descriptor, Array(buffer[descriptor.payloadOffset..<descriptor.totalLength]))
            }
            usleep(100)
        }
        return nil
    }
}

@Suite("VMBus host channels")
struct VMBusHostTests {
    @Test func ringMemoryOverScatteredPagesWrapsIntact() throws {
        let memory = try GuestMemory.create(name: "ring", size: 1 << 20)
        let pages: [UInt64] = [9, 3, 17, 5]
        var writer = try RingWriter(memory: GuestRingMemory(memory: memory, pages: pages[...]))
        var reader = try RingReader(memory: GuestRingMemory(memory: memory, pages: pages[...]))
        var buffer: [UInt8] = []
        for round in 0..<5000 {
            let payload = (0..<(round % 700 + 1)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ round) }
            try writer.write(type: .inband, transactionID: UInt64(round), payload: payload)
            _ = writer.commit()
            let descriptor = try #require(try reader.next(into: &buffer))
            _ = reader.commit()
            #expect(descriptor.transactionID == UInt64(round))
            #expect(Array(buffer[descriptor.payloadOffset..<(descriptor.payloadOffset + payload.count)]) == payload)
        }
    }

    @Test func ringPagesOutsideGuestRAMAreRejected() throws {
        let memory = try GuestMemory.create(name: "ring", size: 1 << 20)
        #expect(throws: GuestMemoryError.self) { _ = try GuestRingMemory(memory: memory, pages: [1, 256][...]) }
        #expect(throws: GuestMemoryError.self) { _ = try GuestRingMemory(memory: memory, pages: [1, UInt64.max][...]) }
    }

    @Test func workerEchoesPacketsAndSignalsOnlyWhenTheGuestListens() throws {
        var harness = try Harness(device: EchoDevice())
        defer { harness.worker.stop() }
        for index in 0..<200 {
            harness.send([UInt8(truncatingIfNeeded: index), 1, 2, 3, 4, 5, 6, 7], id: UInt64(index))
            let received = harness.receive()
            let (descriptor, payload) = try #require(received)
            #expect(descriptor.transactionID == UInt64(index))
            #expect(payload.first == UInt8(truncatingIfNeeded: index))
        }
        #expect(harness.failure.withLock { $0 } == nil)
        // The guest's interrupt mask suppresses signals.
        harness.guest.reader.beginPolling()
        let before = harness.signals.withLock { $0 }
        harness.send([9, 9, 9, 9, 9, 9, 9, 9], id: 999)
        let echoed = harness.receive()
        #expect(echoed != nil)
        #expect(harness.signals.withLock { $0 } == before)
    }

    @Test func aSleepingWorkerWakesOnTheGuestsSignal() throws {
        let sink = SinkDevice()
        var harness = try Harness(device: sink)
        defer { harness.worker.stop() }
        usleep(20_000)  // well past the spin window: the worker is asleep, mask clear
        harness.send([1, 2, 3, 4, 5, 6, 7, 8], id: 1)
        for _ in 0..<2000 where sink.packets.load(ordering: .relaxed) == 0 { usleep(1000) }
        let packets = sink.packets.load(ordering: .relaxed)
        #expect(packets == 1)
    }

    @Test func deviceProtocolViolationsCloseOnlyThatChannel() throws {
        let device = EchoDevice()
        var harness = try Harness(device: device)
        harness.send([0xEE, 0, 0, 0, 0, 0, 0, 0], id: 1)
        for _ in 0..<2000 where harness.failure.withLock({ $0 }) == nil { usleep(1000) }
        #expect(harness.failure.withLock { $0 }?.contains("poison") == true)
        let closed = device.closed.load(ordering: .acquiring)
        #expect(closed)
        harness.worker.stop()
    }

    @Test func aGuestThatNeverDrainsIsCutOff() throws {
        var harness = try Harness(device: EchoDevice(), ringPages: 2)
        let payload = [UInt8](repeating: 1, count: 2048)
        // Enough echoes to overflow the 4 KiB outgoing ring and then the backlog limit.
        for index in 0..<(VSPChannel.backlogLimit / 2048 + 64) where harness.failure.withLock({ $0 }) == nil {
            if !harness.send(payload, id: UInt64(index)) { break }
        }
        for _ in 0..<2000 where harness.failure.withLock({ $0 }) == nil { usleep(1000) }
        #expect(harness.failure.withLock { $0 }?.contains("unread") == true)
        harness.worker.stop()
    }

    /// Random garbage in the control page and data area while the worker runs: the worker may
    /// serve packets or give up on the channel, but the process never traps.
    @Test func hostileRingsNeverCrashTheParent() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let harness = try Harness(device: EchoDevice(), ringPages: 3)
            let pages = harness.guest.incomingPages + harness.guest.outgoingPages
            for _ in 0..<200 {
                let page = pages.randomElement(using: &generator)!
                let offset = UInt64.random(in: 0..<4096, using: &generator) & ~3
                let address = GuestPhysicalAddress(page * 4096 + offset)
                if Bool.random(using: &generator) {
                    try harness.memory.store(UInt32.random(in: 0...UInt32.max, using: &generator), at: address)
                } else {
                    // Plausible indices: small and 8-aligned, the subtle corruptions.
                    try harness.memory.store(UInt32.random(in: 0..<9000, using: &generator) & ~7, at: address)
                }
                harness.guestSignal.signal()
            }
            usleep(UInt32(round % 5) * 200)
            harness.worker.stop()
        }
    }

    /// Docs/hyperv-interface.md §8.6: a reader that drains a full ring publishes its read index as
    /// it goes, so a writer waiting for room refills the ring meanwhile instead of waiting for it
    /// to empty.
    @Test func aDrainingWorkerFreesRoomBeforeTheRingIsEmpty() throws {
        let memory = try GuestMemory.create(name: "vmbus-gated", size: 4 << 20)
        let device = GatedDevice(memory: memory, controlPage: 100)
        var harness = try Harness(device: device, ringPages: 16, memory: memory)
        defer { harness.worker.stop() }
        let payload = [UInt8](repeating: 0x5A, count: 1000)
        harness.send(payload, id: 0)
        while !device.holding.load(ordering: .acquiring) { usleep(100) }
        var sent = 1
        while (try? harness.guest.writer.write(type: .inband, transactionID: UInt64(sent), payload: payload)) != nil { sent += 1 }
        _ = harness.guest.writer.commit()
        device.released.store(true, ordering: .releasing)
        for _ in 0..<2000 where device.readIndexes.withLock({ $0.count }) < sent { usleep(1000) }
        let seen = device.readIndexes.withLock { $0 }
        #expect(seen.count == sent && sent > 40, "the ring held \(sent) packets")
        #expect(seen.dropLast().contains { $0 != 0 }, "the read index moved while packets were still unread")
    }

    /// A guest that never lets its ring go idle cannot keep its channel's worker from stopping
    /// (closing the channel would otherwise wait forever on the partition's control thread).
    @Test(.timeLimit(.minutes(1))) func aWorkerStopsWhileTheGuestKeepsItsRingBusy() throws {
        let device = RefillingDevice()
        var harness = try Harness(device: device, ringPages: 8)
        harness.send([UInt8](repeating: 7, count: 64), id: 0)
        device.guest.withLock { $0 = harness.guest }  // from here on only the device writes
        while device.packets.load(ordering: .relaxed) < 1000 { usleep(1000) }
        harness.worker.stop()
        #expect(device.packets.load(ordering: .relaxed) >= 1000)
    }
}
