import BenchProtocol
import ControlProtocol
import Foundation
import GuestMemory
import HyperV
import LinuxSupport
@testable import ParentPartition
@testable import RootScheduler
import Synchronization
import Testing
import VMBusProtocol

/// Children share one control socket between the root and the parent; none of them may stall
/// another through it, and a stalled parent may not stall the root (Docs/architecture.md, "The
/// control link").
@Suite("The control link isolates children", .serialized)
struct LinkIsolationTests {
    /// A parent that reads nothing, and a guest that posts until the root refuses.
    /// - Returns: how many posts the root took.
    static func flood(_ partition: TestPartition, connection: ConnectionID = ConnectionID(1), limit: Int = 20_000) throws -> Int {
        var taken = 0
        while taken < limit {
            let status = try partition.postMessage(connection: connection, type: .vmbus, payload: [UInt8](repeating: 0x5A, count: 200))
            guard status == .success else {
                #expect(status == .insufficientBuffers, "a full queue is INSUFFICIENT_BUFFERS, which guests retry")
                return taken
            }
            taken += 1
        }
        return taken
    }

    /// The finding: a processor thread sent to the parent while holding its SynIC lock, the
    /// root's link thread needed that lock to post the parent's messages, and the parent's
    /// reader blocked sending back to the root. Here the parent reads nothing at all: the
    /// processor that reprograms its SynIC still returns at once, and the root still delivers
    /// what the parent posts.
    @Test func aProcessorReprogrammingItsSynICNeverWaitsForTheParent() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        root.observe(alpha)
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        try parent.channel.send(.registerMessageConnection(partitionID: alpha.id, connectionID: 1))
        #expect(eventually { alpha.messageConnections.contains(ConnectionID(1)) })
        #expect(try Self.flood(alpha) > 0)

