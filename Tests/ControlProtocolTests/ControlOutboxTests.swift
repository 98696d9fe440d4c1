import ControlProtocol
import Foundation
import LinuxSupport
import Synchronization
import Testing

/// The sending half of a control connection, over a real SOCK_SEQPACKET pair.
@Suite("Control outbox: lanes, windows, deadlines")
struct ControlOutboxTests {
    /// Waits for `condition` up to `seconds` (a deadline, not a speed expectation).
    func eventually(within seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(1000)
        }
        return condition()
    }

    /// The next datagram the peer holds, if one arrives within `milliseconds`.
    func next(_ socket: SequencedPacketSocket, within milliseconds: Int32 = 10_000) throws -> [UInt8]? {
        guard try Poll.wait(on: [socket.owned.rawValue], timeoutMilliseconds: milliseconds).first == true else { return nil }
        return try socket.receive().bytes
    }

    @Test func lanesAreTakenInTurn() throws {
        let (near, far) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near)
        outbox.openLane(1)
        outbox.openLane(2)
        for index in 0..<100 { #expect(outbox.enqueue([1, UInt8(index)], lane: 1, admission: .ifRoom)) }
        #expect(outbox.enqueue([2, 0], lane: 2, admission: .ifRoom))
        #expect(outbox.enqueue([0, 0], lane: nil, admission: .ifRoom))
        try outbox.start(name: "test-send") { _ in }
        defer { outbox.stop() }
        var order: [[UInt8]] = []
        for _ in 0..<102 { order.append(try #require(try next(far))) }
        #expect(order.first == [0, 0], "the priority lane goes first")
        #expect(order.firstIndex(of: [2, 0]) ?? 99 <= 2, "lane 2 gets its turn right after one of lane 1's, not after all 100")
        #expect(order.filter { $0[0] == 1 }.map { $0[1] } == (0..<100).map { UInt8($0) }, "a lane stays in order")
    }

    @Test func aLanesJobsWaitForItsWindow() throws {
        let (near, far) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near, limits: .init(window: 4))
        outbox.openLane(1)
        outbox.openLane(2)
        for index in 0..<10 { #expect(outbox.enqueue([1, UInt8(index)], lane: 1, isJob: true, admission: .ifRoom)) }
        try outbox.start(name: "test-send") { _ in }
        defer { outbox.stop() }
        for index in 0..<4 { #expect(try next(far) == [1, UInt8(index)]) }
        #expect(eventually { outbox.outstandingJobs(lane: 1) == 4 && outbox.queued(lane: 1) == 6 })
        // Lane 2 is not held up by lane 1's window, and entries that are not jobs need none.
        #expect(outbox.enqueue([2, 0], lane: 2, isJob: true, admission: .ifRoom))
        #expect(try next(far) == [2, 0])
        outbox.acknowledge(lane: 1, jobs: 3)
        #expect(try next(far) == [1, 4])
        outbox.acknowledge(lane: 1, jobs: 10)
        for index in 5..<10 { #expect(try next(far) == [1, UInt8(index)]) }
        #expect(eventually { outbox.outstandingJobs(lane: 1) == 0 })
    }

    @Test func aFullLaneRefusesWaitsOrReplaces() throws {
        let (near, _) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near, limits: .init(laneEntries: 3, laneBytes: 1 << 20))
        outbox.openLane(1)
        for _ in 0..<3 { #expect(outbox.enqueue([1], lane: 1, admission: .ifRoom)) }
        #expect(!outbox.enqueue([1], lane: 1, admission: .ifRoom), "full: refused")
        #expect(!outbox.enqueue([1], lane: 1, admission: .waiting(nanoseconds: 20_000_000)), "still full after the wait")
        #expect(outbox.enqueue([9], lane: 1, replacing: 7, admission: .always), "an answer-like entry is always taken")
        #expect(outbox.enqueue([9], lane: 1, replacing: 7, admission: .ifRoom), "one that replaces another needs no room")
        #expect(outbox.queued(lane: 1) == 4)
        #expect(!outbox.enqueue([1], lane: 5, admission: .always), "no such lane")
        outbox.closeLane(1)
        #expect(outbox.queued(lane: 1) == nil)
    }

    /// A producer waiting for room is let in as soon as the sender makes some, and one whose
    /// lane closes under it is refused rather than left waiting.
    @Test func aWaitingProducerGetsInWhenRoomIsMade() throws {
        let (near, far) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near, limits: .init(laneEntries: 2, laneBytes: 1 << 20))
        outbox.openLane(1)
        outbox.openLane(2)
        for lane in [UInt32(1), 2] {
            for _ in 0..<2 { #expect(outbox.enqueue([UInt8(lane)], lane: lane, admission: .ifRoom)) }
        }
        let admitted = Tally()
        let refused = Tally()
        let waiter = try OSThread.spawn(name: "producer") {
            let queued = outbox.enqueue([3], lane: 1, admission: .waiting(nanoseconds: 30_000_000_000))
            (queued ? admitted : refused).add()
        }
        let closed = try OSThread.spawn(name: "producer2") {
            let queued = outbox.enqueue([4], lane: 2, admission: .waiting(nanoseconds: 30_000_000_000))
            (queued ? admitted : refused).add()
        }
        #expect(admitted.value == 0 && refused.value == 0, "both wait")
        outbox.closeLane(2)
        closed.join()
        #expect(refused.value == 1, "the lane closed under it: refused")
        try outbox.start(name: "test-send") { _ in }
        defer { outbox.stop() }
        waiter.join()
        #expect(admitted.value == 1, "room was made: admitted")
        var received: [[UInt8]] = []
        for _ in 0..<3 { received.append(try #require(try next(far))) }
        #expect(received == [[1], [1], [3]])
    }

    @Test func replacedEntriesMoveBehindWhatWasQueuedSinceAndDeferredOnesAreBuiltWhenSent() throws {
        let (near, far) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near)
        outbox.openLane(1)
        let built = Tally()
        #expect(outbox.enqueue([1], lane: 1, replacing: 5, admission: .always))
        #expect(outbox.enqueue([2], lane: 1, admission: .always))
        #expect(outbox.enqueue([3], lane: 1, replacing: 5, admission: .always))
        #expect(outbox.enqueue(.deferred {
            built.add()
            return [ControlOutbox.Datagram([4]), ControlOutbox.Datagram([5])]
        }, lane: 1, admission: .always))
        #expect(built.value == 0, "not built before its turn")
        try outbox.start(name: "test-send") { _ in }
        defer { outbox.stop() }
        var order: [[UInt8]] = []
        for _ in 0..<4 { order.append(try #require(try next(far))) }
        #expect(order == [[2], [3], [4], [5]])
        #expect(built.value == 1)
    }

    /// A producer that helps sends the next entry in turn on its own thread (none running
    /// here), but never one that must be built or that its lane's window holds back.
    @Test func aHelpingProducerSendsTheNextEntryInTurn() throws {
        let (near, far) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near, limits: .init(window: 1))
        outbox.openLane(1)
        outbox.openLane(2)
        #expect(outbox.enqueue([1, 0], lane: 1, isJob: true, admission: .ifRoom))
        #expect(outbox.enqueue([1, 1], lane: 1, isJob: true, admission: .ifRoom))
        #expect(outbox.enqueue(.deferred { [ControlOutbox.Datagram([2, 0])] }, lane: 2, admission: .always))
        outbox.help()
        #expect(try next(far, within: 1000) == [1, 0])
        outbox.help()
        outbox.help()
        #expect(try next(far, within: 100) == nil, "lane 1's window holds its next job; lane 2's entry must be built")
        #expect(outbox.queued(lane: 1) == 1 && outbox.queued(lane: 2) == 1)
        outbox.acknowledge(lane: 1, jobs: 1)
        outbox.help()
        #expect(try next(far, within: 1000) == [1, 1])
        try outbox.start(name: "test-send") { _ in }
        defer { outbox.stop() }
        #expect(try next(far) == [2, 0], "the sending thread builds it")
    }

    /// A peer that takes nothing is given up after the stall deadline: the failure is reported
    /// once and nothing more is queued.
    @Test func aPeerThatTakesNothingIsGivenUpAfterTheDeadline() throws {
        let (near, far) = try SequencedPacketSocket.pair()
        let outbox = ControlOutbox(socket: near, limits: .init(stallNanoseconds: 200_000_000))
        outbox.openLane(1)
        let failures = Tally()
        try outbox.start(name: "test-send") { _ in failures.add() }
        defer { outbox.stop() }
        var queued = 0
        while outbox.enqueue([UInt8](repeating: 0, count: 60 << 10), lane: 1, admission: .ifRoom) && queued < 10_000 {
            queued += 1
            if outbox.hasFailed { break }
            if queued % 16 == 0 { usleep(1000) }
        }
        #expect(eventually { outbox.hasFailed })
        // The failure is reported after the state says so, outside the outbox's lock; once the
        // sending thread has stopped, nothing can report it again.
        #expect(eventually { failures.value >= 1 })
        outbox.stop()
        #expect(failures.value == 1)
        #expect(!outbox.enqueue([1], lane: 1, admission: .always), "a failed connection takes nothing more")
        _ = far
    }
}

extension ControlOutboxTests {
    /// `.always` is for entries bounded by their nature; a peer that makes them pile up anyway
    /// (re-registering to replay a log it never acknowledges) is given up, not followed.
    @Test func entriesAdmittedAlwaysPastFourTimesALanesLimitsEndTheConnection() throws {
        let (near, _) = try SequencedPacketSocket.pair()
        // Jobs with a window of 0 never go out: the lane only grows.
        let outbox = ControlOutbox(socket: near, limits: .init(laneEntries: 3, laneBytes: 1 << 20, window: 0))
        outbox.openLane(1)
        let failures = Tally()
        try outbox.start(name: "test-send") { _ in failures.add() }
        defer { outbox.stop() }
        for _ in 0..<11 { #expect(outbox.enqueue([1], lane: 1, isJob: true, admission: .always)) }
        #expect(!outbox.hasFailed)
        #expect(outbox.enqueue([2], lane: 1, isJob: true, replacing: 5, admission: .always), "the twelfth, keyed")
        #expect(outbox.enqueue([3], lane: 1, isJob: true, replacing: 5, admission: .always), "replacing takes no room")
        #expect(!outbox.hasFailed && outbox.queued(lane: 1) == 12)
        #expect(!outbox.enqueue([1], lane: 1, isJob: true, admission: .always))
        #expect(outbox.hasFailed && failures.value == 1)
        #expect(!outbox.enqueue([1], lane: 2, admission: .always), "nothing more is taken")
        #expect(failures.value == 1)
    }
}

/// A count shared with other threads.
final class Tally: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.wrappingAdd(1, ordering: .acquiringAndReleasing) }
    var value: Int { count.load(ordering: .acquiring) }
}
