import Glibc
import LinuxSupport
import Synchronization
import Testing
import VMBusHost
import VMBusProtocol
import VSPTestSupport

/// Answers every packet with its transaction ID. The answer to packet 1 is due at once; packet 2
/// is held in `handle` until the test lets it go (or 10 s pass).
final class DueAnswerSession: ChannelSession, Sendable {
    let release = Atomic<Bool>(false)
    let holding = Atomic<Bool>(false)
    private let due = Atomic<Bool>(false)

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        let id = packet.descriptor.transactionID
        try channel.send(.inband, transactionID: id, payload: [UInt8](repeating: UInt8(truncatingIfNeeded: id), count: 8))
        if id == 1 { due.store(true, ordering: .relaxed) }
        if id == 2 {
            holding.store(true, ordering: .releasing)
            let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
            while !release.load(ordering: .acquiring) && MonotonicClock.nanoseconds() < deadline { usleep(100) }
        }
    }

    func answersAreDue(on channel: VSPChannel) -> Bool {
        due.exchange(false, ordering: .relaxed)
    }
}

/// Takes 100 µs over every packet and notes, in order, each packet handled ("h") and each call
/// of `work` ("w").
final class SlowSession: ChannelSession, Sendable {
    let log = Mutex<[Character]>([])
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        usleep(100)
        log.withLock { $0.append("h") }
    }
    func work(on channel: VSPChannel) throws(VSPError) -> Bool {
        log.withLock { if $0.last == "h" { $0.append("w") } }
        return false
    }
}

@Suite("A channel worker's pass over the ring")
struct ChannelPassTests {
    /// Writes `count` small packets into the guest→host ring and makes them visible at once, so
    /// the worker finds them all in one pass.
    static func writeAtOnce(_ guest: FakeGuest, count: Int, firstID: UInt64 = 1) throws {
        for index in 0..<count {
            try guest.writer.write(type: .inband, transactionID: firstID + UInt64(index), payload: [1, 2, 3, 4, 5, 6, 7, 8])
        }
        if guest.writer.commit() { guest.signalHost() }
    }

    @Test("answers the session says are due reach the guest before the pass ends, while it handles the next packet")
    func dueAnswersArePublishedWithinThePass() throws {
        let session = DueAnswerSession()
        let guest = try FakeGuest(device: ServingSession(session))
        defer {
            session.release.store(true, ordering: .releasing)
            guest.close()
        }
        try Self.writeAtOnce(guest, count: 2)
        // Wait until the worker is inside packet 2: the answer to packet 1 may be published before
        // it gets there, so the guest seeing that answer says nothing yet about the pass.
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while !session.holding.load(ordering: .acquiring) && MonotonicClock.nanoseconds() < deadline { usleep(100) }
        let inPacket2 = session.holding.load(ordering: .acquiring)
        try #require(inPacket2)
        // Packet 2 is held, so the pass has not ended; the answer to packet 1 must still arrive.
        let first = try #require(guest.receive(within: 5))
        #expect(first.descriptor.transactionID == 1)
        session.release.store(true, ordering: .releasing)
        #expect(guest.receive(within: 5)?.descriptor.transactionID == 2)
    }

    @Test("a pass ends after about a millisecond however full the guest keeps the ring: the session's work runs before the worker reads on")
    func aLongPassLetsTheSessionWork() throws {
        let session = SlowSession()
        let guest = try FakeGuest(device: ServingSession(session))
        defer { guest.close() }
        // 64 packets of 100 µs each: 6.4 ms in one pass without the bound.
        try Self.writeAtOnce(guest, count: 64)
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while session.log.withLock({ $0.filter { $0 == "h" }.count }) < 64 && MonotonicClock.nanoseconds() < deadline {
            usleep(1000)
        }
        let log = session.log.withLock { String($0) }
        #expect(log.filter { $0 == "h" }.count == 64)
        // `work` ran between packets of the one burst, not only after the last.
        let lastHandled = try #require(log.lastIndex(of: "h"))
        #expect(log[..<lastHandled].contains("w"), "\(log)")
    }
}
