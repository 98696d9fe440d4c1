import Glibc
import GuestMemory
import LinuxSupport
import Synchronization
import Testing
@testable import VMBusHost
import VMBusProtocol
import VSPTestSupport

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

/// Plays an infinitely fast guest: each packet it handles is replaced in the ring by a new one
/// before the worker looks again, so the worker never finds its ring empty.
final class RefillingDevice: ChannelSession, Sendable {
    let packets = Atomic<Int>(0)
    let writer = Locked<RingWriter<GuestRingMemory>?>(nil)

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        packets.wrappingAdd(1, ordering: .relaxed)
        writer.withLock { writer in
            _ = try? writer?.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 7, count: 64))
            _ = writer?.commit()
        }
    }
}

/// Reads no packet but always has background work: every pass of its worker makes progress
/// without a packet, as a NIC's does while frames stream in for its guest.
final class BusyWorkDevice: ChannelSession, Sendable {
    let passes = Atomic<Int>(0)
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {}
    func work(on channel: VSPChannel) throws(VSPError) -> Bool {
        passes.wrappingAdd(1, ordering: .relaxed)
        return true
    }
}

/// Answers each packet with `answers` packets of 512 bytes, all sent from one buffer it rewrites
/// between sends, as the storage session sends from the buffer it keeps; in a one-page ring most
/// of them wait in the channel's backlog.
final class ReusedBufferDevice: ChannelSession, Sendable {
    static let answers = 40
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        var buffer = [UInt8](repeating: 0, count: 512)
        for index in 0..<Self.answers {
            for byte in buffer.indices { buffer[byte] = UInt8(index) }
            try channel.send(.inband, transactionID: UInt64(index), payload: buffer)
        }
    }
}