        let done = Atomic<Bool>(false)
        let processor = try OSThread.spawn(name: "vp0") {
            try? alpha.enableSynIC(vp: 0, sint: 3)
            done.store(true, ordering: .releasing)
        }
        #expect(eventually { done.load(ordering: .acquiring) }, "WRMSR SIMP/SIEFP/SINT/SCONTROL returned")
        try parent.channel.send(.postMessage(partitionID: alpha.id, vp: 0, sint: 3, messageType: 1, payload: [7]))
        var delivered: [UInt8]?
        #expect(eventually { delivered = try? alpha.takeMessage(sint: 3)?.payload; return delivered != nil },
                "the root's reader delivered the parent's message while the parent read nothing")
        #expect(delivered == [7])
        root.stop()  // releases a processor thread stuck in a send (on the code before the fix)
        processor.join()
    }

    /// The finding: one socket and one thread per side served every child, so one child's flood
    /// starved the others. Here the parent reads nothing while alpha floods: alpha alone is
    /// refused; beta's message is taken, and once the parent reads, it arrives ahead of alpha's
    /// backlog (after at most what was already on its way).
    @Test func aFloodingChildFillsOnlyItsOwnLane() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let beta = try root.table.add("beta")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        for partition in [alpha, beta] {
            try parent.channel.send(.registerMessageConnection(partitionID: partition.id, connectionID: 1))
            #expect(eventually { partition.messageConnections.contains(ConnectionID(1)) })
        }
        let flooded = try Self.flood(alpha)
        #expect(try beta.postMessage(connection: ConnectionID(1), type: .vmbus, payload: [0xBE]) == .success,
                "beta's post is taken while alpha's lane is full")

        var alphaBefore = 0
        var alphaAll = 0
        var betaSeen = false
        while alphaAll < flooded || !betaSeen {
            guard case .message(let message, _) = try parent.rootMessage() else { break }
            guard case .sequencedGuestMessage(let guest) = message else { continue }
            if guest.partitionID == beta.id {
                betaSeen = true
                alphaBefore = alphaAll
            } else {
                alphaAll += 1
                if alphaAll % 64 == 0 {
                    // Acknowledge as a parent does, so the root sends the rest.
                    try parent.channel.send(.completed(partitionID: alpha.id, jobs: UInt64(alphaAll), sequence: guest.sequence))
                }
            }
        }
        let window = Int(root.link.outboxLimits.window)
        #expect(betaSeen)
        #expect(flooded > window + 64, "alpha queued far more than its window")
        #expect(alphaBefore <= window + 1, "beta's message came after at most alpha's window, not its backlog")
    }

    /// A child that writes COM1 faster than the parent takes it waits (its processor is
    /// throttled); another child's port writes go through meanwhile.
    @Test func aChildFloodingItsPortsIsThrottledAlone() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha")
        let beta = try root.table.add("beta")
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        for partition in [alpha, beta] {
            try parent.channel.send(.registerPorts(partitionID: partition.id, base: 0x2F8, count: 8))
            #expect(eventually { partition.forwarder(for: 0x2F8) != nil })
        }
        let alphaPort = try #require(alpha.forwarder(for: 0x2F8))
        let betaPort = try #require(beta.forwarder(for: 0x2F8))
        let stop = Atomic<Bool>(false)
        let written = Atomic<Int>(0)
        let flooder = try OSThread.spawn(name: "alpha-vp0") {
            while !stop.load(ordering: .acquiring) {
                alphaPort.write(vp: 0, port: 0x2F8, size: 1, value: 0x41)
                written.wrappingAdd(1, ordering: .relaxed)
            }
        }
        var other: OSThread?
        defer {
            // Stopping the link releases a writer stuck in a send (on the code before the fix).
            stop.store(true, ordering: .releasing)
            root.stop()
            flooder.join()
            other?.join()
        }
        let queued = { root.link.connection?.outbox.queued(lane: alpha.id) ?? 0 }
        #expect(eventually { queued() >= root.link.outboxLimits.laneEntries }, "alpha's lane filled")
        let betaWrote = Atomic<Bool>(false)
        other = try OSThread.spawn(name: "beta-vp0") {
            betaPort.write(vp: 0, port: 0x2F8, size: 1, value: 0x42)
            betaWrote.store(true, ordering: .releasing)
        }
        #expect(eventually(within: 5) { betaWrote.load(ordering: .acquiring) }, "beta's write did not wait behind alpha's")
        #expect(queued() <= root.link.outboxLimits.laneEntries, "alpha waits instead of growing its lane")
    }

    /// Port accesses beyond the partition's budget wait their turn (a token bucket: a burst,
    /// then the rate), so a guest hammering COM1 sleeps instead of keeping the root's and the
    /// parent's threads busy for it.
    @Test func portAccessesBeyondTheBudgetWaitTheirTurn() {
        let budget = PortAccessBudget(perSecond: 1000, burst: 10)
        let start = MonotonicClock.nanoseconds()
        for _ in 0..<10 { #expect(budget.take(now: start) == nil, "the burst") }
        let wait = budget.take(now: start) ?? 0
        #expect((900_000...1_000_000).contains(wait), "the 11th waits a thousandth of a second, not \(wait) ns")
        #expect(budget.take(now: start + 2_000_000) == nil, "two milliseconds later one is free again")
        #expect(budget.take(now: start + 2_000_000) != nil)
        #expect((budget.take(now: start + 3_000_000_000) ?? 0) == 0, "idle time refills it, up to the burst")
    }

    /// Processors that each sleep the longest wait can outrun a very low rate; the debt they run
    /// up stops where one longest wait repays it, so the partition is not throttled long after
    /// they stopped (and the wait, computed from it, never overflows).
    @Test func aFloodBeyondAVeryLowRateRunsUpNoEndlessDebt() {
        let budget = PortAccessBudget(perSecond: 1000, burst: 10)
        let start = MonotonicClock.nanoseconds()
        var longest: UInt64 = 0
        for _ in 0..<1_000_000 { longest = max(longest, budget.take(now: start) ?? 0) }
        #expect(longest == PortAccessBudget.longestWait)
        #expect(budget.take(now: start + 2 * PortAccessBudget.longestWait) == nil,
                "twice the longest wait later, the flood is repaid")
    }

    /// A busy guest that closes its channel does not stall another child: alpha keeps its bench
    /// ring full and closes the channel meanwhile, while beta's echo round trips go on (each
    /// child's control plane runs on its own thread in the parent, its worker stops between
    /// packets, and each has its own lane on both ends of the link).
    @Test func aBusyChildClosingItsChannelDoesNotStallAnother() throws {
        let root = try RootEnd()
        defer { root.stop() }
        let alpha = try root.table.add("alpha", devices: ["bench"])
        let beta = try root.table.add("beta")
        try beta.enableSynIC(vp: 0, sint: 3)
        let parent = try ParentEnd(socketPath: root.socketPath)
        defer { parent.stop() }
        let guest = try SeamGuest(alpha)
        try guest.connect()
        let bench = try guest.open(BenchProtocol.interfaceType, pages: 16)
        #expect(eventually { beta.messageConnections.contains(DiagnosticEcho.messageConnection) })

        // Alpha streams sink data into its ring as fast as it can, without end, in a phase whose
        // data the host checksums: the host reads more slowly than the guest writes, so the ring
        // never runs dry.
        let stop = Atomic<Bool>(false)
        let sent = Atomic<Int>(0)
        let streamer = try OSThread.spawn(name: "alpha-guest") { [bench] in
            var channel = bench
            var start = [UInt8](repeating: 0, count: BenchHeader.size)
            BenchHeader(kind: .phaseStart, phase: 1).store(into: &start)
            start += BenchPhase(mode: .throughput, messageSize: 4096, count: UInt32.max, flags: BenchPhase.verifyFlag).bytes
            channel.send(payload: start)
            var data = [UInt8](repeating: 0x33, count: 4096)
            var sequence: UInt32 = 0
            while !stop.load(ordering: .acquiring) {
                BenchHeader(kind: .data, phase: 1, sequence: sequence).store(into: &data)
                if channel.stage(.inband, flags: [], transactionID: 0, payload: data) {
                    sequence &+= 1
                    sent.wrappingAdd(1, ordering: .relaxed)
                    if sequence % 4 == 0 { channel.publish() }
                } else {
                    channel.publish()
                }
            }
        }
        defer {
            stop.store(true, ordering: .releasing)
            streamer.join()
        }
        #expect(eventually { sent.load(ordering: .relaxed) > 1000 }, "alpha's ring is busy")
        try guest.close(bench.relID)
        for round in 0..<20 {
            let payload = [UInt8(3), UInt8(round)]
            #expect(try beta.postMessage(connection: DiagnosticEcho.messageConnection, type: DiagnosticEcho.messageType,
                                         payload: payload) == .success)
            var answer: [UInt8]?
            #expect(eventually { answer = try? beta.takeMessage(sint: 3)?.payload; return answer != nil },
                    "beta's echo \(round) came back while alpha was closing its busy channel")
            #expect(answer == payload)
        }
    }
}