/// A value shared with worker threads.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// A channel whose rings lie on deliberately scattered pages, to exercise the page-list path:
/// the guest→host ring's control page is page 100.
func scatteredChannel(to session: any ChannelSession & Sendable, ringPages: Int = 4,
                      memory: GuestMemory? = nil) throws -> FakeGuest {
    try FakeGuest(device: ServingSession(session), relID: 7, guestToHostPages: (0..<ringPages).map { UInt64(100 + $0 * 3) },
                  hostToGuestPages: (0..<ringPages).map { UInt64(500 + $0 * 5) }, memory: memory)
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

    /// Waits (up to 5 s) until the worker has stopped polling the guest's ring: it unmasks the
    /// ring's interrupt only after publishing and signalling what it wrote.
    static func waitUntilTheWorkerSleeps(_ guest: FakeGuest) {
        for _ in 0..<5000 where guest.writer.memory.loadControl(.interruptMask, ordering: .acquiring) != 0 {
            usleep(1000)
        }
    }

    @Test func workerEchoesPacketsAndSignalsOnlyWhenTheGuestListens() throws {
        let guest = try scatteredChannel(to: EchoDevice())
        defer { guest.close() }
        for index in 0..<200 {
            guest.send([UInt8(truncatingIfNeeded: index), 1, 2, 3, 4, 5, 6, 7], transactionID: UInt64(index))
            let packet = try #require(guest.receive(within: 10))
            #expect(packet.descriptor.transactionID == UInt64(index))
            #expect(packet.payload.first == UInt8(truncatingIfNeeded: index))
        }
        #expect(guest.failure == nil)
        // The guest's interrupt mask suppresses signals. The last echo's signal is counted just
        // after the echo is visible: wait until the worker is asleep, which it is only after.
        guest.reader.beginPolling()
        Self.waitUntilTheWorkerSleeps(guest)
        let before = guest.hostSignals
        guest.send([9, 9, 9, 9, 9, 9, 9, 9], transactionID: 999)
        let echoed = guest.receive(within: 10)
        #expect(echoed != nil)
        #expect(guest.hostSignals == before)
    }

    @Test func theWorkerCountsPacketsRingBytesAndSignalsEachWay() throws {
        let guest = try scatteredChannel(to: EchoDevice())
        defer { guest.close() }
        #expect(guest.counters.snapshot == ChannelCounters.Snapshot(
            packetsIn: 0, bytesIn: 0, signalsIn: 0, packetsOut: 0, bytesOut: 0, signalsOut: 0))
        let sizes = [8, 24, 100, 1000]
        for (index, size) in sizes.enumerated() {
            // Past the spin window: the worker sleeps, so the guest must signal it. The worker
            // unmasks the ring's interrupt when it stops polling; on a loaded host that may take
            // more than one pause, so wait for it, then give it the pause to go to sleep.
            Self.waitUntilTheWorkerSleeps(guest)
            usleep(20_000)
            guest.send([UInt8](repeating: UInt8(index), count: size), transactionID: UInt64(index))
            _ = try #require(guest.receive(within: 10))
        }
        // The last echo's signal is counted after the echo is visible.
        Self.waitUntilTheWorkerSleeps(guest)
        let counts = guest.counters.snapshot
        // Each packet takes its 16-byte descriptor, its payload padded to 8 and the 8-byte trailer.
        let ringBytes = sizes.map { UInt64(16 + ($0 + 7) / 8 * 8 + 8) }.reduce(0, +)
        #expect(counts.packetsIn == UInt64(sizes.count) && counts.packetsOut == UInt64(sizes.count))
        #expect(counts.bytesIn == ringBytes && counts.bytesOut == ringBytes)
        // Every packet found the worker asleep. The echoes' signals depend on whether the guest
        // was already polling when each arrived (slow runs, e.g. under a sanitizer, differ), so
        // only their count is checked against what the guest received.
        #expect(counts.signalsIn == UInt64(sizes.count))
        #expect(counts.signalsOut == UInt64(guest.hostSignals) && counts.signalsOut >= 1)
    }

    @Test func aSleepingWorkerWakesOnTheGuestsSignal() throws {
        let sink = SinkDevice()
        let guest = try scatteredChannel(to: sink)
        defer { guest.close() }
        usleep(20_000)  // well past the spin window: the worker is asleep, mask clear
        guest.send([1, 2, 3, 4, 5, 6, 7, 8], transactionID: 1)
        for _ in 0..<2000 where sink.packets.load(ordering: .relaxed) == 0 { usleep(1000) }
        let packets = sink.packets.load(ordering: .relaxed)
        #expect(packets == 1)
    }

    @Test func deviceProtocolViolationsCloseOnlyThatChannel() throws {
        let device = EchoDevice()
        let guest = try scatteredChannel(to: device)
        guest.send([0xEE, 0, 0, 0, 0, 0, 0, 0], transactionID: 1)
        #expect(guest.waitForFailure(within: 10)?.contains("poison") == true)
        let closed = device.closed.load(ordering: .acquiring)
        #expect(closed)
        guest.close()
    }

    @Test func aGuestThatNeverDrainsIsCutOff() throws {
        let guest = try scatteredChannel(to: EchoDevice(), ringPages: 2)
        let payload = [UInt8](repeating: 1, count: 2048)
        // Enough echoes to overflow the 4 KiB outgoing ring and then the backlog limit.
        // Some 32,000 round trips through a 4 KiB ring: deadlines generous enough for a loaded
        // two-core machine, where one send can wait out the worker's sleep more than once.
        for index in 0..<(VSPChannel.backlogLimit / 2048 + 64) where guest.failure == nil {
            if !guest.send(payload, transactionID: UInt64(index), within: 10) { break }
        }
        #expect(guest.waitForFailure(within: 10)?.contains("unread") == true)
        guest.close()
    }

    /// A worker whose thread cannot start closes the session it was given, as the thread would
    /// have: no one else holds it. The thread is refused by the kernel itself: the test's thread
    /// sits in a cgroup v1 `pids` group with room for no other task while the worker starts.
    @Test(.enabled(if: PidsLimit.isAvailable, "needs a writable cgroup v1 pids hierarchy (root)"))
    func aWorkerWhoseThreadCannotStartClosesItsSession() throws {
        let memory = try GuestMemory.create(name: "nothread", size: 1 << 20)
        let session = EchoDevice()
        let failure = try PidsLimit.withNoRoomForAnotherTask { () throws -> SystemError? in
            let channel = try VSPChannel(relID: 1, incoming: GuestRingMemory(memory: memory, pages: [16, 17]),
                                         outgoing: GuestRingMemory(memory: memory, pages: [32, 33]), targetVP: 0,
                                         guestSignal: EventFD(), signalGuest: { _ in })
            do throws(SystemError) {
                try ChannelWorker(channel: channel, session: session) { _ in }.stop()
                return nil
            } catch {
                return error
            }
        }
        guard let error = failure else {
            Issue.record("a worker thread started in a pids group with no room")
            return
        }
        #expect(error.errno.rawValue == EAGAIN, "\(error)")
        let closed = session.closed.load(ordering: .acquiring)
        #expect(closed, "the session was left open")
    }

    /// A guest that reads its answers a few at a time, never all, keeps the backlog from ever
    /// emptying: what was written leaves it all the same, so it holds about what waits, not
    /// everything ever queued.
    @Test func aBacklogThatNeverEmptiesLetsGoOfWhatWasWritten() throws {
        let memory = try GuestMemory.create(name: "backlog", size: 1 << 20)
        let toHost = (16..<18).map { UInt64($0) }
        let toGuest = (32..<34).map { UInt64($0) }
        let channel = try VSPChannel(relID: 1, incoming: GuestRingMemory(memory: memory, pages: toHost[...]),
                                     outgoing: GuestRingMemory(memory: memory, pages: toGuest[...]), targetVP: 0,
                                     guestSignal: EventFD(), signalGuest: { _ in })
        var guest = try RingReader(memory: GuestRingMemory(memory: memory, pages: toGuest[...]))
        var buffer: [UInt8] = []
        var sent: UInt64 = 0
        var received: UInt64 = 0
        // Fill the 4 KiB ring and leave 100 answers waiting beyond it.
        while channel.backlogEntries < 100 {
            try channel.send(.inband, transactionID: sent, payload: [UInt8](repeating: 1, count: 8))
            sent += 1
        }
        _ = channel.writer.commit()
        // Then one new answer for each one the guest reads.
        for _ in 0..<20_000 {
            let descriptor = try #require(try guest.next(into: &buffer))
            #expect(descriptor.transactionID == received)
            received += 1
            _ = guest.commit()
            _ = try channel.flushBacklog()
            try channel.send(.inband, transactionID: sent, payload: [UInt8](repeating: 1, count: 8))
            sent += 1
            _ = channel.writer.commit()
        }
        #expect(channel.backlogEntries <= 200, "\(channel.backlogEntries) entries kept for about 100 waiting")
    }

    /// A packet waiting in the backlog for ring space keeps the bytes it was sent with, even when
    /// the session rewrites the buffer it sent them from.
    @Test func aBackloggedPacketKeepsTheBytesItWasSentWith() throws {
        let guest = try scatteredChannel(to: ReusedBufferDevice(), ringPages: 2)
        defer { guest.close() }
        guest.send([1, 2, 3, 4, 5, 6, 7, 8], transactionID: 1000)
        for index in 0..<ReusedBufferDevice.answers {
            let packet = try #require(guest.receive(within: 5))
            #expect(packet.descriptor.transactionID == UInt64(index))
            #expect(packet.payload.count == 512 && packet.payload.allSatisfy { $0 == UInt8(index) })
        }
        #expect(guest.failure == nil)
    }

    /// Random garbage in the control page and data area while the worker runs: the worker may
    /// serve packets or give up on the channel, but the process never traps.
    @Test func hostileRingsNeverCrashTheParent() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let guest = try scatteredChannel(to: EchoDevice(), ringPages: 3)
            let pages = guest.pages(of: .guestToHost) + guest.pages(of: .hostToGuest)
            for _ in 0..<200 {
                let page = pages.randomElement(using: &generator)!
                let offset = UInt64.random(in: 0..<4096, using: &generator) & ~3
                let address = GuestPhysicalAddress(page * 4096 + offset)
                if Bool.random(using: &generator) {
                    try guest.memory.store(UInt32.random(in: 0...UInt32.max, using: &generator), at: address)
                } else {
                    // Plausible indices: small and 8-aligned, the subtle corruptions.
                    try guest.memory.store(UInt32.random(in: 0..<9000, using: &generator) & ~7, at: address)
                }
                guest.signalHost()
            }
            usleep(UInt32(round % 5) * 200)
            guest.close()
        }
    }

    /// §6.3: a reader that drains a full ring publishes its read index as it goes, so a writer
    /// waiting for room refills the ring meanwhile instead of waiting for it to empty.
    @Test func aDrainingWorkerFreesRoomBeforeTheRingIsEmpty() throws {
        let memory = try GuestMemory.create(name: "vmbus-gated", size: 4 << 20)
        let device = GatedDevice(memory: memory, controlPage: 100)
        let guest = try scatteredChannel(to: device, ringPages: 16, memory: memory)
        defer { guest.close() }
        let payload = [UInt8](repeating: 0x5A, count: 1000)
        guest.send(payload, transactionID: 0)
        while !device.holding.load(ordering: .acquiring) { usleep(100) }
        var sent = 1
        while (try? guest.writer.write(type: .inband, transactionID: UInt64(sent), payload: payload)) != nil { sent += 1 }
        _ = guest.writer.commit()
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
        let guest = try scatteredChannel(to: device, ringPages: 8)
        // Only the device writes the guest→host ring: the first packet, then one per packet handled.
        let writer = try RingWriter(memory: GuestRingMemory(memory: guest.memory, pages: guest.pages(of: .guestToHost)[...]))
        device.writer.withLock { shared in
            shared = writer
            _ = try? shared?.write(type: .inband, transactionID: 0, payload: [UInt8](repeating: 7, count: 64))
            _ = shared?.commit()
        }
        guest.signalHost()
        while device.packets.load(ordering: .relaxed) < 1000 { usleep(1000) }
        guest.close()
        #expect(device.packets.load(ordering: .relaxed) >= 1000)
    }

    /// Nor can a worker whose every pass makes progress with few packets or none (a NIC
    /// delivering a stream of frames to its guest): the stop is looked for by time, not only
    /// after a run of packets or of idle turns.
    @Test(.timeLimit(.minutes(1))) func aWorkerStopsWhileEveryPassMakesProgress() throws {
        let device = BusyWorkDevice()
        let guest = try scatteredChannel(to: device, ringPages: 4)
        while device.passes.load(ordering: .relaxed) < 1000 { usleep(1000) }
        guest.close()
        #expect(device.passes.load(ordering: .relaxed) >= 1000)
    }
}

/// A cgroup v1 `pids` group of the test's own, for running a few lines where the calling thread
/// can start no other (the kernel's EAGAIN from clone).
enum PidsLimit {
    static let hierarchy = "/sys/fs/cgroup/pids"

    static var isAvailable: Bool { access(hierarchy + "/tasks", W_OK) == 0 }

    static func withNoRoomForAnotherTask<T>(_ body: () throws -> T) throws -> T {
        let group = "\(hierarchy)/hv-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(group, 0o755) == 0 else { throw SystemError("mkdir \(group)", errno: .current) }
        defer { rmdir(group) }
        let home = try read("/proc/thread-self/cgroup")
            .split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: ":", maxSplits: 2)
                return fields.count == 3 && fields[1].split(separator: ",").contains("pids") ? String(fields[2]) : nil
            }.first ?? "/"
        let tid = "\(OSThread.currentKernelThreadID)"
        try write("1", to: group + "/pids.max")
        try write(tid, to: group + "/tasks")
        defer {
            // Lifted first: a thread left in the group must not keep this one from starting any
            // (the test runner's pool would wait for it for good).
            do {
                try write("max", to: group + "/pids.max")
                try write(tid, to: hierarchy + home + "/tasks")
            } catch {
                Issue.record("the test's thread could not leave its pids group: \(error)")
            }
        }
        return try body()
    }

    static func read(_ path: String) throws -> String {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw SystemError("open \(path)", errno: .current) }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = Glibc.read(descriptor, &bytes, bytes.count)
        guard count >= 0 else { throw SystemError("read \(path)", errno: .current) }
        return String(decoding: bytes[..<count], as: UTF8.self)
    }

    static func write(_ text: String, to path: String) throws {
        let descriptor = open(path, O_WRONLY)
        guard descriptor >= 0 else { throw SystemError("open \(path)", errno: .current) }
        defer { close(descriptor) }
        guard Glibc.write(descriptor, text, text.utf8.count) == text.utf8.count else {
            throw SystemError("write \(path)", errno: .current)
        }
    }
}
